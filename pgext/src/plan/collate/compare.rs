//! `<`, `<=`, `>` and `>=` on text under a collation, as `text_lt` and
//! its kin answer them.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Operator, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use pgrx::pg_sys::Oid;

use crate::pgcall;
use crate::plan::bridge::STOP_CHECK_ROWS;

/// The operators, by their names in plans and EXPLAIN and their codes in
/// a shipped plan.
const OPERATORS: [(Operator, &str, u32); 4] = [
    (Operator::Lt, "pg:text_lt", 1),
    (Operator::LtEq, "pg:text_le", 2),
    (Operator::Gt, "pg:text_gt", 3),
    (Operator::GtEq, "pg:text_ge", 4),
];

/// One ordering comparison of two strings under a collation.
///
/// ```ignore
/// // name < 'M' under en_US.UTF-8, as a plan writes it:
/// let less = CollatedComparison::new(Operator::Lt, collation).unwrap();
/// let expr = ScalarUDF::new_from_impl(less).call(vec![col("name"), lit("M")]);
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CollatedComparison {
    operator: Operator,
    name: &'static str,
    collation: Oid,
    signature: Signature,
}

impl CollatedComparison {
    /// `operator` (one of `<`, `<=`, `>`, `>=`) under `collation`, a
    /// deterministic collation; None for another operator.
    pub fn new(operator: Operator, collation: Oid) -> Option<CollatedComparison> {
        let &(operator, name, _) = OPERATORS.iter().find(|(op, _, _)| *op == operator)?;
        Some(CollatedComparison {
            operator,
            name,
            collation,
            signature: Signature::exact(vec![DataType::Utf8, DataType::Utf8], Volatility::Immutable),
        })
    }

    /// The comparison whose code a shipped plan carries.
    pub(super) fn from_code(code: u32, collation: Oid) -> Result<CollatedComparison> {
        match OPERATORS.iter().find(|(_, _, c)| *c == code) {
            Some(&(operator, _, _)) => Ok(CollatedComparison::new(operator, collation).expect("a listed operator")),
            None => exec_err!("weft: a shipped text comparison with operator code {code}"),
        }
    }

    /// Whether `name` is one of these comparisons' names.
    pub(super) fn names(name: &str) -> bool {
        OPERATORS.iter().any(|(_, n, _)| *n == name)
    }

    /// The collation.
    pub fn collation(&self) -> Oid {
        self.collation
    }

    /// The operator's code in a shipped plan.
    pub(super) fn operator(&self) -> u32 {
        OPERATORS
            .iter()
            .find(|(op, _, _)| *op == self.operator)
            .map_or(0, |(_, _, code)| *code)
    }

    fn holds(&self, order: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self.operator {
            Operator::Lt => order == Less,
            Operator::LtEq => order != Greater,
            Operator::Gt => order == Greater,
            _ => order != Less,
        }
    }
}

impl ScalarUDFImpl for CollatedComparison {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        // A constant side stays one value rather than a column of copies.
        let side = |value: &ColumnarValue| -> Result<Side> {
            Ok(match value {
                ColumnarValue::Scalar(ScalarValue::Utf8(v)) => Side::Constant(v.clone()),
                ColumnarValue::Scalar(other) => return exec_err!("weft: text compared with {}", other.data_type()),
                ColumnarValue::Array(array) => Side::Column(super::strings(array.as_ref())?.clone()),
            })
        };
        let (left, right) = (side(&args.args[0])?, side(&args.args[1])?);
        let rows = if scalar { 1 } else { args.number_rows };
        let result = pgcall::call("text compared under a collation", || {
            let mut out = Vec::with_capacity(rows);
            for row in 0..rows {
                if row % STOP_CHECK_ROWS == STOP_CHECK_ROWS - 1 && pgcall::should_stop() {
                    return Err(pgcall::stopped());
                }
                out.push(match (left.get(row), right.get(row)) {
                    // SAFETY: DataFusion runs a participant's plan on its
                    // backend thread, and this is inside pgcall::call.
                    (Some(l), Some(r)) => Some(self.holds(unsafe { super::compare(self.collation, l, r) })),
                    _ => None,
                });
            }
            Ok(BooleanArray::from(out))
        })?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(result))
        })
    }
}

/// One side of a comparison.
enum Side {
    Constant(Option<String>),
    Column(StringArray),
}

impl Side {
    fn get(&self, row: usize) -> Option<&str> {
        match self {
            Side::Constant(value) => value.as_deref(),
            Side::Column(strings) => (!strings.is_null(row)).then(|| strings.value(row)),
        }
    }
}
