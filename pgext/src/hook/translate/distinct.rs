//! DISTINCT over the select list, and DISTINCT ON: duplicates found by the
//! bytes of the values, so only over types whose equal values have equal
//! bytes ([`expr::equal_as_bytes`]).
//!
//! DISTINCT ON keeps the first row of each group in the query's ORDER BY,
//! which starts with the DISTINCT ON expressions (Postgres requires it):
//! the row numbered 1 in its group by `row_number()` over that order. weft
//! takes it where DataFusion orders every ORDER BY key as Postgres does.
//! Of rows equal in every ORDER BY key Postgres keeps whichever its plan
//! meets first, and so does weft.

use datafusion::common::Column;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{col, lit, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, SortExpr};
use pgrx::pg_sys;

use super::{df, expr, find_target, Refusal, Translator};
use crate::nodes::list;

impl Translator {
    /// `plan` (the level's projected rows, every target entry as
    /// `c{resno}`) without duplicates, as `q`'s DISTINCT or DISTINCT ON
    /// removes them.
    ///
    /// # Safety
    /// `q` is the current level's valid Query; `targets` its target list.
    pub(super) unsafe fn distinct(
        &mut self,
        q: &pg_sys::Query,
        plan: LogicalPlan,
        targets: &[*mut pg_sys::TargetEntry],
    ) -> Result<LogicalPlan, Refusal> {
        let what = if q.hasDistinctOn { "DISTINCT ON" } else { "DISTINCT" };
        // SAFETY: per the caller.
        let clauses = unsafe { list::<pg_sys::SortGroupClause>(q.distinctClause) };
        let mut on = Vec::with_capacity(clauses.len());
        for clause in clauses {
            // SAFETY: as above.
            let target = find_target(targets, unsafe { (*clause).tleSortGroupRef })?;
            // SAFETY: a target entry of a valid Query.
            let (node, resno) = unsafe { ((*target).expr.cast::<pg_sys::Node>(), (*target).resno) };
            let column = format!("c{resno}");
            let arrow = plan
                .schema()
                .field_with_unqualified_name(&column)
                .map_err(df)?
                .data_type()
                .clone();
            // SAFETY: as above.
            let (typid, _, collation) = unsafe { crate::nodes::expr_type(node) };
            expr::equal_as_bytes(typid, collation, &arrow, what)?;
            on.push(col(column));
        }
        let builder = LogicalPlanBuilder::from(plan);
        if !q.hasDistinctOn {
            // SAFETY: target entries of a valid Query.
            let visible = targets.iter().filter(|&&t| unsafe { !(*t).resjunk }).count();
            if on.len() != visible || targets.len() != visible {
                return Err(Refusal::shape(
                    "DISTINCT with ORDER BY expressions outside the select list",
                ));
            }
            return builder.distinct().map_err(df)?.build().map_err(df);
        }
        // DISTINCT ON: the first row of each group in the ORDER BY.
        let mut order = Vec::new();
        // SAFETY: as above.
        for clause in unsafe { list::<pg_sys::SortGroupClause>(q.sortClause) } {
            // SAFETY: as above.
            let clause = unsafe { &*clause };
            let target = find_target(targets, clause.tleSortGroupRef)?;
            // SAFETY: as above.
            let column = format!("c{}", unsafe { (*target).resno });
            let image = builder
                .schema()
                .field_with_unqualified_name(&column)
                .is_ok_and(|f| *f.data_type() == datafusion::arrow::datatypes::DataType::Binary);
            // SAFETY: as above.
            let key = unsafe { expr::sort_key(clause.sortop, (*target).expr.cast(), image)? };
            if key.comparator.is_some() {
                return Err(Refusal::inexact(
                    "DISTINCT ON with an ORDER BY DataFusion does not sort as Postgres does",
                ));
            }
            order.push(SortExpr::new(col(column), !key.descending, clause.nulls_first));
        }
        // Each group's rows numbered in that order, the first kept: a
        // sort within each group, where DataFusion's own DISTINCT ON keeps
        // an ordered first_value per column and group, row by row.
        let columns: Vec<Expr> = builder.schema().columns().into_iter().map(Expr::Column).collect();
        let first = row_number().partition_by(on).order_by(order).build().map_err(df)?;
        let name = first.schema_name().to_string();
        let numbered = LogicalPlanBuilder::window_plan(builder.build().map_err(df)?, vec![first]).map_err(df)?;
        LogicalPlanBuilder::from(numbered)
            .filter(Expr::Column(Column::from_name(name)).eq(lit(1u64)))
            .map_err(df)?
            .project(columns)
            .map_err(df)?
            .build()
            .map_err(df)
    }
}
