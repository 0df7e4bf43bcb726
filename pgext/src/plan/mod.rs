//! weft's physical plan over Postgres tables: heap tables as DataFusion
//! sources and their scan node, the passes that shape a distributed plan
//! around them, and the estimates they plan with.
//!
//! - [`bridge`]: Postgres functions evaluated by Postgres in each
//!   participant;
//! - [`collate`]: text ordered by Postgres's comparison under a collation
//!   other than C;
//! - [`table`]: heap tables as DataFusion sources, and [`column`] their
//!   columns;
//! - [`scan`]: their scan node, and [`codec`] its form in a shipped plan;
//! - [`keys`]: a hash join's build keys pushed into the scan under its
//!   probe side;
//! - [`lookup`]: a join's keys looked up in a btree index instead of a
//!   whole scan;
//! - [`estimate`]: Postgres's row estimates for filtered scans;
//! - [`pgfn`]: DataFusion functions that compute as Postgres does;
//! - [`stats`]: what pg_statistic says of a table's columns.

pub mod bridge;
pub mod codec;
pub mod collate;
pub mod column;
pub mod estimate;
pub mod keys;
pub mod lookup;
pub mod pgfn;
pub mod scan;
pub mod stats;
pub mod table;

/// Whether any expression of `plan`, its subqueries included, has a part
/// for which `found` holds.
pub fn any_expr(
    plan: &datafusion::logical_expr::LogicalPlan,
    found: impl Fn(&datafusion::logical_expr::Expr) -> bool,
) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut seen = false;
    let stop = |seen: bool| {
        if seen {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        }
    };
    let _ = plan.apply_with_subqueries(|node| {
        for expr in node.expressions() {
            let _ = expr.apply(|e| {
                seen |= found(e);
                Ok(stop(seen))
            });
        }
        Ok(stop(seen))
    });
    seen
}
