//! `var_samp`, `var_pop`, `stddev_samp` and `stddev_pop` (and `variance`,
//! `stddev`) of int2, int4, int8 and numeric values of one display scale,
//! whose results are numerics: from three sums DataFusion computes exactly
//! in each participant (the count, the sum and the sum of squares), the
//! value Postgres's `numeric_stddev_internal` computes from the same sums,
//! digit for digit.
//!
//! With values of display scale `d`, the sum has scale `d` and the sum of
//! squares `2d`. Postgres divides the numerator `N·Σx² − (Σx)²` (of scale
//! `2d`) by `N·(N − 1)` (or `N²`) at the scale `select_div_scale` picks (at
//! least 16 significant digits, and at least `2d`), rounding half away
//! from zero, and takes a standard deviation as the square root of that
//! rounded variance, correctly rounded at the same scale (`sqrt_var`).
//! Here that is integer arithmetic in 256 bits: the quotient rounded as
//! `(2·num + den) / (2·den)`, the root as the integer square root with one
//! more digit, rounded half up. A numerator of 0 (all values equal) is
//! Postgres's `0`, of display scale 0. Numbers beyond 256 bits hand the
//! query back to Postgres.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BinaryBuilder};
use datafusion::arrow::datatypes::{i256, DataType, Decimal128Type, Decimal256Type, Int64Type};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use pgrx::pg_sys::{self, Oid};

use crate::error::Error;
use crate::pgcall;
use crate::types::{ColumnReader, PgType};

/// Which spread of the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Spread {
    /// `var_samp` (and `variance`).
    VarSamp,
    /// `var_pop`.
    VarPop,
    /// `stddev_samp` (and `stddev`).
    StddevSamp,
    /// `stddev_pop`.
    StddevPop,
}

impl Spread {
    const ALL: [Spread; 4] = [Spread::VarSamp, Spread::VarPop, Spread::StddevSamp, Spread::StddevPop];

    /// The spread aggregate function `f` computes of int2, int4, int8 or
    /// numeric values, and of which of them; None for any other function.
    pub fn of(f: u32) -> Option<(Spread, Summed)> {
        use Summed::{Int8, Narrow, Numeric};
        Some(match f {
            pg_sys::F_VAR_SAMP_INT2 | pg_sys::F_VAR_SAMP_INT4 | pg_sys::F_VARIANCE_INT2 | pg_sys::F_VARIANCE_INT4 => {
                (Spread::VarSamp, Narrow)
            }
            pg_sys::F_VAR_SAMP_INT8 | pg_sys::F_VARIANCE_INT8 => (Spread::VarSamp, Int8),
            pg_sys::F_VAR_SAMP_NUMERIC | pg_sys::F_VARIANCE_NUMERIC => (Spread::VarSamp, Numeric),
            pg_sys::F_VAR_POP_INT2 | pg_sys::F_VAR_POP_INT4 => (Spread::VarPop, Narrow),
            pg_sys::F_VAR_POP_INT8 => (Spread::VarPop, Int8),
            pg_sys::F_VAR_POP_NUMERIC => (Spread::VarPop, Numeric),
            pg_sys::F_STDDEV_SAMP_INT2 | pg_sys::F_STDDEV_SAMP_INT4 | pg_sys::F_STDDEV_INT2 | pg_sys::F_STDDEV_INT4 => {
                (Spread::StddevSamp, Narrow)
            }
            pg_sys::F_STDDEV_SAMP_INT8 | pg_sys::F_STDDEV_INT8 => (Spread::StddevSamp, Int8),
            pg_sys::F_STDDEV_SAMP_NUMERIC | pg_sys::F_STDDEV_NUMERIC => (Spread::StddevSamp, Numeric),
            pg_sys::F_STDDEV_POP_INT2 | pg_sys::F_STDDEV_POP_INT4 => (Spread::StddevPop, Narrow),
            pg_sys::F_STDDEV_POP_INT8 => (Spread::StddevPop, Int8),
            pg_sys::F_STDDEV_POP_NUMERIC => (Spread::StddevPop, Numeric),
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Spread::VarSamp => "pg_var_samp",
            Spread::VarPop => "pg_var_pop",
            Spread::StddevSamp => "pg_stddev_samp",
            Spread::StddevPop => "pg_stddev_pop",
        }
    }

    fn sample(self) -> bool {
        matches!(self, Spread::VarSamp | Spread::StddevSamp)
    }

    fn root(self) -> bool {
        matches!(self, Spread::StddevSamp | Spread::StddevPop)
    }
}

/// Which values a spread reads, which decides how their sums are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summed {
    /// int2 and int4: squares fit in int8, sums in Decimal128(38, 0).
    Narrow,
    /// int8: squares summed in Decimal256.
    Int8,
    /// numerics of one display scale `d`: the sum in Decimal128(38, d),
    /// the squares in Decimal256(76, 2d).
    Numeric,
}

/// The spread `kind` of values whose count is `count` (int8), sum `sum`
/// (Decimal128(38, d)) and sum of squares `squares` (Decimal128(38, 0)
/// where d is 0, or Decimal256(76, 2d)), all exact, as Postgres's numeric,
/// carried as its image.
pub fn spread(kind: Spread, count: Expr, sum: Expr, squares: Expr) -> Expr {
    ScalarUDF::new_from_impl(PgSpread::new(kind)).call(vec![count, sum, squares])
}

/// Registers the spreads in a session, so that plans using them decode.
pub fn register(state: &mut datafusion::execution::SessionState) -> Result<()> {
    use datafusion::execution::FunctionRegistry;
    for kind in Spread::ALL {
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(PgSpread::new(kind))))?;
    }
    Ok(())
}

/// See [`spread`].
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgSpread {
    kind: Spread,
    signature: Signature,
}

impl PgSpread {
    fn new(kind: Spread) -> PgSpread {
        PgSpread {
            kind,
            signature: Signature::any(3, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PgSpread {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let ([count, sum, squares], scalar) = super::pgfn::arguments(args)?;
        let scale = match sum.data_type() {
            DataType::Decimal128(_, scale) if *scale >= 0 => *scale as u32,
            other => return Err(DataFusionError::Internal(format!("a spread of sums of {other}"))),
        };
        let count = count.as_primitive::<Int64Type>();
        let sum = sum.as_primitive::<Decimal128Type>();
        let square = |row: usize| match squares.data_type() {
            DataType::Decimal256(..) => {
                let squares = squares.as_primitive::<Decimal256Type>();
                squares.is_valid(row).then(|| squares.value(row))
            }
            _ => {
                let squares = squares.as_primitive::<Decimal128Type>();
                squares.is_valid(row).then(|| i256::from_i128(squares.value(row)))
            }
        };
        let texts = (0..count.len())
            .map(|row| {
                let n = if count.is_valid(row) { count.value(row) } else { 0 };
                let Some(s2) = square(row).filter(|_| n > 0 && sum.is_valid(row)) else {
                    return Ok(None);
                };
                decimal(self.kind, n, i256::from_i128(sum.value(row)), s2, scale)
                    .map_err(|why| Error::HandBack(format!("{}: {why}", self.kind.name())).into_datafusion())
            })
            .collect::<Result<Vec<Option<String>>>>()?;
        super::pgfn::result(Arc::new(numerics(&texts)?), scalar)
    }
}

/// Each decimal text as Postgres's numeric (by `numeric_in`, which keeps
/// the text's scale as the display scale), carried as its image.
fn numerics(texts: &[Option<String>]) -> Result<datafusion::arrow::array::BinaryArray> {
    if texts.iter().all(Option::is_none) {
        let mut empty = BinaryBuilder::new();
        texts.iter().for_each(|_| empty.append_null());
        return Ok(empty.finish());
    }
    // SAFETY: DataFusion runs a participant's plan on its backend thread;
    // numeric_in reads a NUL-terminated decimal, and the reader copies each
    // value out before the scratch memory goes.
    pgcall::call("a numeric spread", || unsafe {
        pgcall::in_scratch_memory(c"weft spread", || {
            let ty = PgType::of(pg_sys::NUMERICOID, -1).map_err(DataFusionError::Execution)?;
            let mut reader = ColumnReader::new(ty, texts.len());
            for text in texts {
                match text {
                    None => reader.push(pg_sys::Datum::from(0usize), true),
                    Some(text) => {
                        let text = std::ffi::CString::new(text.as_str())
                            .map_err(|e| DataFusionError::Internal(e.to_string()))?;
                        let datum = pg_sys::OidInputFunctionCall(
                            Oid::from(pg_sys::F_NUMERIC_IN),
                            text.as_ptr().cast_mut(),
                            pg_sys::NUMERICOID,
                            -1,
                        );
                        reader.push(datum, false)
                    }
                }
                .map_err(|e| e.into_datafusion())?;
            }
            let array = reader.finish().map_err(|e| e.into_datafusion())?;
            Ok(array.as_binary::<i32>().clone())
        })
    })
}

/// The spread `kind` of `n` values (`n` > 0) of display scale `scale`
/// whose sum is `s1` and sum of squares `s2` (integers: the sums times
/// 10^`scale` and 10^2·`scale`), as decimal text at Postgres's display
/// scale; None where Postgres's is NULL (a sample of one value); why not
/// where the numbers outgrow 256 bits.
fn decimal(kind: Spread, n: i64, s1: i256, s2: i256, scale: u32) -> Result<Option<String>, String> {
    if kind.sample() && n <= 1 {
        return Ok(None);
    }
    let beyond = || "a spread beyond 256-bit arithmetic".to_string();
    let n = i256::from_i128(i128::from(n));
    // N·Σx² − (Σx)², exact, at scale 2·scale.
    let numerator = n
        .checked_mul(s2)
        .zip(s1.checked_mul(s1))
        .and_then(|(a, b)| a.checked_sub(b))
        .ok_or_else(beyond)?;
    if numerator <= i256::ZERO {
        return Ok(Some("0".into()));
    }
    let numerator_scale = 2 * scale;
    let denominator = if kind.sample() {
        n.checked_mul(n - i256::ONE)
    } else {
        n.checked_mul(n)
    }
    .ok_or_else(beyond)?;
    // select_div_scale: at least 16 significant digits, and no fewer
    // decimals than the numerator's.
    let (w1, f1) = weight_and_first_digit(numerator, numerator_scale).ok_or_else(beyond)?;
    let (w2, f2) = weight_and_first_digit(denominator, 0).ok_or_else(beyond)?;
    let mut qweight = w1 - w2;
    if f1 <= f2 {
        qweight -= 1;
    }
    let rscale = (16 - 4 * qweight).max(numerator_scale as i32).clamp(0, 1000) as u32;
    let ten = |e: u32| i256::from_i128(10).checked_pow(e).ok_or_else(beyond);
    let two = i256::from_i128(2);
    // The quotient at `rscale`, rounded half away from zero (both sides
    // are positive).
    let num = numerator
        .checked_mul(ten(rscale - numerator_scale)?)
        .ok_or_else(beyond)?;
    let variance = num
        .checked_mul(two)
        .and_then(|v| v.checked_add(denominator))
        .zip(denominator.checked_mul(two))
        .and_then(|(a, b)| a.checked_div(b))
        .ok_or_else(beyond)?;
    let value = if !kind.root() || variance == i256::ZERO {
        variance
    } else {
        // sqrt_var: the root with one digit more, rounded half up.
        let widened = variance.checked_mul(ten(2)?).ok_or_else(beyond)?;
        let root = isqrt(widened.checked_mul(ten(rscale)?).ok_or_else(beyond)?);
        (root + i256::from_i128(5)) / i256::from_i128(10)
    };
    Ok(Some(fixed(value, rscale)))
}

/// The base-10000 weight and leading base-10000 digit of `x`·10^-`scale`
/// (`x` > 0), as numeric stores it (digits aligned at the decimal point);
/// None beyond 256 bits.
fn weight_and_first_digit(x: i256, scale: u32) -> Option<(i32, i256)> {
    // Whole base-10000 digits after the point: x·10^(aligned − scale).
    let aligned = scale.div_ceil(4) * 4;
    let x = x.checked_mul(i256::from_i128(10).checked_pow(aligned - scale)?)?;
    let digits = x.to_string().len() as u32;
    let count = digits.div_ceil(4);
    let weight = count as i32 - 1 - (aligned / 4) as i32;
    let first = x / i256::from_i128(10_000).checked_pow(count - 1)?;
    Some((weight, first))
}

/// The integer square root of `n` >= 0, by Newton's iteration from above.
fn isqrt(n: i256) -> i256 {
    if n < i256::from_i128(2) {
        return n;
    }
    // 10^ceil(digits / 2) is at least the root.
    let digits = n.to_string().len() as u32;
    let mut x = i256::from_i128(10).wrapping_pow(digits.div_ceil(2));
    loop {
        let y = (x + n / x) / i256::from_i128(2);
        if y >= x {
            return x;
        }
        x = y;
    }
}

/// `value` times 10^-`scale` as decimal text with exactly `scale`
/// decimals (`value` >= 0).
fn fixed(value: i256, scale: u32) -> String {
    let digits = format!("{:0>width$}", value.to_string(), width = scale as usize + 1);
    let (whole, fraction) = digits.split_at(digits.len() - scale as usize);
    if scale == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{fraction}")
    }
}
