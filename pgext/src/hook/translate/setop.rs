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
//! whose multiplicities DataFusion does not keep, stay with Postgres.

use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
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
                _ => Err(Refusal::shape("INTERSECT ALL or EXCEPT ALL")),
            }
        }
    }
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
