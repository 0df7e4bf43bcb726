//! Subqueries in expressions (EXISTS, IN, scalar), and conditions where
//! NULL means false (a WHERE clause), which let IN and NOT IN over columns
//! that may be NULL be computed with joins.
//!
//! `x IN (SELECT y ...)` is NULL, not false, when nothing matches and a
//! NULL is on either side; `x NOT IN (...)` then too. DataFusion's semi
//! and anti joins give true or false. Where the value itself is used
//! (a result column, under OR or CASE), weft takes IN only over columns
//! that cannot be NULL. In a WHERE clause NULL and false both drop the
//! row, so:
//!
//! - `x IN (sub)` is a semi join: a row is kept exactly when an equal `y`
//!   exists, NULLs matching nothing, as in Postgres;
//! - `x NOT IN (sub)` keeps a row exactly when the subquery is empty, or
//!   `x` is not NULL, no `y` equals it and no `y` is NULL. weft writes
//!   that out: an anti join on `y = x` (`NOT EXISTS`, which is not
//!   NULL-aware and needs to be nothing more), and where `x` may be NULL,
//!   `x IS NOT NULL OR (SELECT count(*) FROM sub) = 0`, and where `y` may
//!   be, `(SELECT count(*) FROM sub WHERE y IS NULL) = 0`. Each count is a
//!   scalar subquery, run once and handed to every participant, where a
//!   NULL-aware anti join would need every participant to know of NULLs
//!   and rows that hash elsewhere. Only for an uncorrelated subquery: a
//!   correlated one's counts would be per outer row.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, ExprSchema};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{
    exists, in_subquery, lit, not, not_exists, scalar_subquery, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder,
};
use pgrx::pg_sys::{self, NodeTag};

use super::function::equality_kind;
use super::scope::Scope;
use super::{df, Refusal, Translator};
use crate::nodes::{cast as node_cast, list};

impl Translator {
    /// A condition in which NULL means false (a WHERE clause): its
    /// conjuncts, IN and NOT IN among them, as in the module docs.
    ///
    /// # Safety
    /// `node` is a valid boolean expression of the current level, on the
    /// backend thread.
    pub(super) unsafe fn predicate(&mut self, node: *mut pg_sys::Node, scope: &Scope) -> Result<Expr, Refusal> {
        // SAFETY: per the caller.
        unsafe {
            if let Some(b) = node_cast::<pg_sys::BoolExpr>(node, NodeTag::T_BoolExpr) {
                let args = list::<pg_sys::Node>((*b).args);
                match (*b).boolop {
                    pg_sys::BoolExprType::AND_EXPR => {
                        let mut conjuncts = Vec::with_capacity(args.len());
                        for arg in args {
                            conjuncts.push(self.predicate(arg, scope)?);
                        }
                        return conjuncts.into_iter().reduce(Expr::and).ok_or("empty AND".into());
                    }
                    pg_sys::BoolExprType::NOT_EXPR => {
                        if let [arg] = args[..] {
                            if let Some(link) = any_sublink(arg) {
                                return self.in_subquery(&*link, scope, true, true);
                            }
                        }
                    }
                    _ => {}
                }
            }
            if let Some(link) = any_sublink(node) {
                return self.in_subquery(&*link, scope, false, true);
            }
            self.expr(node, scope)
        }
    }

    /// EXISTS, IN (subquery), and scalar subqueries, whose value is used
    /// as it is.
    ///
    /// # Safety
    /// `link` is a SubLink of the current level, on the backend thread.
    pub(super) unsafe fn sublink(&mut self, link: &pg_sys::SubLink, scope: &Scope) -> Result<Expr, Refusal> {
        match link.subLinkType {
            pg_sys::SubLinkType::ANY_SUBLINK => {
                // SAFETY: per the caller.
                unsafe { self.in_subquery(link, scope, false, false) }
            }
            pg_sys::SubLinkType::EXISTS_SUBLINK | pg_sys::SubLinkType::EXPR_SUBLINK => {
                // SAFETY: per the caller; a SubLink's subselect is a Query.
                let plan = Arc::new(unsafe { self.query(link.subselect.cast())? });
                Ok(match link.subLinkType {
                    pg_sys::SubLinkType::EXISTS_SUBLINK => exists(plan),
                    _ => scalar_subquery(plan),
                })
            }
            _ => Err(Refusal::shape("ALL, ARRAY or row subqueries")),
        }
    }

    /// `x IN (subquery)`, or with `negated` `x NOT IN (subquery)`;
    /// `truth_only` where NULL means false.
    ///
    /// # Safety
    /// `link` is an ANY SubLink of the current level, on the backend
    /// thread.
    unsafe fn in_subquery(
        &mut self,
        link: &pg_sys::SubLink,
        scope: &Scope,
        negated: bool,
        truth_only: bool,
    ) -> Result<Expr, Refusal> {
        // SAFETY: per the caller; a SubLink's subselect is a Query.
        let plan = unsafe { self.query(link.subselect.cast())? };
        // testexpr is `outer = Param(sub's column)`.
        // SAFETY: as above.
        let op = unsafe { node_cast::<pg_sys::OpExpr>(link.testexpr, NodeTag::T_OpExpr) }
            .ok_or("IN with a row or an unusual test")?;
        // SAFETY: as above.
        let op = unsafe { &*op };
        if equality_kind(op.opfuncid) != Some(true) {
            return Err(Refusal::shape("ANY with an operator other than ="));
        }
        // SAFETY: as above.
        let args = unsafe { list::<pg_sys::Node>(op.args) };
        let outer = *args.first().ok_or("an empty IN test")?;
        // SAFETY: as above.
        let value = unsafe { self.expr(outer, scope)? };
        if plan.schema().fields().len() != 1 {
            return Err(Refusal::shape("IN over several columns"));
        }
        let schema = self.scope_schema(scope).ok_or("IN (subquery) before its FROM clause")?;
        let outer_nullable = value.nullable(schema.as_ref()).map_err(df)?;
        let inner_nullable = plan.schema().field(0).is_nullable();
        if !outer_nullable && !inner_nullable {
            let test = in_subquery(value, Arc::new(plan));
            return Ok(if negated { not(test) } else { test });
        }
        if !truth_only {
            return Err(Refusal::inexact(
                "IN (subquery) over columns that may be NULL, whose NULL result is used",
            ));
        }
        if !negated {
            return Ok(in_subquery(value, Arc::new(plan)));
        }
        let mut correlated = false;
        plan.apply_with_subqueries(|node| {
            correlated |= node.contains_outer_reference();
            Ok(if correlated {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })
        .map_err(df)?;
        if correlated {
            return Err(Refusal::inexact(
                "NOT IN over a correlated subquery whose columns may be NULL",
            ));
        }
        not_in(value, plan, &schema, outer_nullable, inner_nullable)
    }
}

/// `value NOT IN (plan)` where NULL means false, `value` (an expression
/// over `schema`) or the subquery's column nullable; see the module docs.
fn not_in(
    value: Expr,
    plan: LogicalPlan,
    schema: &DFSchema,
    outer_nullable: bool,
    inner_nullable: bool,
) -> Result<Expr, Refusal> {
    let inner = Expr::Column(Column::from(plan.schema().qualified_field(0)));
    // The outer value, as the correlated subquery sees it.
    let outer = value
        .clone()
        .transform(|e| {
            Ok(match e {
                Expr::Column(column) => {
                    let field = schema.field_from_column(&column)?;
                    Transformed::yes(Expr::OuterReferenceColumn(
                        Arc::new(field.as_ref().clone().with_nullable(true)),
                        column,
                    ))
                }
                other => Transformed::no(other),
            })
        })
        .map_err(df)?
        .data;
    let matching = LogicalPlanBuilder::from(plan.clone())
        .filter(inner.clone().eq(outer))
        .map_err(df)?
        .build()
        .map_err(df)?;
    let mut condition = not_exists(Arc::new(matching));
    let rows = |plan: LogicalPlanBuilder| -> Result<Expr, Refusal> {
        let counted = plan
            .aggregate(Vec::<Expr>::new(), vec![count(lit(1i64))])
            .map_err(df)?
            .build()
            .map_err(df)?;
        Ok(scalar_subquery(Arc::new(counted)))
    };
    if outer_nullable {
        let empty = rows(LogicalPlanBuilder::from(plan.clone()))?.eq(lit(0i64));
        condition = condition.and(value.is_not_null().or(empty));
    }
    if inner_nullable {
        let nulls = LogicalPlanBuilder::from(plan).filter(inner.is_null()).map_err(df)?;
        condition = condition.and(rows(nulls)?.eq(lit(0i64)));
    }
    Ok(condition)
}

/// `node` as an ANY SubLink (`x IN (subquery)`, `x = ANY (subquery)`).
///
/// # Safety
/// `node` is a valid node.
unsafe fn any_sublink(node: *mut pg_sys::Node) -> Option<*mut pg_sys::SubLink> {
    // SAFETY: per the caller.
    unsafe { node_cast::<pg_sys::SubLink>(node, NodeTag::T_SubLink) }
        // SAFETY: as above.
        .filter(|&link| unsafe { (*link).subLinkType } == pg_sys::SubLinkType::ANY_SUBLINK)
}
