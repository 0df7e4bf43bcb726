//! Aggregates Postgres folds in each participant ([`PgFold`]): a strict
//! transition function whose state is a value of the aggregated type
//! (min and max of any type, `bool_and`, `bit_or`, a numeric sum by
//! `numeric_add`), called on each row, and on the participants' partial
//! states to combine them, as Postgres's parallel aggregation combines
//! such states with the same function.

use std::mem::size_of;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use pgrx::pg_sys::{self, Oid};

use super::{Fmgr, STOP_CHECK_ROWS};
use crate::pgcall;
use crate::types::{ColumnReader, ColumnWriter, PgType};

/// What a [`PgFold`] folds with, as a shipped plan carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fold {
    /// The aggregate's function (its name in EXPLAIN).
    pub aggregate: Oid,
    /// The transition function, which also combines partial states:
    /// strict, `(state, value) -> state`, all of the aggregated type.
    pub transition: Oid,
    /// The aggregated type and modifier.
    pub typid: Oid,
    /// The modifier.
    pub typmod: i32,
    /// The collation the function is called with.
    pub collation: Oid,
}

/// A [`Fold`] as the plan ships it.
#[derive(Clone, PartialEq, prost::Message)]
struct FoldNode {
    #[prost(uint32, tag = "1")]
    aggregate: u32,
    #[prost(uint32, tag = "2")]
    transition: u32,
    #[prost(uint32, tag = "3")]
    typid: u32,
    #[prost(int32, tag = "4")]
    typmod: i32,
    #[prost(uint32, tag = "5")]
    collation: u32,
}

impl Fold {
    /// The fold's bytes in a shipped plan.
    pub fn encode(&self) -> Vec<u8> {
        use prost::Message;
        FoldNode {
            aggregate: self.aggregate.to_u32(),
            transition: self.transition.to_u32(),
            typid: self.typid.to_u32(),
            typmod: self.typmod,
            collation: self.collation.to_u32(),
        }
        .encode_to_vec()
    }

    /// The fold `bytes` ship.
    pub fn decode(bytes: &[u8]) -> Result<Fold> {
        use prost::Message;
        let node = FoldNode::decode(bytes)
            .map_err(|e| DataFusionError::Internal(format!("weft: a shipped Postgres aggregate: {e}")))?;
        Ok(Fold {
            aggregate: Oid::from(node.aggregate),
            transition: Oid::from(node.transition),
            typid: Oid::from(node.typid),
            typmod: node.typmod,
            collation: Oid::from(node.collation),
        })
    }
}

/// An aggregate Postgres folds, as a DataFusion aggregate function.
///
/// ```ignore
/// // sum(n) of a numeric without a declared scale, as a plan writes it:
/// let fold = Fold { aggregate, transition: F_NUMERIC_ADD.into(), typid: NUMERICOID, typmod: -1, collation };
/// let total = AggregateUDF::new_from_impl(unsafe { PgFold::new(fold) }?).call(vec![col("n")]);
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgFold {
    /// `pg:` and the aggregate's name.
    name: String,
    fold: Fold,
    /// The aggregated values' Arrow type.
    arrow: DataType,
    signature: Signature,
}

impl PgFold {
    /// The aggregate `fold` describes, or why weft cannot carry its type.
    ///
    /// # Safety
    /// On the backend thread (reads the catalog).
    pub unsafe fn new(fold: Fold) -> Result<PgFold, String> {
        let arrow = PgType::of(fold.typid, fold.typmod)?.arrow();
        // SAFETY: per the caller.
        let name = unsafe { crate::nodes::text(pg_sys::get_func_name(fold.aggregate)) };
        Ok(PgFold {
            name: format!("pg:{name}"),
            fold,
            signature: Signature::exact(vec![arrow.clone()], Volatility::Volatile),
            arrow,
        })
    }

    /// What it folds with, for the plan's codec.
    pub fn fold(&self) -> Fold {
        self.fold
    }
}

impl AggregateUDFImpl for PgFold {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.arrow.clone())
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Folding {
            fold: self.fold,
            arrow: self.arrow.clone(),
            state: None,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "state"),
            self.arrow.clone(),
            true,
        ))])
    }
}

/// One group's state.
#[derive(Debug)]
struct Folding {
    fold: Fold,
    arrow: DataType,
    /// The state; None before the first value (a strict transition
    /// function takes the first value as its state, as Postgres does with
    /// a NULL initial state).
    state: Option<ScalarValue>,
}

impl Folding {
    /// The state after folding in every non-NULL value of `values`.
    ///
    /// # Safety
    /// On the backend thread, inside [`pgcall::call`].
    unsafe fn fold_in(&self, values: &dyn Array) -> Result<Option<ScalarValue>> {
        let Fold {
            transition,
            typid,
            typmod,
            collation,
            ..
        } = self.fold;
        // SAFETY: per the caller: memory contexts and fmgr on the backend
        // thread; every Datum lives in `memory` until it is deleted below,
        // after the state is copied out.
        unsafe {
            crate::pgcall::in_scratch_memory(c"weft aggregate", || -> Result<Option<ScalarValue>> {
                let no_form =
                    || DataFusionError::Execution(format!("weft: {} values have no Postgres form", self.arrow));
                let mut writer = ColumnWriter::new(&self.arrow, typid, typmod).ok_or_else(no_form)?;
                let mut function = Fmgr::new(transition, &[typid, typid], typid, collation, "a Postgres aggregate")?;
                let mut state = match &self.state {
                    Some(value) => writer.datum(value.to_array()?.as_ref(), 0),
                    None => None,
                };
                // A numeric sum adds what fits in 128 bits natively, at
                // the largest display scale met (numeric_add's), and hands
                // Postgres only the rest and the batch's total.
                let mut sum = NativeSum::default();
                let images = match transition.to_u32() {
                    pg_sys::F_NUMERIC_ADD => values.as_binary_opt::<i32>(),
                    _ => None,
                };
                for row in 0..values.len() {
                    if let Some(images) = images.filter(|_| values.is_valid(row)) {
                        if let Some((value, scale)) = crate::types::numeric_image(images.value(row)) {
                            if sum.add(value, scale) {
                                continue;
                            }
                        }
                    }
                    if row % STOP_CHECK_ROWS == STOP_CHECK_ROWS - 1 && pgcall::should_stop() {
                        return Err(pgcall::stopped());
                    }
                    let Some(value) = writer.datum(values, row) else {
                        continue;
                    };
                    state = match state {
                        None => Some(value),
                        Some(current) => {
                            let (next, null) = function.call(&[Some(current), Some(value)]);
                            (!null).then_some(next)
                        }
                    };
                }
                if let Some(total) = sum.datum() {
                    state = Some(match state {
                        None => total,
                        Some(current) => {
                            let (next, null) = function.call(&[Some(current), Some(total)]);
                            if null {
                                return Ok(None);
                            }
                            next
                        }
                    });
                }
                let Some(state) = state else { return Ok(None) };
                let mut reader = ColumnReader::new(PgType::of(typid, typmod).map_err(DataFusionError::Execution)?, 1);
                reader.push(state, false).map_err(|e| e.into_datafusion())?;
                let array = reader.finish().map_err(|e| e.into_datafusion())?;
                Ok(Some(ScalarValue::try_from_array(&array, 0)?))
            })
        }
    }
}

impl Accumulator for Folding {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = values[0].as_ref();
        if values.null_count() == values.len() {
            return Ok(());
        }
        // SAFETY: DataFusion runs a participant's plan on its backend
        // thread, and this is inside pgcall::call.
        self.state = pgcall::call("a Postgres aggregate", || unsafe { self.fold_in(values) })?;
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        match &self.state {
            Some(value) => Ok(value.clone()),
            None => ScalarValue::try_from(&self.arrow),
        }
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.state.as_ref().map_or(0, ScalarValue::size)
    }
}

/// A sum of numerics kept in 128 bits: the total times 10^scale, scale
/// the largest display scale added (as `numeric_add` keeps it).
#[derive(Default)]
struct NativeSum {
    /// The total and its scale; None before the first value.
    total: Option<(i128, u8)>,
}

impl NativeSum {
    /// Adds `value` times 10^-`scale`; false (and nothing added) where the
    /// total would leave 128 bits, which Postgres then adds.
    fn add(&mut self, value: i128, scale: u8) -> bool {
        let (total, at) = self.total.unwrap_or((0, scale));
        let wide = at.max(scale);
        let rescale = |v: i128, from: u8| {
            10i128
                .checked_pow(u32::from(wide - from))
                .and_then(|p| v.checked_mul(p))
        };
        let sum = rescale(total, at)
            .zip(rescale(value, scale))
            .and_then(|(a, b)| a.checked_add(b));
        match sum {
            Some(sum) if sum.unsigned_abs() < 10u128.pow(38) => {
                self.total = Some((sum, wide));
                true
            }
            _ => false,
        }
    }

    /// The total as a numeric Datum at its scale; None before any value.
    ///
    /// # Safety
    /// On the backend thread, inside [`pgcall::call`] (allocates in the
    /// current memory context).
    unsafe fn datum(&self) -> Option<pg_sys::Datum> {
        let (total, scale) = self.total?;
        let text = std::ffi::CString::new(decimal(total, scale)).ok()?;
        // SAFETY: per the caller; numeric_in reads a NUL-terminated
        // decimal and keeps its scale as the display scale.
        Some(unsafe {
            pg_sys::OidInputFunctionCall(
                Oid::from(pg_sys::F_NUMERIC_IN),
                text.as_ptr().cast_mut(),
                pg_sys::NUMERICOID,
                -1,
            )
        })
    }
}

/// `value` times 10^-`scale` as decimal text with exactly `scale`
/// decimals.
fn decimal(value: i128, scale: u8) -> String {
    let digits = format!("{:0>width$}", value.unsigned_abs(), width = usize::from(scale) + 1);
    let (whole, fraction) = digits.split_at(digits.len() - usize::from(scale));
    let sign = if value < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}
