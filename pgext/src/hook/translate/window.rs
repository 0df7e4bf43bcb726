//! Window functions: a query level's `f(...) OVER (PARTITION BY ... ORDER
//! BY ... frame)` computed by DataFusion's window operators over the
//! level's rows (after GROUP BY and HAVING, as Postgres computes them),
//! each as a column that the target list reads.
//!
//! Taken where DataFusion's answer is Postgres's: partitions and peers
//! (rows equal in the ORDER BY, which RANGE frames and the ranks group)
//! found by the bytes, so over types whose equal values have equal bytes
//! (numerics whose display scale is each value's by their key,
//! `pgfn::numeric_key`), ordered as DataFusion sorts natively; the ranking functions
//! (`row_number`, `rank`, `dense_rank`, `percent_rank`, `cume_dist`,
//! `ntile`), `lag` and `lead` (constant offsets and defaults),
//! `first_value`, `last_value` and `nth_value`, and `count`, integer and
//! numeric `sum`, `avg` of integers and numerics (a sum and a count that
//! Postgres divides), and `min`/`max` of integers, numerics, dates and
//! timestamps as window aggregates; ROWS frames with constant offsets,
//! RANGE frames with constant offsets over integer and numeric keys, GROUPS frames.
//!
//! Rows equal in every ORDER BY key (peers) come in whichever order the
//! plan meets them: Postgres's plan's, or weft's. `row_number` numbers a
//! set of peers 1 to n either way, only which peer gets which number is
//! either's choice; but for `lag`, `lead`, `first_value`, `last_value`,
//! `nth_value`, `ntile` and ROWS frames the values themselves follow that
//! order (and queries written for Postgres count on its order: a sorted
//! subquery's, the scan's). Those are taken only where no row has a peer:
//! the level is grouped by keys all among the window's, or reads one table
//! whose unique key is among them. Over a subquery with an ORDER BY,
//! whose order Postgres keeps among peers, `row_number` is taken only
//! there too.
//!
//! A window without PARTITION BY runs on one participant;
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
use super::scope::{Parts, Scope};
use super::{df, expr, find_target, Refusal, Translator};
use crate::nodes::{cast as node_cast, list};
use crate::plan::pgfn;

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
/// Any bound with an offset.
const OFFSETS: i32 = START_OFFSET_PRECEDING | START_OFFSET_FOLLOWING | END_OFFSET_PRECEDING | END_OFFSET_FOLLOWING;
/// EXCLUDE CURRENT ROW, GROUP, TIES.
const EXCLUDE: i32 = 0x8000 | 0x10000 | 0x20000;

/// A window function of a query level and the columns of its values.
pub(super) struct WindowColumn {
    function: *mut pg_sys::WindowFunc,
    /// The column of its values (of an average: of its sum).
    value: String,
    /// Of an average, the column of its count ([`Parts::Avg`]).
    count: Option<String>,
}

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
            let (value, count) = unsafe { self.window_function(q, &*w, targets, &plan, scope)? };
            windows.push(WindowColumn {
                function: w,
                value: value.schema_name().to_string(),
                count: count.as_ref().map(|c| c.schema_name().to_string()),
            });
            for e in std::iter::once(value).chain(count) {
                if !exprs.contains(&e) {
                    exprs.push(e);
                }
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

    /// Window function `node`'s values: its column, or an average of its
    /// sum's and count's columns.
    ///
    /// # Safety
    /// `node` is a valid WindowFunc, on the backend thread.
    pub(super) unsafe fn window_column(&self, node: *mut pg_sys::WindowFunc, scope: &Scope) -> Result<Expr, Refusal> {
        let level = self.levels.last().ok_or("a window function outside a query")?;
        let column = level
            .windows
            .iter()
            // SAFETY: per the caller; window functions of this level.
            .find(|c| unsafe { pg_sys::equal(c.function.cast(), node.cast()) })
            .ok_or_else(|| Refusal::shape("a window function outside the select list"))?;
        let value = Expr::Column(datafusion::common::Column::from_name(&column.value));
        match &column.count {
            None => Ok(value),
            // SAFETY: per the caller.
            Some(count) => unsafe {
                self.parted_value(
                    Parts::Avg,
                    value,
                    Expr::Column(datafusion::common::Column::from_name(count)),
                    scope,
                )
            },
        }
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
    ) -> Result<(Expr, Option<Expr>), Refusal> {
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
        let types = args
            .iter()
            .map(|arg| arg.get_type(plan.schema().as_ref()).map_err(df))
            .collect::<Result<Vec<_>, _>>()?;
        let (function, count) = match window_average(w, &name, &args, &types)? {
            Some((sum, count)) => (sum, Some(count)),
            None => (window_call(w, &name, args, &types)?, None),
        };

        let mut partition_by = Vec::new();
        // SAFETY: as above.
        for group in unsafe { list::<pg_sys::SortGroupClause>(clause.partitionClause) } {
            // SAFETY: as above.
            let target = find_target(targets, unsafe { (*group).tleSortGroupRef })?;
            // SAFETY: as above.
            let node: *mut pg_sys::Node = unsafe { (*target).expr.cast() };
            // SAFETY: as above.
            let value = unsafe { self.window_key(node, plan, scope, "PARTITION BY")? };
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
            let value = unsafe { self.window_key(node, plan, scope, "a window's ORDER BY")? };
            // SAFETY: as above.
            let key = unsafe { expr::sort_key(sort.sortop, node, false)? };
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
        // Peers (rows equal in the ORDER BY) come in the order the plan
        // meets them; see the module docs.
        let f = w.winfnoid.to_u32();
        let rows_frame = clause.frameOptions & NONDEFAULT != 0 && clause.frameOptions & ROWS != 0;
        if order_sensitive(f) || rows_frame {
            // SAFETY: as above.
            let unique = unsafe { one_row_per_key(q, clause, targets) };
            if !unique && f != pg_sys::F_ROW_NUMBER {
                return Err(Refusal::inexact(format!(
                    "window function {name} whose values follow the order of peers: the window's keys do not identify a row"
                )));
            }
            // SAFETY: as above.
            if !unique && unsafe { reads_sorted_subquery(q) } {
                return Err(Refusal::inexact(format!(
                    "window function {name} over rows of a sorted subquery, whose order Postgres keeps among peers"
                )));
            }
        }
        // SAFETY: as above.
        let mut order_types = order_by
            .iter()
            .map(|key| key.expr.get_type(plan.schema().as_ref()).map_err(df))
            .collect::<Result<Vec<_>, _>>()?;
        if clause.frameOptions & RANGE != 0 && clause.frameOptions & OFFSETS != 0 {
            // A RANGE frame's bounds are the key plus or minus the offset,
            // which Postgres's in_range never lets overflow: the key in a
            // wider type, where they cannot.
            if let ([key], [key_type]) = (&mut order_by[..], &mut order_types[..]) {
                let wider = match key_type {
                    DataType::Int16 | DataType::Int32 => Some(DataType::Int64),
                    DataType::Int64 => Some(DataType::Decimal128(38, 0)),
                    &mut DataType::Decimal128(_, scale) => Some(DataType::Decimal128(38, scale)),
                    _ => None,
                };
                if let Some(wider) = wider {
                    key.expr = datafusion::logical_expr::cast(key.expr.clone(), wider.clone());
                    *key_type = wider;
                }
            }
        }
        // SAFETY: as above.
        let frame = unsafe { frame(clause, &order_types)? };
        // DataFusion types a RANGE frame by its first key, and has no type
        // for a key of bytes; without offsets, GROUPS is the same frame.
        let keyed = order_by.first().is_some_and(|key| {
            key.expr
                .get_type(plan.schema().as_ref())
                .is_ok_and(|t| t == DataType::Binary)
        });
        let frame = if keyed && frame.units == WindowFrameUnits::Range {
            WindowFrame::new_bounds(WindowFrameUnits::Groups, frame.start_bound, frame.end_bound)
        } else {
            frame
        };
        let over = |function: Expr| {
            function
                .partition_by(partition_by.clone())
                .order_by(order_by.clone())
                .window_frame(frame.clone())
                .build()
                .map_err(df)
        };
        Ok((over(function)?, count.map(over).transpose()?))
    }

    /// Window key `node` (a PARTITION BY or ORDER BY expression, over
    /// `plan`'s rows in `scope`) as DataFusion compares and sorts it by
    /// its bytes: the value itself, or a numeric image's key
    /// ([`pgfn::numeric_key`]); refused (for `what`) where equal values
    /// may differ in their bytes.
    ///
    /// # Safety
    /// `node` is a valid expression of the current level.
    unsafe fn window_key(
        &mut self,
        node: *mut pg_sys::Node,
        plan: &LogicalPlan,
        scope: &Scope,
        what: &str,
    ) -> Result<Expr, Refusal> {
        // SAFETY: per the caller.
        let value = unsafe { self.expr(node, scope)? };
        // SAFETY: as above.
        if unsafe { self.numeric_image(node, &value, scope) } {
            return Ok(pgfn::numeric_key(value));
        }
        // SAFETY: as above.
        let (typid, _, collation) = unsafe { crate::nodes::expr_type(node) };
        let arrow = value.get_type(plan.schema().as_ref()).map_err(df)?;
        expr::equal_as_bytes(typid, collation, &arrow, what)?;
        Ok(value)
    }
}

/// Whether window function `f`'s value for a row depends on the order of
/// its peers (rows equal in the window's ORDER BY), whatever the frame.
fn order_sensitive(f: u32) -> bool {
    matches!(
        f,
        pg_sys::F_ROW_NUMBER
            | pg_sys::F_NTILE
            | pg_sys::F_FIRST_VALUE
            | pg_sys::F_LAST_VALUE
            | pg_sys::F_NTH_VALUE
            | pg_sys::F_LAG_ANYELEMENT
            | pg_sys::F_LAG_ANYELEMENT_INT4
            | pg_sys::F_LAG_ANYCOMPATIBLE_INT4_ANYCOMPATIBLE
            | pg_sys::F_LEAD_ANYELEMENT
            | pg_sys::F_LEAD_ANYELEMENT_INT4
            | pg_sys::F_LEAD_ANYCOMPATIBLE_INT4_ANYCOMPATIBLE
    )
}

/// Whether no two rows of `q`'s level share the keys of window `clause`
/// (so that no row has a peer): the level is grouped (plain GROUP BY) and
/// every grouping column is a PARTITION BY or ORDER BY key; or it reads
/// one table alone, whose columns among those keys include a unique key
/// of it ([`crate::catalog::unique_keys`]).
///
/// # Safety
/// `clause` is a WindowClause of the valid Query `q`, `targets` its target
/// list.
unsafe fn one_row_per_key(
    q: &pg_sys::Query,
    clause: &pg_sys::WindowClause,
    targets: &[*mut pg_sys::TargetEntry],
) -> bool {
    // SAFETY: per the caller; a clause list refers to target entries by
    // their sort-group reference, the same entry for the same expression.
    unsafe {
        let refs = |clauses: *mut pg_sys::List| {
            list::<pg_sys::SortGroupClause>(clauses)
                .into_iter()
                .map(|c| (*c).tleSortGroupRef)
                .collect::<Vec<_>>()
        };
        let keys: Vec<u32> = refs(clause.partitionClause)
            .into_iter()
            .chain(refs(clause.orderClause))
            .collect();
        if !q.groupClause.is_null() || !q.groupingSets.is_null() || q.hasAggs {
            return q.groupingSets.is_null()
                && !q.groupClause.is_null()
                && refs(q.groupClause).iter().all(|group| keys.contains(group));
        }
        // One table alone: a unique key among the keys' columns.
        let from = list::<pg_sys::Node>((*q.jointree).fromlist);
        let [item] = from[..] else { return false };
        let Some(table) = node_cast::<pg_sys::RangeTblRef>(item, NodeTag::T_RangeTblRef) else {
            return false;
        };
        let rtindex = (*table).rtindex;
        let Ok(rte) = super::rt_fetch(q as *const _ as *mut _, rtindex) else {
            return false;
        };
        let rte = &*rte;
        if rte.rtekind != pg_sys::RTEKind::RTE_RELATION
            || rte.relkind != pg_sys::RELKIND_RELATION as std::ffi::c_char
            || (rte.inh && crate::catalog::may_have_children(rte.relid))
        {
            return false;
        }
        let columns: Vec<i16> = keys
            .iter()
            .filter_map(|&r| find_target(targets, r).ok())
            .filter_map(|target| node_cast::<pg_sys::Var>((*target).expr.cast(), NodeTag::T_Var))
            .filter(|&var| (*var).varno == rtindex && (*var).varlevelsup == 0)
            .map(|var| (*var).varattno)
            .collect();
        crate::catalog::unique_keys(rte.relid)
            .iter()
            .any(|key| key.iter().all(|attnum| columns.contains(attnum)))
    }
}

/// Whether `q`'s level reads a subquery with an ORDER BY in its FROM
/// clause, whose order Postgres's window operators keep among peers.
///
/// # Safety
/// `q` is a valid Query.
unsafe fn reads_sorted_subquery(q: &pg_sys::Query) -> bool {
    // SAFETY: per the caller.
    unsafe {
        list::<pg_sys::RangeTblEntry>(q.rtable).into_iter().any(|rte| {
            (*rte).rtekind == pg_sys::RTEKind::RTE_SUBQUERY
                && !(*rte).subquery.is_null()
                && !(*(*rte).subquery).sortClause.is_null()
        })
    }
}

/// The DataFusion window function computing `w` (named `name`) on `args`
/// (of Arrow `types`).
fn window_call(w: &pg_sys::WindowFunc, name: &str, args: Vec<Expr>, types: &[DataType]) -> Result<Expr, Refusal> {
    use datafusion::functions_aggregate::expr_fn::{max, min};
    use datafusion::functions_window::expr_fn::{
        cume_dist, dense_rank, first_value, last_value, nth_value, ntile, percent_rank, rank, row_number,
    };
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
        pg_sys::F_FIRST_VALUE => return Ok(first_value(one()?)),
        pg_sys::F_LAST_VALUE => return Ok(last_value(one()?)),
        pg_sys::F_NTH_VALUE => return Ok(nth_value(one()?, positive(args.get(1), name)?)),
        pg_sys::F_NTILE => return Ok(ntile(lit(positive(args.first(), name)?))),
        pg_sys::F_LAG_ANYELEMENT | pg_sys::F_LAG_ANYELEMENT_INT4 | pg_sys::F_LAG_ANYCOMPATIBLE_INT4_ANYCOMPATIBLE => {
            return shift(WindowShiftKind::Lag, &args, types, name)
        }
        pg_sys::F_LEAD_ANYELEMENT
        | pg_sys::F_LEAD_ANYELEMENT_INT4
        | pg_sys::F_LEAD_ANYCOMPATIBLE_INT4_ANYCOMPATIBLE => return shift(WindowShiftKind::Lead, &args, types, name),
        pg_sys::F_COUNT_ if w.winstar => count(lit(1i64)),
        // A numeric of one display scale (weft's translation refuses one
        // whose scale varies by value): each sum at that scale, as
        // numeric addition keeps it.
        pg_sys::F_SUM_NUMERIC => match types.first() {
            Some(&DataType::Decimal128(precision, scale)) => {
                crate::plan::decimal_sum::decimal_sum(one()?, precision, scale)
            }
            _ => {
                return Err(Refusal::inexact(format!(
                    "window function {name} over numerics without a declared scale"
                )))
            }
        },
        pg_sys::F_MIN_NUMERIC | pg_sys::F_MAX_NUMERIC => match types.first() {
            Some(DataType::Decimal128(..)) if f == pg_sys::F_MIN_NUMERIC => min(one()?),
            Some(DataType::Decimal128(..)) => max(one()?),
            _ => {
                return Err(Refusal::inexact(format!(
                    "window function {name} over numerics without a declared scale"
                )))
            }
        },
        _ => return Err(Refusal::Function(format!("window function {name}"))),
    };
    as_window(aggregate, name)
}

/// `avg` of integers or of numerics of one display scale over a window
/// as two window functions, a sum (in Decimal128, as Postgres's avg sums
/// in numeric) and a count, which Postgres divides as its avg does
/// ([`Parts::Avg`]). None for any other window function.
fn window_average(
    w: &pg_sys::WindowFunc,
    name: &str,
    args: &[Expr],
    types: &[DataType],
) -> Result<Option<(Expr, Expr)>, Refusal> {
    let f = w.winfnoid.to_u32();
    if !matches!(
        f,
        pg_sys::F_AVG_INT2 | pg_sys::F_AVG_INT4 | pg_sys::F_AVG_INT8 | pg_sys::F_AVG_NUMERIC
    ) {
        return Ok(None);
    }
    let (precision, scale) = match types.first() {
        Some(DataType::Int16 | DataType::Int32 | DataType::Int64) => (19, 0),
        Some(&DataType::Decimal128(precision, scale)) => (precision, scale),
        _ => {
            return Err(Refusal::inexact(format!(
                "window function {name} over numerics without a declared scale"
            )))
        }
    };
    let [value] = args else {
        return Err(Refusal::shape(format!("window function {name} of several arguments")));
    };
    let total = crate::plan::decimal_sum::decimal_sum(value.clone(), precision, scale);
    Ok(Some((as_window(total, name)?, as_window(count(value.clone()), name)?)))
}

/// Which way `lag` and `lead` look.
enum WindowShiftKind {
    Lag,
    Lead,
}

/// `lag(value [, offset [, default]])` or `lead`: a constant offset (at
/// least 0) and a constant default, of the value's type.
fn shift(kind: WindowShiftKind, args: &[Expr], types: &[DataType], name: &str) -> Result<Expr, Refusal> {
    use datafusion::functions_window::expr_fn::{lag, lead};
    let value = args
        .first()
        .cloned()
        .ok_or_else(|| Refusal::shape(format!("window function {name} without arguments")))?;
    // DataFusion's own default of 1 is not applied when the offset is
    // left out: it is always given.
    let offset = match args.get(1) {
        None => 1,
        Some(Expr::Literal(ScalarValue::Int32(Some(n)), _)) if *n >= 0 => i64::from(*n),
        Some(_) => {
            return Err(Refusal::shape(format!(
                "window function {name} with an offset that is not a constant of at least 0"
            )))
        }
    };
    let default = match args.get(2) {
        None => None,
        Some(Expr::Literal(constant, _)) => {
            let target = types.first().ok_or("a shifted value of unknown type")?;
            if let (DataType::Decimal128(_, scale), ScalarValue::Decimal128(Some(_), _, default_scale)) =
                (target, constant)
            {
                if scale != default_scale {
                    // Postgres shows the default at its own display scale.
                    return Err(Refusal::inexact(format!(
                        "window function {name} with a default of another display scale"
                    )));
                }
            }
            Some(
                constant
                    .cast_to(target)
                    .map_err(|_| Refusal::shape(format!("window function {name} with a default of another type")))?,
            )
        }
        Some(_) => {
            return Err(Refusal::shape(format!(
                "window function {name} with a default that is not a constant"
            )))
        }
    };
    Ok(match kind {
        WindowShiftKind::Lag => lag(value, Some(offset), default),
        WindowShiftKind::Lead => lead(value, Some(offset), default),
    })
}

/// A constant argument greater than zero (`ntile`'s buckets, `nth_value`'s
/// row): Postgres raises an error for others, which weft leaves it to.
fn positive(arg: Option<&Expr>, name: &str) -> Result<i64, Refusal> {
    match arg {
        Some(Expr::Literal(ScalarValue::Int32(Some(n)), _)) if *n > 0 => Ok(i64::from(*n)),
        Some(Expr::Literal(ScalarValue::Int64(Some(n)), _)) if *n > 0 => Ok(*n),
        _ => Err(Refusal::shape(format!(
            "window function {name} with an argument that is not a constant above 0"
        ))),
    }
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

/// The frame of `clause` (ordered by keys of Arrow `order_types`), where
/// DataFusion's is Postgres's.
///
/// # Safety
/// `clause` is a valid WindowClause.
unsafe fn frame(clause: &pg_sys::WindowClause, order_types: &[DataType]) -> Result<WindowFrame, Refusal> {
    let ordered = !order_types.is_empty();
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
        if options & OFFSETS != 0 {
            // Offsets in the ORDER BY key's own units (in_range).
            // SAFETY: per the caller.
            return unsafe { range_frame(clause, order_types) };
        }
        WindowFrameUnits::Range
    } else {
        WindowFrameUnits::Groups
    };
    // SAFETY: per the caller; the offsets are expressions.
    let (start, end) = unsafe { (offset(clause.startOffset), offset(clause.endOffset)) };
    bounds(options, units, start, end)
}

/// The frame of `units` whose bounds `options` give, with offsets `start`
/// and `end` (their values, or why not, which only a bound with an offset
/// reads).
fn bounds(
    options: i32,
    units: WindowFrameUnits,
    start: Result<ScalarValue, Refusal>,
    end: Result<ScalarValue, Refusal>,
) -> Result<WindowFrame, Refusal> {
    let unbounded = ScalarValue::UInt64(None);
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

/// A RANGE frame with offsets of `clause`, whose one ORDER BY key is of
/// Arrow type `order_types[0]`: rows whose key lies within the offsets of
/// the current row's, as Postgres's `in_range` support functions find
/// them, over integers and numerics of one display scale (whose sums and
/// differences DataFusion computes exactly).
///
/// # Safety
/// `clause` is a valid WindowClause.
unsafe fn range_frame(clause: &pg_sys::WindowClause, order_types: &[DataType]) -> Result<WindowFrame, Refusal> {
    let options = clause.frameOptions;
    let [key] = order_types else {
        return Err(Refusal::shape("a RANGE frame with an offset and several ORDER BY keys"));
    };
    if !matches!(
        key,
        DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Decimal128(..)
    ) {
        return Err(Refusal::shape(format!("a RANGE frame with an offset over {key} keys")));
    }
    let offset = |node: *mut pg_sys::Node| -> Result<ScalarValue, Refusal> {
        // SAFETY: per the caller; the offsets are expressions.
        let value = unsafe { offset_constant(node)? };
        let negative = match &value {
            ScalarValue::Int16(Some(v)) => *v < 0,
            ScalarValue::Int32(Some(v)) => *v < 0,
            ScalarValue::Int64(Some(v)) => *v < 0,
            ScalarValue::Decimal128(Some(v), ..) => *v < 0,
            // Postgres's error for a NULL offset, and other types'.
            _ => true,
        };
        if negative {
            return Err(Refusal::shape("a RANGE offset Postgres refuses"));
        }
        let beyond_int4 =
            matches!(value.cast_to(&DataType::Int64), Ok(ScalarValue::Int64(Some(v))) if v > i64::from(i32::MAX));
        if matches!(key, DataType::Int64) && beyond_int4 {
            // Keys of int2 and int4 (widened to int8) plus such an offset
            // could still overflow; Postgres's answer is then all rows.
            return Err(Refusal::shape("a RANGE offset beyond the integers' range"));
        }
        // The offset in the key's type, exactly.
        let cast = value
            .cast_to(key)
            .map_err(|_| Refusal::shape("a RANGE offset outside the key's type"))?;
        if cast.cast_to(&value.data_type()).ok().as_ref() != Some(&value) {
            return Err(Refusal::shape("a RANGE offset outside the key's type"));
        }
        Ok(cast)
    };
    bounds(
        options,
        WindowFrameUnits::Range,
        offset(clause.startOffset),
        offset(clause.endOffset),
    )
}

/// A ROWS or GROUPS frame's offset: a constant number of rows or peer
/// groups.
///
/// # Safety
/// `node` is NULL or a valid expression.
unsafe fn offset(node: *mut pg_sys::Node) -> Result<ScalarValue, Refusal> {
    // SAFETY: per the caller.
    match unsafe { offset_constant(node)? } {
        ScalarValue::Int64(Some(v)) if v >= 0 => Ok(ScalarValue::UInt64(Some(v as u64))),
        ScalarValue::Int32(Some(v)) if v >= 0 => Ok(ScalarValue::UInt64(Some(v as u64))),
        _ => Err(Refusal::shape(
            "a window frame offset that is not a non-negative integer",
        )),
    }
}

/// A frame offset's value: a constant, once folded (the parser casts the
/// offset to the type the frame needs; the planner folds that cast).
///
/// # Safety
/// `node` is NULL or a valid expression.
unsafe fn offset_constant(node: *mut pg_sys::Node) -> Result<ScalarValue, Refusal> {
    if node.is_null() {
        return Err(Refusal::shape("a window frame without its offset"));
    }
    // SAFETY: per the caller.
    let node = unsafe { super::fold(node) };
    // SAFETY: as above.
    let constant = unsafe { node_cast::<pg_sys::Const>(node, NodeTag::T_Const) }
        .ok_or_else(|| Refusal::shape("a window frame offset that is not a constant"))?;
    // SAFETY: a valid Const.
    unsafe { crate::nodes::constant(constant) }.map_err(Refusal::shape)
}
