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
//! argument and result types weft carries exactly. Calls go through
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

/// A [`PgCall`] as the plan ships it.
#[derive(Clone, PartialEq, prost::Message)]
struct PgCallNode {
    #[prost(uint32, tag = "1")]
    funcid: u32,
    #[prost(uint32, repeated, tag = "2")]
    arg_types: Vec<u32>,
    #[prost(int32, repeated, tag = "3")]
    arg_typmods: Vec<i32>,
    #[prost(uint32, tag = "4")]
    result_type: u32,
    #[prost(int32, tag = "5")]
    result_typmod: i32,
    #[prost(uint32, tag = "6")]
    collation: u32,
}

/// What a bridged call is, as the plan ships it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PgCall {
    /// The function.
    pub funcid: Oid,
    /// Each argument's type and type modifier.
    pub args: Vec<(Oid, i32)>,
    /// The result's type and type modifier.
    pub result: (Oid, i32),
    /// The collation the function is called with (Postgres's
    /// `inputcollid`).
    pub collation: Oid,
}

impl PgCall {
    /// The call's bytes in a shipped plan.
    pub fn encode(&self) -> Vec<u8> {
        use prost::Message;
        PgCallNode {
            funcid: self.funcid.to_u32(),
            arg_types: self.args.iter().map(|(typid, _)| typid.to_u32()).collect(),
            arg_typmods: self.args.iter().map(|&(_, typmod)| typmod).collect(),
            result_type: self.result.0.to_u32(),
            result_typmod: self.result.1,
            collation: self.collation.to_u32(),
        }
        .encode_to_vec()
    }

    /// The call `bytes` ship.
    pub fn decode(bytes: &[u8]) -> Result<PgCall> {
        use prost::Message;
        let node = PgCallNode::decode(bytes)
            .map_err(|e| DataFusionError::Internal(format!("weft: a shipped Postgres function call: {e}")))?;
        if node.arg_types.len() != node.arg_typmods.len() {
            return Err(DataFusionError::Internal(
                "weft: a shipped Postgres function call is corrupt".into(),
            ));
        }
        Ok(PgCall {
            funcid: Oid::from(node.funcid),
            args: node
                .arg_types
                .into_iter()
                .zip(node.arg_typmods)
                .map(|(typid, typmod)| (Oid::from(typid), typmod))
                .collect(),
            result: (Oid::from(node.result_type), node.result_typmod),
            collation: Oid::from(node.collation),
        })
    }
}

impl PgFunction {
    /// The bridge for `call`, or why it cannot carry it.
    ///
    /// # Safety
    /// On the backend thread (reads the catalog).
    pub unsafe fn new(call: PgCall) -> Result<PgFunction, String> {
        let args = call
            .args
            .iter()
            .map(|&(typid, typmod)| PgType::of(typid, typmod).map(PgType::arrow))
            .collect::<Result<Vec<_>, _>>()?;
        PgType::of(call.result.0, call.result.1)?;
        // SAFETY: per the caller.
        let name = unsafe { crate::nodes::text(pg_sys::get_func_name(call.funcid)) };
        Ok(PgFunction {
            name: format!("pg:{name}"),
            signature: Signature::exact(args, Volatility::Volatile),
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

    /// Calls the function on every row of `args` (`rows` rows).
    ///
    /// # Safety
    /// On the backend thread, inside [`pgcall::call`].
    unsafe fn evaluate(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        let result_type = PgType::of(self.call.result.0, self.call.result.1).map_err(DataFusionError::Execution)?;
        // SAFETY: per the caller: the catalog, memory contexts and fmgr, on
        // the backend thread; every pointer below is ours until the
        // context is deleted.
        unsafe {
            let memory = pg_sys::AllocSetContextCreateInternal(
                pg_sys::CurrentMemoryContext,
                c"weft function bridge".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            );
            let previous = pg_sys::MemoryContextSwitchTo(memory);
            // Every error returned goes back to the caller's context and frees
            // the batch's memory, as success does (after a Postgres ERROR,
            // pgcall::call restores the context; the memory goes with its
            // parent).
            let result = (|| -> Result<ArrayRef> {
                let flinfo = pg_sys::palloc0(std::mem::size_of::<pg_sys::FmgrInfo>()).cast::<pg_sys::FmgrInfo>();
                pg_sys::fmgr_info(self.call.funcid, flinfo);
                (*flinfo).fn_expr = call_expression(&self.call);
                let nargs = args.len();
                let size = std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>()
                    + nargs * std::mem::size_of::<pg_sys::NullableDatum>();
                let fcinfo = pg_sys::palloc0(size).cast::<pg_sys::FunctionCallInfoBaseData>();
                (*fcinfo).flinfo = flinfo;
                (*fcinfo).nargs = nargs as i16;
                (*fcinfo).fncollation = self.call.collation;
                let mut writers = Vec::with_capacity(nargs);
                for (array, &(typid, typmod)) in args.iter().zip(&self.call.args) {
                    writers.push(ColumnWriter::new(array.data_type(), typid, typmod).ok_or_else(|| {
                        DataFusionError::Execution(format!(
                            "{}: an argument of type {} has no Postgres form",
                            self.name,
                            array.data_type()
                        ))
                    })?);
                }
                let strict = (*flinfo).fn_strict;
                let call = (*flinfo)
                    .fn_addr
                    .ok_or_else(|| DataFusionError::Execution(format!("{}: no function address", self.name)))?;
                let mut reader = ColumnReader::new(result_type, rows.max(1));
                for row in 0..rows {
                    if row % STOP_CHECK_ROWS == STOP_CHECK_ROWS - 1 && pgcall::should_stop() {
                        return Err(pgcall::stopped());
                    }
                    let slots = (*fcinfo).args.as_mut_slice(nargs);
                    let mut any_null = false;
                    for ((slot, writer), array) in slots.iter_mut().zip(&mut writers).zip(args) {
                        match writer.datum(array.as_ref(), row) {
                            Some(datum) => {
                                slot.value = datum;
                                slot.isnull = false;
                            }
                            None => {
                                slot.value = pg_sys::Datum::null();
                                slot.isnull = true;
                                any_null = true;
                            }
                        }
                    }
                    let (value, null) = if strict && any_null {
                        (pg_sys::Datum::null(), true)
                    } else {
                        (*fcinfo).isnull = false;
                        // A Postgres ERROR inside the function becomes a Rust
                        // panic here, which pgcall::call catches.
                        let value = pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| call(fcinfo));
                        (value, (*fcinfo).isnull)
                    };
                    reader.push(value, null).map_err(|e| e.into_datafusion())?;
                }
                reader.finish().map_err(|e| e.into_datafusion())
            })();
            pg_sys::MemoryContextSwitchTo(previous);
            pg_sys::MemoryContextDelete(memory);
            result
        }
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

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let rows = if scalar { 1 } else { rows };
        // SAFETY: DataFusion runs a participant's plan on its backend
        // thread (a current-thread runtime), inside pgcall::call.
        let array = pgcall::call("a Postgres function", || unsafe { self.evaluate(&arrays, rows) })?;
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

/// Whether function `funcid` may be called through the bridge: parallel
/// safe, not volatile, not returning a set, written in C or built in
/// (a function in SQL or a procedural language runs queries of its own,
/// which stay with Postgres's executor), of no pseudo-type, not reading a
/// value's stored form, and executable by the current user (a function
/// the user may not execute stays with Postgres, which raises its own
/// permission error).
///
/// # Safety
/// On the backend thread.
pub unsafe fn bridgeable(funcid: Oid) -> Result<(), &'static str> {
    // SAFETY: per the caller; catalog lookups.
    unsafe {
        if pg_sys::func_volatile(funcid) as u8 == pg_sys::PROVOLATILE_VOLATILE {
            return Err("a volatile function");
        }
        if pg_sys::func_parallel(funcid) as u8 != pg_sys::PROPARALLEL_SAFE {
            return Err("a function that is not parallel safe");
        }
        if pg_sys::get_func_retset(funcid) {
            return Err("a set-returning function");
        }
        if !native(funcid) {
            return Err("a function in SQL or a procedural language");
        }
        // A polymorphic function (anyelement, anyenum, "any" ...) reads
        // its arguments' actual types from its call's expression, which
        // the bridge hands it (`call_expression`); other pseudo-types
        // (internal, record, cstring) stay with Postgres.
        let mut argtypes = std::ptr::null_mut();
        let mut nargs = 0;
        let result = pg_sys::get_func_signature(funcid, &mut argtypes, &mut nargs);
        let declared = std::slice::from_raw_parts(argtypes, usize::try_from(nargs).unwrap_or(0));
        if std::iter::once(&result)
            .chain(declared)
            .any(|&typid| pg_sys::get_typtype(typid) as u8 == pg_sys::TYPTYPE_PSEUDO && !polymorphic(typid))
        {
            return Err("a function of a pseudo-type");
        }
        // weft's values are not Postgres's stored form (weft detoasts and
        // rebuilds them).
        if matches!(
            funcid.to_u32(),
            pg_sys::F_PG_COLUMN_SIZE | pg_sys::F_PG_COLUMN_COMPRESSION
        ) {
            return Err("a function of a value's stored form");
        }
        if pg_sys::pg_proc_aclcheck(funcid, pg_sys::GetUserId(), pg_sys::ACL_EXECUTE as pg_sys::AclMode)
            != pg_sys::AclResult::ACLCHECK_OK
        {
            return Err("a function the user may not execute");
        }
    }
    Ok(())
}

/// Whether pseudo-type `typid` stands for the actual type of a call's
/// argument or result, which Postgres resolves from the call's expression.
fn polymorphic(typid: Oid) -> bool {
    matches!(
        typid,
        pg_sys::ANYELEMENTOID
            | pg_sys::ANYARRAYOID
            | pg_sys::ANYNONARRAYOID
            | pg_sys::ANYENUMOID
            | pg_sys::ANYRANGEOID
            | pg_sys::ANYMULTIRANGEOID
            | pg_sys::ANYCOMPATIBLEOID
            | pg_sys::ANYCOMPATIBLEARRAYOID
            | pg_sys::ANYCOMPATIBLENONARRAYOID
            | pg_sys::ANYCOMPATIBLERANGEOID
            | pg_sys::ANYCOMPATIBLEMULTIRANGEOID
            | pg_sys::ANYOID
    )
}

/// An expression of `call` for the function to read its arguments' and
/// result's actual types from (`get_fn_expr_argtype`), as the executor
/// hands a function its call's expression: the function over one
/// executor parameter per argument. Parameters, not constants, so that no
/// function takes an argument for constant across the calls
/// (`get_fn_expr_arg_stable`).
///
/// # Safety
/// On the backend thread; allocates in the current memory context.
unsafe fn call_expression(call: &PgCall) -> *mut pg_sys::Node {
    // SAFETY: per the caller; every node is fully initialized.
    unsafe {
        let mut args = std::ptr::null_mut::<pg_sys::List>();
        for (id, &(typid, typmod)) in call.args.iter().enumerate() {
            let param = pg_sys::palloc0(std::mem::size_of::<pg_sys::Param>()).cast::<pg_sys::Param>();
            (*param).xpr.type_ = pg_sys::NodeTag::T_Param;
            (*param).paramkind = pg_sys::ParamKind::PARAM_EXEC;
            (*param).paramid = id as i32;
            (*param).paramtype = typid;
            (*param).paramtypmod = typmod;
            (*param).paramcollid = pg_sys::get_typcollation(typid);
            (*param).location = -1;
            args = pg_sys::lappend(args, param.cast());
        }
        pg_sys::makeFuncExpr(
            call.funcid,
            call.result.0,
            args,
            Oid::INVALID,
            call.collation,
            pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
        )
        .cast()
    }
}

/// `pg_language`'s fixed OIDs of the built-in (`internal`) and C
/// languages (`pg_language.dat`).
const INTERNAL_LANGUAGE: u32 = 12;
const C_LANGUAGE: u32 = 13;

/// Whether `funcid` is a built-in or C function.
///
/// # Safety
/// On the backend thread.
unsafe fn native(funcid: Oid) -> bool {
    // SAFETY: per the caller; a syscache entry, read and released.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::PROCOID as i32, pg_sys::Datum::from(funcid));
        if tuple.is_null() {
            return false;
        }
        let header = (*tuple).t_data;
        let form = header
            .cast::<u8>()
            .add(usize::from((*header).t_hoff))
            .cast::<pg_sys::FormData_pg_proc>();
        let language = (*form).prolang.to_u32();
        pg_sys::ReleaseSysCache(tuple);
        matches!(language, INTERNAL_LANGUAGE | C_LANGUAGE)
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
