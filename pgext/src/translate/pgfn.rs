//! DataFusion functions that compute what Postgres computes where
//! DataFusion's own operators differ: integer arithmetic that raises
//! Postgres's errors instead of wrapping.
//!
//! Errors carry their SQLSTATE in the message ([`PgError`]) so that they
//! keep it across processes (a worker's error reaches the leader as text)
//! and the leader raises them as Postgres would ([`sqlstate_of`]).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{
    cast, ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use pgrx::pg_sys::{self, Oid};

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
}

impl IntOp {
    const ALL: [IntOp; 4] = [IntOp::Add, IntOp::Sub, IntOp::Mul, IntOp::Div];

    fn name(self) -> &'static str {
        match self {
            IntOp::Add => "pg_int_add",
            IntOp::Sub => "pg_int_sub",
            IntOp::Mul => "pg_int_mul",
            IntOp::Div => "pg_int_div",
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

/// Registers weft's functions in a session, so that plans that use them
/// can be planned and decoded there.
pub fn register(state: &mut SessionState) -> Result<()> {
    use datafusion::execution::FunctionRegistry;
    for op in IntOp::ALL {
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(PgIntOp::new(op))))?;
    }
    Ok(())
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
        let rows = args.number_rows;
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let [l, r] =
            <[ColumnarValue; 2]>::try_from(args.args).map_err(|_| DataFusionError::Internal("two arguments".into()))?;
        let (l, r) = (l.into_array(rows)?, r.into_array(rows)?);
        let data_type = l.data_type().clone();
        let result: std::result::Result<ArrayRef, ArrowError> = match self.op {
            IntOp::Add => numeric::add(&l, &r),
            IntOp::Sub => numeric::sub(&l, &r),
            IntOp::Mul => numeric::mul(&l, &r),
            IntOp::Div => numeric::div(&l, &r),
        };
        let array = result.map_err(|e| pg_error(e, &data_type))?;
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

/// An arithmetic error as Postgres words it.
fn pg_error(e: ArrowError, data_type: &DataType) -> DataFusionError {
    let error = match e {
        ArrowError::DivideByZero => PgError::new("22012", "division by zero"),
        ArrowError::ArithmeticOverflow(_) => PgError::new(
            "22003",
            match data_type {
                DataType::Int16 => "smallint out of range",
                DataType::Int32 => "integer out of range",
                _ => "bigint out of range",
            },
        ),
        other => return DataFusionError::ArrowError(Box::new(other), None),
    };
    DataFusionError::External(Box::new(error))
}

/// An error Postgres raises with a SQLSTATE of its own.
#[derive(Debug)]
pub struct PgError {
    sqlstate: &'static str,
    message: &'static str,
}

impl PgError {
    fn new(sqlstate: &'static str, message: &'static str) -> PgError {
        PgError { sqlstate, message }
    }
}

/// The marker that carries a SQLSTATE inside an error message.
const MARK: &str = " [SQLSTATE ";

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{MARK}{}]", self.message, self.sqlstate)
    }
}

impl std::error::Error for PgError {}

/// The Postgres error inside a (possibly wrapped) error message: its
/// SQLSTATE as Postgres's packed code, and its own message.
pub fn sqlstate_of(message: &str) -> Option<(i32, String)> {
    let at = message.find(MARK)?;
    let code = message.get(at + MARK.len()..at + MARK.len() + 5)?;
    let bytes = code.as_bytes();
    if !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    // MAKE_SQLSTATE: six bits a character, from '0'.
    let packed = bytes
        .iter()
        .enumerate()
        .fold(0i32, |acc, (i, &b)| acc + ((i32::from(b - b'0') & 0x3F) << (6 * i)));
    // The message is what precedes the marker, after any wrapping prefix
    // ("External error: ", "weft: ...: ").
    let text = &message[..at];
    let own = text.rsplit(": ").next().unwrap_or(text).to_string();
    Some((packed, own))
}
