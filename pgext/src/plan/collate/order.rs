//! ORDER BY on text under a collation: each string's place among the
//! distinct strings of the whole input, in Postgres's order.
//!
//! A window function over the whole input (no PARTITION BY, no ORDER BY)
//! sees every row at once, so the numbers it gives are one order across
//! all of them: sorting the rows by the number is sorting them as
//! Postgres would, and DataFusion's sort, its top-k for a LIMIT, and a
//! sort's later keys all work unchanged. Only the distinct strings are
//! compared, each pair at most once per comparison of the sort.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::Result;
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{PartitionEvaluator, Signature, Volatility, WindowUDFImpl};
use pgrx::pg_sys::Oid;

use crate::pgcall;

/// The function's name in plans and EXPLAIN.
pub const NAME: &str = "pg:collation_order";

/// The place of each string of the input among its distinct strings,
/// ordered under a collation (NULL for NULL).
///
/// ```ignore
/// // ORDER BY name under en_US.UTF-8, as a plan writes it:
/// let place = WindowUDF::new_from_impl(CollatedOrder::new(collation)).call(vec![col("name")]);
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CollatedOrder {
    collation: Oid,
    signature: Signature,
}

impl CollatedOrder {
    /// The order of `collation`, a deterministic collation.
    pub fn new(collation: Oid) -> CollatedOrder {
        CollatedOrder {
            collation,
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }

    /// The collation.
    pub fn collation(&self) -> Oid {
        self.collation
    }
}

impl WindowUDFImpl for CollatedOrder {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(&self, _args: PartitionEvaluatorArgs) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(Places {
            collation: self.collation,
        }))
    }

    fn field(&self, args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(args.name(), DataType::UInt64, true)))
    }
}

/// Numbers one partition (the whole input).
#[derive(Debug)]
struct Places {
    collation: Oid,
}

impl PartitionEvaluator for Places {
    fn evaluate_all(&mut self, values: &[ArrayRef], _rows: usize) -> Result<ArrayRef> {
        let strings = super::strings(values[0].as_ref())?;
        let mut places: HashMap<&str, u64> = HashMap::new();
        let mut distinct = Vec::new();
        for value in strings.iter().flatten() {
            places.entry(value).or_insert_with(|| {
                distinct.push(value);
                0
            });
        }
        let collation = self.collation;
        pgcall::call("text ordered under a collation", || {
            if pgcall::should_stop() {
                return Err(pgcall::stopped());
            }
            // SAFETY: DataFusion runs a participant's plan on its backend
            // thread, and this is inside pgcall::call.
            distinct.sort_unstable_by(|a, b| unsafe { super::compare(collation, a, b) });
            Ok(())
        })?;
        for (place, value) in distinct.into_iter().enumerate() {
            places.insert(value, place as u64);
        }
        let numbered: UInt64Array = strings.iter().map(|value| value.map(|v| places[v])).collect();
        Ok(Arc::new(numbered))
    }
}

/// Whether `plan` (its subqueries included) orders text by
/// [`CollatedOrder`], on one participant.
pub fn orders_by_collation(plan: &datafusion::logical_expr::LogicalPlan) -> bool {
    use datafusion::logical_expr::expr::WindowFunctionDefinition;
    use datafusion::logical_expr::Expr;
    crate::plan::any_expr(plan, |e| {
        matches!(e, Expr::WindowFunction(window)
            if matches!(&window.fun, WindowFunctionDefinition::WindowUDF(udwf)
                if udwf.inner().downcast_ref::<CollatedOrder>().is_some()))
    })
}
