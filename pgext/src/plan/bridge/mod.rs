//! The function bridge: a Postgres function evaluated by Postgres itself
//! inside each participant, as a DataFusion scalar function.
//!
//! Every participant is a Postgres backend, so a function DataFusion has
//! no exact counterpart for is called through fmgr, with the arguments
//! converted from Arrow to Datums (the result writers' conversions) and
//! the result back to Arrow (the scan's readers). It runs on the
//! participant's backend thread inside [`crate::pgcall::call`], so a
//! Postgres ERROR becomes the query's error with its SQLSTATE, in a
//! memory context of its own that is deleted after each batch.
//!
//! Which functions may cross ([`bridgeable`]): parallel safe, not
//! volatile, not returning a set, executable by the current user, with
//! argument and result types weft carries exactly. Besides functions and
//! operators ([`Callee`]): casts through text (`CoerceViaIO`), and
//! `x op ANY/ALL (array)` over arrays that are not constant lists. Calls go through
//! `fmgr_info`, so SECURITY DEFINER functions and functions with `SET`
//! clauses run as Postgres runs them. The call is marked volatile for
//! DataFusion, which therefore never folds it while planning (a Postgres
//! ERROR must be raised when the query runs, as Postgres raises it).

use std::hash::{Hash, Hasher};

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use pgrx::pg_sys::{self, Oid};

use crate::pgcall;
use crate::types::{ColumnReader, ColumnWriter, PgType};

mod call;
mod distinct;
mod fold;
mod gate;

pub use call::{Callee, PgCall};
pub use fold::{Fold, PgFold};
pub use gate::{bridgeable, castable_via_text, foldable};

/// Rows between two looks at whether the query is stopping
/// ([`pgcall::should_stop`]): a batch of an expensive function can take
/// seconds, and a cancel must end it within a fraction of one.
pub const STOP_CHECK_ROWS: usize = 256;

/// A Postgres function called by OID on each row.
#[derive(Debug, Clone)]
pub struct PgFunction {
    /// `pg:` and the function's name, for EXPLAIN.
    name: String,
    /// What a call is: the function, its arguments' and result's types,
    /// its collation.
    call: PgCall,
    signature: Signature,
}

impl PgFunction {
    /// The bridge for `call`, or why it cannot carry it.
    ///
    /// # Safety
    /// On the backend thread (reads the catalog).
    pub unsafe fn new(call: PgCall) -> Result<PgFunction, String> {
        for &(typid, typmod) in &call.args {
            PgType::of(typid, typmod)?;
            // weft carries chars without their padding and pads them back
            // to the declared length; of a char of unknown length it
            // cannot tell the padding the function would see.
            if typid == pg_sys::BPCHAROID && typmod < 0 {
                return Err("a char argument of unknown length, whose padding weft does not carry".into());
            }
        }
        PgType::of(call.result.0, call.result.1)?;
        // SAFETY: per the caller; catalog lookups of existing objects.
        let name = unsafe {
            match call.callee {
                Callee::Function(funcid) => crate::nodes::text(pg_sys::get_func_name(funcid)),
                Callee::ViaText => format!("cast_to_{}", crate::nodes::text(pg_sys::format_type_be(call.result.0))),
                Callee::Array { funcid, any } => format!(
                    "{}_{}",
                    crate::nodes::text(pg_sys::get_func_name(funcid)),
                    if any { "any" } else { "all" }
                ),
            }
        };
        Ok(PgFunction {
            name: format!("pg:{name}"),
            // The arguments' Arrow types are whatever the translation
            // gives that converts into the Postgres types
            // (`coerce_types`): a numeric may come as a Decimal128 or as
            // its image.
            signature: Signature::user_defined(Volatility::Volatile),
            call,
        })
    }

    /// What this call is, for the plan's codec.
    pub fn call(&self) -> &PgCall {
        &self.call
    }

    fn result_type(&self) -> DataType {
        PgType::of(self.call.result.0, self.call.result.1)
            .map(PgType::arrow)
            .unwrap_or(DataType::Null)
    }

    /// Calls Postgres on every row of `args` (`rows` rows).
    ///
    /// # Safety
    /// On the backend thread, inside [`pgcall::call`].
    unsafe fn evaluate(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        let result_type = PgType::of(self.call.result.0, self.call.result.1).map_err(DataFusionError::Execution)?;
        // SAFETY: per the caller: the catalog, memory contexts and fmgr, on
        // the backend thread; every pointer below is ours until the
        // context is deleted.
        unsafe {
            crate::pgcall::in_scratch_memory(c"weft function bridge", || -> Result<ArrayRef> {
                let mut writers = Vec::with_capacity(args.len());
                for (array, &(typid, typmod)) in args.iter().zip(&self.call.args) {
                    writers.push(ColumnWriter::new(array.data_type(), typid, typmod).ok_or_else(|| {
                        DataFusionError::Execution(format!(
                            "{}: an argument of type {} has no Postgres form",
                            self.name,
                            array.data_type()
                        ))
                    })?);
                }
                let mut callee = Called::new(&self.call, &self.name)?;
                let mut datums = vec![None; args.len()];
                // Every result lives in this batch's memory until the
                // reader has them all: one call of the reader per batch.
                let mut results = Vec::with_capacity(rows);
                let mut any_null = false;
                for row in 0..rows {
                    if row % STOP_CHECK_ROWS == STOP_CHECK_ROWS - 1 && pgcall::should_stop() {
                        return Err(pgcall::stopped());
                    }
                    for ((datum, writer), array) in datums.iter_mut().zip(&mut writers).zip(args) {
                        *datum = writer.datum(array.as_ref(), row);
                    }
                    let (value, null) = callee.call(&datums);
                    any_null |= null;
                    results.push((value, null));
                }
                let mut reader = ColumnReader::new(result_type, rows.max(1));
                reader.push_all(&results, any_null).map_err(|e| e.into_datafusion())?;
                reader.finish().map_err(|e| e.into_datafusion())
            })
        }
    }
}

/// A [`Callee`] ready to call: its functions looked up once per batch.
enum Called {
    Function(Fmgr),
    ViaText {
        output: *mut pg_sys::FmgrInfo,
        input: *mut pg_sys::FmgrInfo,
        ioparam: Oid,
        typmod: i32,
    },
    Array {
        function: Fmgr,
        any: bool,
        /// The element type's length, by-value flag and alignment.
        element: (Oid, i16, bool, std::ffi::c_char),
    },
}

/// A function and a call frame for it, allocated in the batch's memory.
struct Fmgr {
    fcinfo: *mut pg_sys::FunctionCallInfoBaseData,
    call: unsafe extern "C-unwind" fn(pg_sys::FunctionCallInfo) -> pg_sys::Datum,
    strict: bool,
}

impl Fmgr {
    /// `funcid` called with `args` (types, for a polymorphic function's
    /// call expression) returning `result`, under `collation`.
    ///
    /// # Safety
    /// On the backend thread, in the batch's memory context.
    unsafe fn new(funcid: Oid, args: &[Oid], result: Oid, collation: Oid, name: &str) -> Result<Fmgr> {
        // SAFETY: per the caller; palloc0 gives zeroed, fully owned frames.
        unsafe {
            let flinfo = pg_sys::palloc0(std::mem::size_of::<pg_sys::FmgrInfo>()).cast::<pg_sys::FmgrInfo>();
            pg_sys::fmgr_info(funcid, flinfo);
            (*flinfo).fn_expr = call::call_expression(funcid, args, result, collation);
            let size = std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>()
                + args.len() * std::mem::size_of::<pg_sys::NullableDatum>();
            let fcinfo = pg_sys::palloc0(size).cast::<pg_sys::FunctionCallInfoBaseData>();
            (*fcinfo).flinfo = flinfo;
            (*fcinfo).nargs = args.len() as i16;
            (*fcinfo).fncollation = collation;
            let call = (*flinfo)
                .fn_addr
                .ok_or_else(|| DataFusionError::Execution(format!("{name}: no function address")))?;
            Ok(Fmgr {
                fcinfo,
                call,
                strict: (*flinfo).fn_strict,
            })
        }
    }

    /// The function on `args` (None for NULL): its result, and whether it
    /// is NULL. A strict function on a NULL is NULL without a call.
    ///
    /// # Safety
    /// On the backend thread, inside [`pgcall::call`]; `args` as many as
    /// the frame was made for, valid values of their types.
    unsafe fn call(&mut self, args: &[Option<pg_sys::Datum>]) -> (pg_sys::Datum, bool) {
        // SAFETY: per the caller.
        unsafe {
            let slots = (*self.fcinfo).args.as_mut_slice(args.len());
            let mut any_null = false;
            for (slot, arg) in slots.iter_mut().zip(args) {
                slot.value = arg.unwrap_or(pg_sys::Datum::null());
                slot.isnull = arg.is_none();
                any_null |= arg.is_none();
            }
            if self.strict && any_null {
                return (pg_sys::Datum::null(), true);
            }
            (*self.fcinfo).isnull = false;
            // A Postgres ERROR inside the function becomes a Rust panic
            // here, which pgcall::call catches.
            let call = self.call;
            let fcinfo = self.fcinfo;
            let value = pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| call(fcinfo));
            (value, (*fcinfo).isnull)
        }
    }
}

impl Called {
    /// `call`'s functions, looked up.
    ///
    /// # Safety
    /// On the backend thread, in the batch's memory context.
    unsafe fn new(call: &PgCall, name: &str) -> Result<Called> {
        let types: Vec<Oid> = call.args.iter().map(|&(typid, _)| typid).collect();
        // SAFETY: per the caller; catalog lookups of existing types and
        // functions, frames in the current memory context.
        unsafe {
            Ok(match call.callee {
                Callee::Function(funcid) => {
                    Called::Function(Fmgr::new(funcid, &types, call.result.0, call.collation, name)?)
                }
                Callee::ViaText => {
                    let from = *types
                        .first()
                        .ok_or_else(|| DataFusionError::Internal(format!("{name}: no argument")))?;
                    let (mut out, mut varlena) = (Oid::INVALID, false);
                    pg_sys::getTypeOutputInfo(from, &mut out, &mut varlena);
                    let (mut input, mut ioparam) = (Oid::INVALID, Oid::INVALID);
                    pg_sys::getTypeInputInfo(call.result.0, &mut input, &mut ioparam);
                    let info = |f| {
                        let flinfo =
                            pg_sys::palloc0(std::mem::size_of::<pg_sys::FmgrInfo>()).cast::<pg_sys::FmgrInfo>();
                        pg_sys::fmgr_info(f, flinfo);
                        flinfo
                    };
                    Called::ViaText {
                        output: info(out),
                        input: info(input),
                        ioparam,
                        typmod: call.result.1,
                    }
                }
                Callee::Array { funcid, any } => {
                    let [scalar, array] = types[..] else {
                        return Err(DataFusionError::Internal(format!("{name}: not two arguments")));
                    };
                    let element = pg_sys::get_element_type(array);
                    if element == Oid::INVALID {
                        return Err(DataFusionError::Internal(format!("{name}: not an array")));
                    }
                    let (mut len, mut byval, mut align) = (0, false, 0);
                    pg_sys::get_typlenbyvalalign(element, &mut len, &mut byval, &mut align);
                    Called::Array {
                        function: Fmgr::new(funcid, &[scalar, element], call.result.0, call.collation, name)?,
                        any,
                        element: (element, len, byval, align),
                    }
                }
            })
        }
    }

    /// The call on one row's arguments: its result, and whether it is
    /// NULL.
    ///
    /// # Safety
    /// As [`Fmgr::call`].
    unsafe fn call(&mut self, args: &[Option<pg_sys::Datum>]) -> (pg_sys::Datum, bool) {
        // SAFETY: per the caller.
        unsafe {
            match self {
                Called::Function(function) => function.call(args),
                Called::ViaText {
                    output,
                    input,
                    ioparam,
                    typmod,
                } => match args.first().copied().flatten() {
                    // Both I/O functions are strict.
                    None => (pg_sys::Datum::null(), true),
                    Some(value) => {
                        let text = pg_sys::OutputFunctionCall(*output, value);
                        (pg_sys::InputFunctionCall(*input, text, *ioparam, *typmod), false)
                    }
                },
                Called::Array { function, any, element } => {
                    let [scalar, Some(array)] = args[..] else {
                        // A NULL array: NULL.
                        return (pg_sys::Datum::null(), true);
                    };
                    let (value, null) = any_or_all(function, *any, scalar, array, *element);
                    (pg_sys::Datum::from(value), null)
                }
            }
        }
    }
}

/// `scalar op ANY (array)` or `op ALL`, as Postgres's executor evaluates a
/// ScalarArrayOpExpr (`ExecEvalScalarArrayOp`): an empty array gives false
/// for ANY and true for ALL; a NULL scalar under a strict operator gives
/// NULL; else the first element deciding the answer (true for ANY, false
/// for ALL) ends it, and NULLs met before make it NULL when none decides.
///
/// # Safety
/// As [`Fmgr::call`]; `array` a valid array of `element`'s type.
unsafe fn any_or_all(
    function: &mut Fmgr,
    any: bool,
    scalar: Option<pg_sys::Datum>,
    array: pg_sys::Datum,
    element: (Oid, i16, bool, std::ffi::c_char),
) -> (bool, bool) {
    // SAFETY: per the caller; deconstruct_array allocates its outputs in
    // the current (batch) memory context.
    unsafe {
        let array = pg_sys::pg_detoast_datum(array.cast_mut_ptr()).cast::<pg_sys::ArrayType>();
        let (mut values, mut nulls, mut count) = (std::ptr::null_mut(), std::ptr::null_mut(), 0);
        let (typid, len, byval, align) = element;
        pg_sys::deconstruct_array(
            array,
            typid,
            len.into(),
            byval,
            align,
            &mut values,
            &mut nulls,
            &mut count,
        );
        if count == 0 {
            return (!any, false);
        }
        if scalar.is_none() && function.strict {
            return (false, true);
        }
        let mut null = false;
        for i in 0..count as usize {
            let item = (!*nulls.add(i)).then(|| *values.add(i));
            let (value, this_null) = function.call(&[scalar, item]);
            if this_null {
                null = true;
            } else if (value.value() != 0) == any {
                return (any, false);
            }
        }
        (!any, null)
    }
}

impl PartialEq for PgFunction {
    fn eq(&self, other: &PgFunction) -> bool {
        self.call == other.call
    }
}

impl Eq for PgFunction {}

impl Hash for PgFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.call.hash(state);
    }
}

impl ScalarUDFImpl for PgFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.result_type())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != self.call.args.len() {
            return datafusion::common::plan_err!("{} takes {} arguments", self.name, self.call.args.len());
        }
        for (arrow, &(typid, typmod)) in arg_types.iter().zip(&self.call.args) {
            // SAFETY: DataFusion plans on the backend thread; a catalog
            // lookup of an existing type.
            if !unsafe { ColumnWriter::accepts(arrow, typid, typmod) } {
                return datafusion::common::plan_err!(
                    "{}: an argument of type {arrow} has no Postgres form",
                    self.name
                );
            }
        }
        Ok(arg_types.to_vec())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let rows = if scalar { 1 } else { rows };
        let call = |arrays: &[ArrayRef], rows: usize| {
            // SAFETY: DataFusion runs a participant's plan on its backend
            // thread (a current-thread runtime), inside pgcall::call.
            pgcall::call("a Postgres function", || unsafe { self.evaluate(arrays, rows) })
        };
        let array = match distinct::distinct_rows(&arrays, rows)? {
            Some((distinct, of_row)) => {
                let results = call(&distinct, distinct.first().map_or(0, |a| a.len()))?;
                datafusion::arrow::compute::take(results.as_ref(), &of_row, None)?
            }
            None => call(&arrays, rows)?,
        };
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

/// Whether `plan` (its subqueries included) calls a Postgres function
/// through the bridge.
pub fn calls_postgres(plan: &LogicalPlan) -> bool {
    super::any_expr(
        plan,
        |e| matches!(e, Expr::ScalarFunction(call) if call.func.inner().downcast_ref::<PgFunction>().is_some()),
    )
}
