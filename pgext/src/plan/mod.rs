//! weft's physical plan over Postgres tables: heap tables as DataFusion
//! sources and their scan node, the passes that shape a distributed plan
//! around them, and the estimates they plan with.
//!
//! - [`bridge`]: Postgres functions evaluated by Postgres in each
//!   participant;
//! - [`collate`]: values in Postgres's order where DataFusion's is not
//!   it: text under a collation other than C, any type by its btree
//!   comparison;
//! - [`table`]: heap tables as DataFusion sources, and [`column`] their
//!   columns;
//! - [`scan`]: their scan node, and [`codec`] its form in a shipped plan;
//! - [`keys`]: a hash join's build keys pushed into the scan under its
//!   probe side;
//! - [`lookup`]: a join's keys looked up in a btree index instead of a
//!   whole scan;
//! - [`estimate`]: Postgres's row estimates for filtered scans;
//! - [`decimal_sum`]: sums of decimals that never wrap;
//! - [`pgfn`]: DataFusion functions that compute as Postgres does, and
//!   [`spread`] the variances and standard deviations of integers,
//!   [`moments`] the statistics of floats;
//! - [`stats`]: what pg_statistic says of a table's columns.

pub mod bridge;
pub mod codec;
pub mod collate;
pub mod column;
pub mod decimal_sum;
pub mod estimate;
pub mod keys;
pub mod lookup;
pub mod moments;
pub mod pgfn;
pub mod scan;
pub mod spread;
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

/// Whether `plan`, its subqueries included, joins, groups or removes
/// duplicates: the work weft distributes best, beside which a bridged
/// call's cost weighs least.
pub fn joins_or_groups(plan: &datafusion::logical_expr::LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Expr, LogicalPlan};
    let mut seen = false;
    let _ = plan.apply_with_subqueries(|node| {
        seen |= match node {
            LogicalPlan::Join(_) | LogicalPlan::Distinct(_) => true,
            LogicalPlan::Aggregate(aggregate) => {
                !aggregate.group_expr.is_empty()
                    || aggregate.aggr_expr.iter().any(|e| {
                        // Under its alias.
                        let mut distinct = false;
                        let _ = e.apply(|part| {
                            distinct |= matches!(part, Expr::AggregateFunction(f) if f.params.distinct);
                            Ok(TreeNodeRecursion::Continue)
                        });
                        distinct
                    })
            }
            _ => false,
        };
        Ok(if seen {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    seen
}
