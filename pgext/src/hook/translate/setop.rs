//! UNION, INTERSECT and EXCEPT: a query level whose rows are a set
//! operation's over subqueries (Postgres's `setOperations` tree, whose
//! leaves are subquery entries of the level's range table).
//!
//! Postgres resolves each output column's type and coerces the leaves'
//! columns to it when it plans; weft takes a set operation only where the
//! leaves' columns already have the same form in Arrow (so that no
//! coercion, and no change of a numeric's display scale, is needed).
//! Duplicates are removed (UNION, INTERSECT, EXCEPT) by equality of the
//! bytes, so only over types whose equal values have equal bytes, with
//! NULLs equal to each other as in Postgres. INTERSECT ALL and EXCEPT ALL,
//! whose multiplicities DataFusion's own do not keep, are INTERSECT and
//! EXCEPT of rows numbered among their equals ([`numbered`]).

use datafusion::common::Column;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder};
use pgrx::pg_sys::{self, NodeTag};

use super::{df, expr, rt_fetch, Refusal, Translator};
use crate::nodes::{cast as node_cast, oid_list};

impl Translator {
    /// The rows of the current level's set operation, `node` (a
    /// SetOperationStmt or a leaf's RangeTblRef).
    ///
    /// # Safety
    /// `node` is a node of the current level's `setOperations` tree.
    pub(super) unsafe fn set_operation(&mut self, node: *mut pg_sys::Node) -> Result<LogicalPlan, Refusal> {
        // SAFETY: per the caller.
        unsafe {
            if let Some(leaf) = node_cast::<pg_sys::RangeTblRef>(node, NodeTag::T_RangeTblRef) {
                let query = self.level().query;
                let rte = &*rt_fetch(query, (*leaf).rtindex)?;
                if rte.rtekind != pg_sys::RTEKind::RTE_SUBQUERY {
                    return Err(Refusal::shape("a set operation over something other than subqueries"));
                }
                return self.query(rte.subquery);
            }
            let op = node_cast::<pg_sys::SetOperationStmt>(node, NodeTag::T_SetOperationStmt)
                .ok_or("an unusual set operation")?;
            let op = &*op;
            let left = self.set_operation(op.larg)?;
            let right = self.set_operation(op.rarg)?;
            let (left_fields, right_fields) = (left.schema().fields(), right.schema().fields());
            if left_fields.len() != right_fields.len()
                || left_fields
                    .iter()
                    .zip(right_fields.iter())
                    .any(|(l, r)| l.data_type() != r.data_type())
            {
                return Err(Refusal::shape(
                    "a set operation whose sides' columns Postgres coerces to a common type",
                ));
            }
            if !op.all || op.op != pg_sys::SetOperation::SETOP_UNION {
                // Duplicates removed by the bytes.
                let types = oid_list(op.colTypes);
                let collations = oid_list(op.colCollations);
                for ((&typid, &collation), field) in types.iter().zip(&collations).zip(left_fields.iter()) {
                    expr::equal_as_bytes(typid, collation, field.data_type(), "a set operation")?;
                }
            }
            match (op.op, op.all) {
                (pg_sys::SetOperation::SETOP_UNION, true) => LogicalPlanBuilder::from(left)
                    .union(right)
                    .map_err(df)?
                    .build()
                    .map_err(df),
                (pg_sys::SetOperation::SETOP_UNION, false) => LogicalPlanBuilder::from(left)
                    .union_distinct(right)
                    .map_err(df)?
                    .build()
                    .map_err(df),
                (pg_sys::SetOperation::SETOP_INTERSECT, false) => {
                    LogicalPlanBuilder::intersect(left, right, false).map_err(df)
                }
                (pg_sys::SetOperation::SETOP_EXCEPT, false) => {
                    LogicalPlanBuilder::except(left, right, false).map_err(df)
                }
                (pg_sys::SetOperation::SETOP_INTERSECT, true) => {
                    let intersection = LogicalPlanBuilder::intersect(numbered(left)?, numbered(right)?, false);
                    unnumbered(intersection.map_err(df)?)
                }
                (pg_sys::SetOperation::SETOP_EXCEPT, true) => {
                    let difference = LogicalPlanBuilder::except(numbered(left)?, numbered(right)?, false);
                    unnumbered(difference.map_err(df)?)
                }
                _ => Err(Refusal::shape("an unusual set operation")),
            }
        }
    }
}

/// The column numbering a side's equal rows for INTERSECT ALL and EXCEPT
/// ALL.
const OCCURRENCE: &str = "__weft_occurrence";

/// `rows` with each row's occurrence among the rows equal to it (1, 2,
/// ...) beside it: with it, no two rows are equal, so that INTERSECT and
/// EXCEPT without ALL keep each row as often as Postgres's ALL keeps it
/// (min(m, n) and max(m - n, 0) of m equal rows on the left and n on the
/// right).
fn numbered(rows: LogicalPlan) -> Result<LogicalPlan, Refusal> {
    let partition: Vec<Expr> = rows.schema().columns().into_iter().map(Expr::Column).collect();
    let occurrence = row_number().partition_by(partition).build().map_err(df)?;
    let name = occurrence.schema_name().to_string();
    let mut columns: Vec<Expr> = rows.schema().columns().into_iter().map(Expr::Column).collect();
    let windowed = LogicalPlanBuilder::window_plan(rows, vec![occurrence]).map_err(df)?;
    columns.push(Expr::Column(Column::from_name(name)).alias(OCCURRENCE));
    LogicalPlanBuilder::from(windowed)
        .project(columns)
        .map_err(df)?
        .build()
        .map_err(df)
}

/// `rows` of [`numbered`] sides without their occurrences.
fn unnumbered(rows: LogicalPlan) -> Result<LogicalPlan, Refusal> {
    let columns: Vec<Expr> = rows
        .schema()
        .columns()
        .into_iter()
        .filter(|c| c.name != OCCURRENCE)
        .map(Expr::Column)
        .collect();
    LogicalPlanBuilder::from(rows)
        .project(columns)
        .map_err(df)?
        .build()
        .map_err(df)
}

/// The range table index of the leftmost leaf of set operation `node`,
/// whose entry the level's target list reads the rows as.
///
/// # Safety
/// `node` is a node of a valid `setOperations` tree.
pub(super) unsafe fn leftmost(node: *mut pg_sys::Node) -> Result<i32, Refusal> {
    // SAFETY: per the caller.
    unsafe {
        if let Some(leaf) = node_cast::<pg_sys::RangeTblRef>(node, NodeTag::T_RangeTblRef) {
            return Ok((*leaf).rtindex);
        }
        let op = node_cast::<pg_sys::SetOperationStmt>(node, NodeTag::T_SetOperationStmt)
            .ok_or("an unusual set operation")?;
        leftmost((*op).larg)
    }
}
