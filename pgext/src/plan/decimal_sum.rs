//! Sums of decimals that never wrap.
//!
//! Postgres's numeric sums have no limit; DataFusion's sum of Decimal128
//! values adds in 128-bit integers with wrapping addition, so a sum past
//! 2^127 silently turns into another number. A sum whose values have at
//! most [`NATIVE_DIGITS`] digits cannot get there before 10^18 rows, more
//! than any query reads, and is left to DataFusion's sum (fast, and able to
//! sum DISTINCT values). Wider values are summed by `pg_decimal_sum`, which
//! adds with overflow checks and hands the query back to Postgres
//! ([`Error::HandBack`]) where the sum outgrows the type, before any row
//! is returned (weft keeps its result until the query ends). It sums
//! Decimal128 values into Decimal128(38, s) and Decimal256 values (the
//! squares a variance sums) into Decimal256(76, s), over groups, without
//! groups and over sliding window frames.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, PrimitiveArray};
use datafusion::arrow::compute::sum_checked;
use datafusion::arrow::datatypes::{
    ArrowNativeTypeOp, ArrowNumericType, ArrowPrimitiveType, DataType, Decimal128Type, Decimal256Type, Field, FieldRef,
};
use datafusion::common::{exec_err, DataFusionError, Result, ScalarValue};
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    cast, Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, Expr, GroupsAccumulator, Signature, Volatility,
};

use crate::error::Error;

/// The most digits of summed values DataFusion's own sum is trusted with:
/// 10^18 of them stay below 10^38.
pub const NATIVE_DIGITS: u8 = 20;

/// The sum of `value` (a decimal of at most `precision` digits, `scale`
/// of them after the point) in Decimal128(38, `scale`), exactly or not at
/// all.
pub fn decimal_sum(value: Expr, precision: u8, scale: i8) -> Expr {
    let value = cast(value, DataType::Decimal128(38, scale));
    if precision <= NATIVE_DIGITS {
        sum(value)
    } else {
        checked_sum(value)
    }
}

/// The sum of the squares of `value` (a decimal at `scale`) in
/// Decimal256(76, 2·`scale`), exactly or not at all.
pub fn squares_sum(value: Expr, scale: i8) -> Expr {
    let wide = cast(value, DataType::Decimal256(76, scale));
    checked_sum(cast(wide.clone() * wide, DataType::Decimal256(76, 2 * scale)))
}

/// Whether `aggregate` is the checked sum, which sums every value it is
/// given (never only the distinct ones).
pub fn is_checked(aggregate: &Expr) -> bool {
    matches!(aggregate, Expr::AggregateFunction(f) if f.func.inner().downcast_ref::<PgDecimalSum>().is_some())
}

/// The sum of `value` (Decimal128 or Decimal256), checked.
fn checked_sum(value: Expr) -> Expr {
    AggregateUDF::new_from_impl(PgDecimalSum::new()).call(vec![value])
}

/// Registers the sum in a session, so that plans using it decode.
pub fn register(state: &mut datafusion::execution::SessionState) -> Result<()> {
    use datafusion::execution::FunctionRegistry;
    state.register_udaf(Arc::new(AggregateUDF::new_from_impl(PgDecimalSum::new())))?;
    Ok(())
}

/// See [`decimal_sum`].
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgDecimalSum {
    signature: Signature,
}

impl PgDecimalSum {
    fn new() -> PgDecimalSum {
        PgDecimalSum {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for PgDecimalSum {
    fn name(&self) -> &str {
        "pg_decimal_sum"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [DataType::Decimal128(_, scale)] => Ok(DataType::Decimal128(38, *scale)),
            [DataType::Decimal256(_, scale)] => Ok(DataType::Decimal256(76, *scale)),
            other => exec_err!("pg_decimal_sum of {other:?}"),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if args.is_distinct {
            // The translation never asks for it (see `DISTINCT` in
            // `decimal_sum`'s callers); summing each value once is not done here.
            return exec_err!("pg_decimal_sum of DISTINCT values");
        }
        Ok(match args.return_field.data_type() {
            DataType::Decimal128(..) => Box::new(Total::<Decimal128Type>::new(args.return_field.data_type())),
            _ => Box::new(Total::<Decimal256Type>::new(args.return_field.data_type())),
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "sum"),
            args.return_field.data_type().clone(),
            true,
        ))])
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        !args.is_distinct
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(match args.return_field.data_type() {
            DataType::Decimal128(..) => Box::new(Totals::<Decimal128Type>::new(args.return_field.data_type())),
            _ => Box::new(Totals::<Decimal256Type>::new(args.return_field.data_type())),
        })
    }
}

/// The error of a sum past its type.
fn beyond(data_type: &DataType) -> DataFusionError {
    let digits = match data_type {
        DataType::Decimal256(..) => 76,
        _ => 38,
    };
    Error::HandBack(format!("a numeric sum beyond {digits} digits")).into_datafusion()
}

/// The running sum of each group; a group without a value is NULL.
#[derive(Debug)]
struct Totals<T: ArrowPrimitiveType> {
    data_type: DataType,
    sums: Vec<T::Native>,
    /// Whether each group has had a value.
    seen: Vec<bool>,
}

impl<T: ArrowPrimitiveType> Totals<T> {
    fn new(data_type: &DataType) -> Totals<T> {
        Totals {
            data_type: data_type.clone(),
            sums: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Adds each valid row of `values` allowed by `filter` to its group.
    fn add(
        &mut self,
        values: &ArrayRef,
        group_indices: &[usize],
        filter: Option<&BooleanArray>,
        groups: usize,
    ) -> Result<()> {
        self.sums.resize(groups, T::Native::default());
        self.seen.resize(groups, false);
        let values = values.as_primitive::<T>();
        for (row, &group) in group_indices.iter().enumerate() {
            if values.is_null(row) || filter.is_some_and(|f| !(f.is_valid(row) && f.value(row))) {
                continue;
            }
            self.sums[group] = self.sums[group]
                .add_checked(values.value(row))
                .map_err(|_| beyond(&self.data_type))?;
            self.seen[group] = true;
        }
        Ok(())
    }

    /// The sums of the groups `emit_to` names, taken out.
    fn take(&mut self, emit_to: EmitTo) -> ArrayRef {
        let sums = emit_to.take_needed(&mut self.sums);
        let seen = emit_to.take_needed(&mut self.seen);
        let array = PrimitiveArray::<T>::from_iter(sums.into_iter().zip(seen).map(|(s, seen)| seen.then_some(s)))
            .with_data_type(self.data_type.clone());
        Arc::new(array)
    }
}

impl<T: ArrowPrimitiveType> GroupsAccumulator for Totals<T> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.add(&values[0], group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(self.take(emit_to))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.take(emit_to)])
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.add(&values[0], group_indices, None, total_num_groups)
    }

    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        // Each row its own sum; filtered-out rows NULL.
        let values = values[0].as_primitive::<T>();
        let each = (0..values.len()).map(|row| {
            let counted = opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
            (counted && values.is_valid(row)).then(|| values.value(row))
        });
        Ok(vec![Arc::new(
            PrimitiveArray::<T>::from_iter(each).with_data_type(self.data_type.clone()),
        )])
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.sums.capacity() * size_of::<T::Native>() + self.seen.capacity()
    }
}

/// The sum of one group, or of a window frame (values leave it as the
/// frame slides).
#[derive(Debug)]
struct Total<T: ArrowPrimitiveType> {
    data_type: DataType,
    sum: T::Native,
    /// How many values (or partial sums) are in `sum`; NULL at 0.
    count: u64,
}

impl<T: ArrowPrimitiveType> Total<T> {
    fn new(data_type: &DataType) -> Total<T> {
        Total {
            data_type: data_type.clone(),
            sum: T::Native::default(),
            count: 0,
        }
    }
}

impl<T: ArrowNumericType + std::fmt::Debug> Accumulator for Total<T> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = values[0].as_primitive::<T>();
        if let Some(total) = sum_checked(values).map_err(|_| beyond(&self.data_type))? {
            self.sum = self.sum.add_checked(total).map_err(|_| beyond(&self.data_type))?;
        }
        self.count += (values.len() - values.null_count()) as u64;
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = values[0].as_primitive::<T>();
        if let Some(total) = sum_checked(values).map_err(|_| beyond(&self.data_type))? {
            self.sum = self.sum.sub_checked(total).map_err(|_| beyond(&self.data_type))?;
        }
        self.count -= (values.len() - values.null_count()) as u64;
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        ScalarValue::new_primitive::<T>((self.count > 0).then_some(self.sum), &self.data_type)
    }

    fn size(&self) -> usize {
        size_of::<Self>()
    }
}
