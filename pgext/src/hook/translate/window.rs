//! Window functions: a query level's `f(...) OVER (PARTITION BY ... ORDER
//! BY ... frame)` computed by DataFusion's window operators over the
//! level's rows (after GROUP BY and HAVING, as Postgres computes them),
//! each as a column that the target list reads.
//!
//! Taken where DataFusion's answer is Postgres's: partitions and peers
//! (rows equal in the ORDER BY, which RANGE frames and the ranks group)
//! found by the bytes, so over types whose equal values have equal bytes,
//! ordered as DataFusion sorts natively; the ranking functions
//! (`row_number`, `rank`, `dense_rank`, `percent_rank`, `cume_dist`) and
//! `count`, integer `sum`, and `min`/`max` of integers, dates and
//! timestamps as window aggregates;
//! ROWS frames with constant offsets, RANGE frames without offsets.
//! Rows equal in every ORDER BY key come in whichever order the plan
//! meets them, in Postgres as here, so that `row_number` among them is
//! either's choice. A window without PARTITION BY runs on one participant;
//! with it, each participant computes whole partitions (DataFusion hashes
//! the rows to them by the partition keys).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction};
use datafusion::logical_expr::{
    lit, Expr, ExprFunctionExt, ExprSchemable, LogicalPlan, LogicalPlanBuilder, SortExpr, WindowFrame,
    WindowFrameBound, WindowFrameUnits,
};
use pgrx::pg_sys::{self, NodeTag};

use super::args::function_name;
use super::scope::Scope;
use super::{df, expr, find_target, Refusal, Translator};
use crate::nodes::{cast as node_cast, list};

/// `frameOptions` bits (`parsenodes.h`).
const NONDEFAULT: i32 = 0x1;
const RANGE: i32 = 0x2;
const ROWS: i32 = 0x4;
const START_UNBOUNDED_PRECEDING: i32 = 0x20;
const END_UNBOUNDED_FOLLOWING: i32 = 0x100;
const START_CURRENT_ROW: i32 = 0x200;
const END_CURRENT_ROW: i32 = 0x400;
const START_OFFSET_PRECEDING: i32 = 0x800;
const END_OFFSET_PRECEDING: i32 = 0x1000;
const START_OFFSET_FOLLOWING: i32 = 0x2000;
const END_OFFSET_FOLLOWING: i32 = 0x4000;
/// EXCLUDE CURRENT ROW, GROUP, TIES.
const EXCLUDE: i32 = 0x8000 | 0x10000 | 0x20000;

impl Translator {
    /// `plan` (the level's rows in `scope`) with a column per window
    /// function of `targets`, which the level then reads by
    /// [`Translator::window_column`].
    ///
    /// # Safety
    /// `q` is the current level's valid Query, `targets` its target list.
    pub(super) unsafe fn windows(
        &mut self,
        q: &pg_sys::Query,
        plan: LogicalPlan,
        targets: &[*mut pg_sys::TargetEntry],
        scope: &Scope,
    ) -> Result<LogicalPlan, Refusal> {
        let mut found: Vec<*mut pg_sys::WindowFunc> = Vec::new();
        for &target in targets {
            // SAFETY: per the caller; Postgres lists the window functions
            // of an expression (never nested in one another).
            let nodes = unsafe {
                list::<pg_sys::Node>(pg_sys::pull_var_clause(
                    (*target).expr.cast(),
                    pg_sys::PVC_INCLUDE_WINDOWFUNCS as i32
                        | pg_sys::PVC_RECURSE_AGGREGATES as i32
                        | pg_sys::PVC_RECURSE_PLACEHOLDERS as i32,
                ))
            };
            for node in nodes {
                // SAFETY: nodes of a valid expression.
                if let Some(w) = unsafe { node_cast::<pg_sys::WindowFunc>(node, NodeTag::T_WindowFunc) } {
                    let same = |&seen: &*mut pg_sys::WindowFunc| {
                        // SAFETY: as above.
                        unsafe { pg_sys::equal(seen.cast(), w.cast()) }
                    };
                    if !found.iter().any(same) {
                        found.push(w);
                    }
                }
            }
        }
        // Each window's column is named as DataFusion names the
        // expression's output.
        let mut exprs: Vec<Expr> = Vec::with_capacity(found.len());
        let mut windows = Vec::with_capacity(found.len());
        for &w in &found {
            // SAFETY: a WindowFunc of this level.
            let value = unsafe { self.window_function(q, &*w, targets, &plan, scope)? };
            windows.push((w, value.schema_name().to_string()));
            if !exprs.contains(&value) {
                exprs.push(value);
            }
        }
        // One window node per distinct PARTITION BY and ORDER BY, as
        // DataFusion's operators need.
        let plan = LogicalPlanBuilder::window_plan(plan, exprs).map_err(df)?;
        let level = self.level();
        level.windows = windows;
        // Expressions of the level are typed from the rows they read,
        // which now have the window columns too.
        match scope {
            Scope::Rows => level.schema = Some(plan.schema().clone()),
            Scope::Grouped { .. } => level.grouped = Some(plan.schema().clone()),
        }
        Ok(plan)
    }

    /// The column holding window function `node`'s values.
    ///
    /// # Safety
    /// `node` is a valid WindowFunc.
    pub(super) unsafe fn window_column(&self, node: *mut pg_sys::WindowFunc) -> Result<Expr, Refusal> {
        let level = self.levels.last().ok_or("a window function outside a query")?;
        level
            .windows
            .iter()
            // SAFETY: per the caller; window functions of this level.
            .find(|(w, _)| unsafe { pg_sys::equal(w.cast(), node.cast()) })
            .map(|(_, name)| Expr::Column(datafusion::common::Column::from_name(name)))
            .ok_or_else(|| Refusal::shape("a window function outside the select list"))
    }

    /// Window function `w` over `plan`'s rows (the level's, in `scope`).
    ///
    /// # Safety
    /// `w` is a WindowFunc of `q`, the current level's Query; `targets` its
    /// target list.
    unsafe fn window_function(
        &mut self,
        q: &pg_sys::Query,
        w: &pg_sys::WindowFunc,
        targets: &[*mut pg_sys::TargetEntry],
        plan: &LogicalPlan,
        scope: &Scope,
    ) -> Result<Expr, Refusal> {
        // SAFETY: per the caller.
        let name = unsafe { function_name(w.winfnoid.to_u32()) };
        if !w.aggfilter.is_null() {
            return Err(Refusal::shape(format!("window function {name} with FILTER")));
        }
        // SAFETY: per the caller; the level's WINDOW clauses.
        let clause = unsafe { list::<pg_sys::WindowClause>(q.windowClause) }
            .into_iter()
            // SAFETY: as above.
            .find(|&c| unsafe { (*c).winref } == w.winref)
            .ok_or("a window function without its window")?;
        // SAFETY: as above.
        let clause = unsafe { &*clause };
        // SAFETY: as above; a WindowFunc's arguments are expressions.
        let args = unsafe { list::<pg_sys::Node>(w.args) }
            .into_iter()
            // SAFETY: as above.
            .map(|arg| unsafe { self.expr(arg, scope) })
            .collect::<Result<Vec<_>, _>>()?;
        let function = window_call(w, &name, args)?;

        let mut partition_by = Vec::new();
        // SAFETY: as above.
        for group in unsafe { list::<pg_sys::SortGroupClause>(clause.partitionClause) } {
            // SAFETY: as above.
            let target = find_target(targets, unsafe { (*group).tleSortGroupRef })?;
            // SAFETY: as above.
            let node: *mut pg_sys::Node = unsafe { (*target).expr.cast() };
            // SAFETY: as above.
            let value = unsafe { self.expr(node, scope)? };
            // SAFETY: as above.
            unsafe { self.compared_by_bytes(node, &value, plan, "PARTITION BY")? };
            partition_by.push(value);
        }
        let mut order_by = Vec::new();
        // SAFETY: as above.
        for sort in unsafe { list::<pg_sys::SortGroupClause>(clause.orderClause) } {
            // SAFETY: as above.
            let sort = unsafe { &*sort };
            let target = find_target(targets, sort.tleSortGroupRef)?;
            // SAFETY: as above.
            let node: *mut pg_sys::Node = unsafe { (*target).expr.cast() };
            // SAFETY: as above.
            let value = unsafe { self.expr(node, scope)? };
            // SAFETY: as above.
            unsafe { self.compared_by_bytes(node, &value, plan, "a window's ORDER BY")? };
            let image = value
                .get_type(plan.schema().as_ref())
                .is_ok_and(|t| t == DataType::Binary);
            // SAFETY: as above.
            let key = unsafe { expr::sort_key(sort.sortop, node, image)? };
            if key.comparator.is_some() {
                return Err(Refusal::inexact(
                    "a window ordered by a key DataFusion does not sort as Postgres does",
                ));
            }
            order_by.push(SortExpr::new(value, !key.descending, sort.nulls_first));
        }
        // Without an ORDER BY, rows come in the order the plan meets them,
        // which is Postgres's plan's there and DataFusion's here: only
        // what does not depend on it is weft's.
        let whole = clause.frameOptions & NONDEFAULT == 0
            || clause.frameOptions & RANGE != 0
            || clause.frameOptions & (START_UNBOUNDED_PRECEDING | END_UNBOUNDED_FOLLOWING)
                == START_UNBOUNDED_PRECEDING | END_UNBOUNDED_FOLLOWING;
        if order_by.is_empty() && (w.winfnoid.to_u32() == pg_sys::F_ROW_NUMBER || !whole) {
            return Err(Refusal::inexact(
                "a window without ORDER BY whose values depend on the order of its rows",
            ));
        }
        // SAFETY: as above.
        let frame = unsafe { frame(clause, !order_by.is_empty())? };
        function
            .partition_by(partition_by)
            .order_by(order_by)
            .window_frame(frame)
            .build()
            .map_err(df)
    }

    /// Refuses `what` over `node` (translated as `value`, over `plan`'s
    /// rows) where equal values may differ in their bytes.
    ///
    /// # Safety
    /// `node` is a valid expression.
    unsafe fn compared_by_bytes(
        &self,
        node: *mut pg_sys::Node,
        value: &Expr,
        plan: &LogicalPlan,
        what: &str,
    ) -> Result<(), Refusal> {
        // SAFETY: per the caller.
        let (typid, _, collation) = unsafe { crate::nodes::expr_type(node) };
        let arrow = value.get_type(plan.schema().as_ref()).map_err(df)?;
        expr::equal_as_bytes(typid, collation, &arrow, what)
    }
}

/// The DataFusion window function computing `w` (named `name`) on `args`.
fn window_call(w: &pg_sys::WindowFunc, name: &str, args: Vec<Expr>) -> Result<Expr, Refusal> {
    use datafusion::functions_window::expr_fn::{cume_dist, dense_rank, percent_rank, rank, row_number};
    let one = || {
        args.first()
            .cloned()
            .ok_or_else(|| Refusal::shape(format!("window function {name} without arguments")))
    };
    let f = w.winfnoid.to_u32();
    if let Some(build) = super::aggregate::ordinary(f) {
        return as_window(build(one()?), name);
    }
    let aggregate = match f {
        pg_sys::F_ROW_NUMBER => return Ok(row_number()),
        pg_sys::F_RANK_ => return Ok(rank()),
        pg_sys::F_DENSE_RANK_ => return Ok(dense_rank()),
        pg_sys::F_PERCENT_RANK_ => return Ok(percent_rank()),
        pg_sys::F_CUME_DIST_ => return Ok(cume_dist()),
        pg_sys::F_COUNT_ if w.winstar => count(lit(1i64)),
        _ => return Err(Refusal::Function(format!("window function {name}"))),
    };
    as_window(aggregate, name)
}

/// Aggregate call `aggregate` (of window function `name`) as a window
/// function.
fn as_window(aggregate: Expr, name: &str) -> Result<Expr, Refusal> {
    match aggregate {
        Expr::AggregateFunction(AggregateFunction { func, params }) => {
            Ok(Expr::from(WindowFunction::new(func, params.args)))
        }
        _ => Err(Refusal::shape(format!("window function {name}"))),
    }
}

/// The frame of `clause` (with an ORDER BY or not), where DataFusion's
/// is Postgres's.
///
/// # Safety
/// `clause` is a valid WindowClause.
unsafe fn frame(clause: &pg_sys::WindowClause, ordered: bool) -> Result<WindowFrame, Refusal> {
    let options = clause.frameOptions;
    if options & NONDEFAULT == 0 {
        // RANGE UNBOUNDED PRECEDING to the current row's last peer with
        // an ORDER BY; the whole partition without.
        return Ok(WindowFrame::new(ordered.then_some(false)));
    }
    if options & EXCLUDE != 0 {
        return Err(Refusal::shape("a window frame with EXCLUDE"));
    }
    let units = if options & ROWS != 0 {
        WindowFrameUnits::Rows
    } else if options & RANGE != 0 {
        if options & (START_OFFSET_PRECEDING | START_OFFSET_FOLLOWING | END_OFFSET_PRECEDING | END_OFFSET_FOLLOWING)
            != 0
        {
            return Err(Refusal::shape("a RANGE frame with an offset"));
        }
        WindowFrameUnits::Range
    } else {
        return Err(Refusal::shape("a GROUPS frame"));
    };
    let unbounded = ScalarValue::UInt64(None);
    // SAFETY: per the caller; the offsets are expressions.
    let (start, end) = unsafe { (offset(clause.startOffset), offset(clause.endOffset)) };
    let start = if options & START_UNBOUNDED_PRECEDING != 0 {
        WindowFrameBound::Preceding(unbounded.clone())
    } else if options & START_CURRENT_ROW != 0 {
        WindowFrameBound::CurrentRow
    } else if options & START_OFFSET_PRECEDING != 0 {
        WindowFrameBound::Preceding(start?)
    } else if options & START_OFFSET_FOLLOWING != 0 {
        WindowFrameBound::Following(start?)
    } else {
        return Err(Refusal::shape("an unusual window frame start"));
    };
    let end = if options & END_UNBOUNDED_FOLLOWING != 0 {
        WindowFrameBound::Following(unbounded)
    } else if options & END_CURRENT_ROW != 0 {
        WindowFrameBound::CurrentRow
    } else if options & END_OFFSET_PRECEDING != 0 {
        WindowFrameBound::Preceding(end?)
    } else if options & END_OFFSET_FOLLOWING != 0 {
        WindowFrameBound::Following(end?)
    } else {
        return Err(Refusal::shape("an unusual window frame end"));
    };
    Ok(WindowFrame::new_bounds(units, start, end))
}

/// A ROWS frame's offset: a constant number of rows.
///
/// # Safety
/// `node` is NULL or a valid expression.
unsafe fn offset(node: *mut pg_sys::Node) -> Result<ScalarValue, Refusal> {
    if node.is_null() {
        return Err(Refusal::shape("a window frame without its offset"));
    }
    // The parser casts the offset to bigint; the planner folds that cast.
    // SAFETY: per the caller.
    let node = unsafe { super::fold(node) };
    // SAFETY: as above.
    let constant = unsafe { node_cast::<pg_sys::Const>(node, NodeTag::T_Const) }
        .ok_or_else(|| Refusal::shape("a window frame offset that is not a constant"))?;
    // SAFETY: a valid Const.
    let value = unsafe { crate::nodes::constant(constant) }.map_err(Refusal::shape)?;
    match value {
        ScalarValue::Int64(Some(v)) if v >= 0 => Ok(ScalarValue::UInt64(Some(v as u64))),
        ScalarValue::Int32(Some(v)) if v >= 0 => Ok(ScalarValue::UInt64(Some(v as u64))),
        _ => Err(Refusal::shape(
            "a window frame offset that is not a non-negative integer",
        )),
    }
}
