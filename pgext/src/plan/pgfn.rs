//! DataFusion functions that compute what Postgres computes where
//! DataFusion's own operators differ: integer arithmetic that raises
//! Postgres's errors instead of wrapping, numeric division with
//! Postgres's result scale and rounding, the overflow error of a float
//! sum, and numerics' sort keys.
//!
//! Their errors are Postgres's, SQLSTATE and words
//! ([`crate::error::Error::Postgres`]), kept across processes.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::{i256, DataType};
use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{
    cast, ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use pgrx::pg_sys::{self, Oid};

use crate::error::Error;

/// An integer operation with Postgres's overflow and division errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`, truncating toward zero as Postgres does.
    Div,
    /// `%`, with the dividend's sign, and 0 for the smallest integer
    /// modulo -1, as Postgres's int4mod.
    Mod,
}

impl IntOp {
    const ALL: [IntOp; 5] = [IntOp::Add, IntOp::Sub, IntOp::Mul, IntOp::Div, IntOp::Mod];

    fn name(self) -> &'static str {
        match self {
            IntOp::Add => "pg_int_add",
            IntOp::Sub => "pg_int_sub",
            IntOp::Mul => "pg_int_mul",
            IntOp::Div => "pg_int_div",
            IntOp::Mod => "pg_int_mod",
        }
    }
}

/// `l op r` computed in Postgres's result type `result` (int2, int4 or
/// int8), both sides cast to it first (Postgres widens the narrower
/// operand the same way).
pub fn int_op(op: IntOp, result: Oid, l: Expr, r: Expr) -> Result<Expr> {
    let data_type = match result {
        pg_sys::INT2OID => DataType::Int16,
        pg_sys::INT4OID => DataType::Int32,
        pg_sys::INT8OID => DataType::Int64,
        other => {
            return Err(DataFusionError::Plan(format!(
                "integer arithmetic returning type {other:?}"
            )))
        }
    };
    let udf = ScalarUDF::new_from_impl(PgIntOp::new(op));
    Ok(udf.call(vec![cast(l, data_type.clone()), cast(r, data_type)]))
}

/// `l / r` for numerics: the value of Postgres's quotient (rounded at the
/// scale Postgres picks for it), held as Decimal128(38, 24). Only where the
/// value matters, not its display scale (see `Translator::value_only`).
pub fn numeric_div(l: Expr, r: Expr) -> Expr {
    ScalarUDF::new_from_impl(PgNumericDiv::new()).call(vec![l, r])
}

/// A float8 sum (or average) `total` of values whose largest magnitude is
/// `largest`, raising Postgres's overflow error where the total is
/// infinite and no value was: Postgres's `float8pl` (and `float8_accum`)
/// raise it as the running sum overflows; DataFusion's sum returns
/// infinity.
pub fn float8_checked(total: Expr, largest: Expr) -> Expr {
    ScalarUDF::new_from_impl(PgFloat8Checked::new()).call(vec![total, largest])
}

/// A key of a numeric carried as its image whose bytes sort and compare as
/// Postgres's numerics do ([`crate::types::numeric_key`]): what a window's
/// PARTITION BY and ORDER BY, which DataFusion sorts and compares by
/// bytes, read of such a numeric.
pub fn numeric_key(image: Expr) -> Expr {
    ScalarUDF::new_from_impl(PgNumericKey::new()).call(vec![image])
}

/// The one form of a group of equal numerics carried as images, given
/// the smallest and largest image of the group (`min` and `max` of their
/// bytes): that image where they are the same; where they differ (`1.0`
/// and `1.00`), which one Postgres shows depends on its plan, and the
/// query is handed back to Postgres ([`Error::HandBack`]).
pub fn one_form(min: Expr, max: Expr) -> Expr {
    ScalarUDF::new_from_impl(PgOneForm::new()).call(vec![min, max])
}

/// Registers weft's functions in a session, so that plans that use them
/// can be planned and decoded there.
pub fn register(state: &mut SessionState) -> Result<()> {
    use datafusion::execution::FunctionRegistry;
    for op in IntOp::ALL {
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(PgIntOp::new(op))))?;
    }
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(PgNumericDiv::new())))?;
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(PgFloat8Checked::new())))?;
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(PgNumericKey::new())))?;
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(PgOneForm::new())))?;
    Ok(())
}

/// See [`one_form`].
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgOneForm {
    signature: Signature,
}

impl PgOneForm {
    fn new() -> PgOneForm {
        PgOneForm {
            signature: Signature::exact(vec![DataType::Binary, DataType::Binary], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PgOneForm {
    fn name(&self) -> &str {
        "pg_one_form"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::AsArray;
        let (min, max, scalar) = operands(args)?;
        let differ = min
            .as_binary::<i32>()
            .iter()
            .zip(max.as_binary::<i32>().iter())
            .any(|pair| matches!(pair, (Some(a), Some(b)) if a != b));
        if differ {
            return Err(Error::HandBack(
                "equal numerics of different display scales, of which Postgres shows the one its plan meets first"
                    .into(),
            )
            .into_datafusion());
        }
        result(min, scalar)
    }
}

/// See [`numeric_key`].
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgNumericKey {
    signature: Signature,
}

impl PgNumericKey {
    fn new() -> PgNumericKey {
        PgNumericKey {
            signature: Signature::exact(vec![DataType::Binary], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PgNumericKey {
    fn name(&self) -> &str {
        "pg_numeric_key"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{AsArray, BinaryBuilder};
        let ([images], scalar) = arguments(args)?;
        let images = images.as_binary::<i32>();
        let mut keys = BinaryBuilder::with_capacity(images.len(), images.values().len() + images.len());
        let mut key = Vec::new();
        for image in images {
            match image {
                None => keys.append_null(),
                Some(image) => {
                    key.clear();
                    crate::types::numeric_key(image, &mut key).map_err(Error::into_datafusion)?;
                    keys.append_value(&key);
                }
            }
        }
        result(Arc::new(keys.finish()), scalar)
    }
}

/// See [`float8_checked`].
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgFloat8Checked {
    signature: Signature,
}

impl PgFloat8Checked {
    fn new() -> PgFloat8Checked {
        PgFloat8Checked {
            signature: Signature::exact(vec![DataType::Float64, DataType::Float64], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PgFloat8Checked {
    fn name(&self) -> &str {
        "pg_float8_checked"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Float64Type;
        let (total, largest, scalar) = operands(args)?;
        let (totals, largests) = (
            total.as_primitive::<Float64Type>(),
            largest.as_primitive::<Float64Type>(),
        );
        let overflowed = totals
            .iter()
            .zip(largests.iter())
            .any(|pair| matches!(pair, (Some(t), Some(l)) if t.is_infinite() && l.is_finite()));
        if overflowed {
            return Err(Error::postgres("22003", "value out of range: overflow").into_datafusion());
        }
        result(total, scalar)
    }
}

/// The scale quotients are held at: Postgres's own quotient scale for
/// quotients down to 10^-8 of the dividend's magnitude (at least 16
/// significant digits), with 14 digits left before the point. A quotient
/// outside that is an error, never a different value.
const QUOTIENT_SCALE: i8 = 24;

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgNumericDiv {
    signature: Signature,
}

impl PgNumericDiv {
    fn new() -> PgNumericDiv {
        PgNumericDiv {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PgNumericDiv {
    fn name(&self) -> &str {
        "pg_numeric_div"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [DataType::Decimal128(..), DataType::Decimal128(..)] => Ok(DataType::Decimal128(38, QUOTIENT_SCALE)),
            _ => Err(DataFusionError::Plan(format!("pg_numeric_div over {arg_types:?}"))),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{AsArray, Decimal128Array};
        use datafusion::arrow::datatypes::Decimal128Type;
        let (l, r, scalar) = operands(args)?;
        let scale = |t: &DataType| match t {
            DataType::Decimal128(_, s) => Ok(*s),
            other => Err(DataFusionError::Internal(format!("pg_numeric_div over {other}"))),
        };
        let (sl, sr) = (scale(l.data_type())?, scale(r.data_type())?);
        let (l, r) = (l.as_primitive::<Decimal128Type>(), r.as_primitive::<Decimal128Type>());
        let quotients = l
            .iter()
            .zip(r.iter())
            .map(|pair| match pair {
                (Some(a), Some(b)) => divide(a, sl, b, sr).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<Decimal128Array>>()?
            .with_precision_and_scale(38, QUOTIENT_SCALE)?;
        result(Arc::new(quotients), scalar)
    }
}

/// Postgres's `numeric_div` of a / 10^sa by b / 10^sb (numeric.c:
/// `select_div_scale`, then `div_var` rounding half away from zero at that
/// scale), returned at [`QUOTIENT_SCALE`].
fn divide(a: i128, sa: i8, b: i128, sb: i8) -> Result<i128> {
    if b == 0 {
        return Err(Error::postgres("22012", "division by zero").into_datafusion());
    }
    if a == 0 {
        return Ok(0);
    }
    // select_div_scale: at least 16 significant digits, and no fewer
    // decimals than either input shows.
    let (w1, f1) = leading_digit(a, sa);
    let (w2, f2) = leading_digit(b, sb);
    let mut qweight = w1 - w2;
    if f1 <= f2 {
        qweight -= 1;
    }
    let rscale = (16 - qweight * 4).max(i32::from(sa)).max(i32::from(sb)).max(0);
    if rscale > i32::from(QUOTIENT_SCALE) {
        return Err(DataFusionError::Execution(format!(
            "a numeric quotient with {rscale} decimals, more than weft holds ({QUOTIENT_SCALE})"
        )));
    }
    // q = a * 10^(rscale + sb - sa) / b, rounded half away from zero.
    let overflow = || DataFusionError::Execution("a numeric quotient too large for weft".into());
    let ten = |e: i32| i256::from_i128(10).checked_pow(e as u32).ok_or_else(overflow);
    let exponent = rscale + i32::from(sb) - i32::from(sa);
    let (mut num, mut den) = (i256::from_i128(a), i256::from_i128(b));
    if exponent >= 0 {
        num = num.checked_mul(ten(exponent)?).ok_or_else(overflow)?;
    } else {
        den = den.checked_mul(ten(-exponent)?).ok_or_else(overflow)?;
    }
    let negative = num.is_negative() != den.is_negative();
    let (num, den) = (num.wrapping_abs(), den.wrapping_abs());
    let two = i256::from_i128(2);
    let rounded = num
        .checked_mul(two)
        .and_then(|n| n.checked_add(den))
        .and_then(|n| n.checked_div(den.checked_mul(two)?))
        .ok_or_else(overflow)?;
    let rounded = if negative { rounded.wrapping_neg() } else { rounded };
    rounded
        .checked_mul(ten(i32::from(QUOTIENT_SCALE) - rscale)?)
        .and_then(|q| q.to_i128())
        .filter(|q| q.unsigned_abs() < 10u128.pow(38))
        .ok_or_else(overflow)
}

/// The weight and value of the leading base-10000 digit of x / 10^s
/// (x != 0), as numeric stores it: digits aligned at the decimal point.
fn leading_digit(x: i128, s: i8) -> (i32, u128) {
    let magnitude = x.unsigned_abs();
    // The decimal exponent of the leading digit.
    let exponent = magnitude.ilog10() as i32 - i32::from(s);
    let weight = exponent.div_euclid(4);
    let shift = 4 * weight + i32::from(s);
    let first = if shift >= 0 {
        magnitude / 10u128.pow(shift as u32)
    } else {
        magnitude * 10u128.pow(shift.unsigned_abs())
    };
    (weight, first)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgIntOp {
    op: IntOp,
    signature: Signature,
}

impl PgIntOp {
    fn new(op: IntOp) -> PgIntOp {
        PgIntOp {
            op,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PgIntOp {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [l, r] if l == r && matches!(l, DataType::Int16 | DataType::Int32 | DataType::Int64) => Ok(l.clone()),
            _ => Err(DataFusionError::Plan(format!("{} over {arg_types:?}", self.name()))),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (l, r, scalar) = operands(args)?;
        let data_type = l.data_type().clone();
        let result: std::result::Result<ArrayRef, ArrowError> = match self.op {
            IntOp::Add => numeric::add(&l, &r),
            IntOp::Sub => numeric::sub(&l, &r),
            IntOp::Mul => numeric::mul(&l, &r),
            IntOp::Div => numeric::div(&l, &r),
            IntOp::Mod => numeric::rem(&l, &r),
        };
        self::result(result.map_err(|e| pg_error(e, &data_type))?, scalar)
    }
}

/// A binary function's operands as arrays, and whether both were scalars
/// (then so is the result).
fn operands(args: ScalarFunctionArgs) -> Result<(ArrayRef, ArrayRef, bool)> {
    let ([l, r], scalar) = arguments(args)?;
    Ok((l, r, scalar))
}

/// A function's `N` arguments as arrays, and whether all were scalars
/// (then so is the result, [`result`]).
pub(super) fn arguments<const N: usize>(args: ScalarFunctionArgs) -> Result<([ArrayRef; N], bool)> {
    let rows = args.number_rows;
    let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let arrays = args
        .args
        .into_iter()
        .map(|arg| arg.into_array(rows))
        .collect::<Result<Vec<_>>>()?;
    let arrays = <[ArrayRef; N]>::try_from(arrays)
        .map_err(|_| DataFusionError::Internal(format!("a function of {N} arguments")))?;
    Ok((arrays, scalar))
}

/// A function's result: `array`, or its one value when the arguments were
/// scalars.
pub(super) fn result(array: ArrayRef, scalar: bool) -> Result<ColumnarValue> {
    Ok(if scalar {
        ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?)
    } else {
        ColumnarValue::Array(array)
    })
}

/// An arithmetic error as Postgres words it.
fn pg_error(e: ArrowError, data_type: &DataType) -> DataFusionError {
    let error = match e {
        ArrowError::DivideByZero => Error::postgres("22012", "division by zero"),
        ArrowError::ArithmeticOverflow(_) => Error::postgres(
            "22003",
            match data_type {
                DataType::Int16 => "smallint out of range",
                DataType::Int32 => "integer out of range",
                _ => "bigint out of range",
            },
        ),
        other => return DataFusionError::ArrowError(Box::new(other), None),
    };
    error.into_datafusion()
}
