//! An analyzed Postgres Query as a DataFusion logical plan, or why not.
//!
//! The Query's types and operators are already resolved by Postgres, so
//! the translation goes node by node: every operator, function, aggregate
//! and cast is looked up by its OID in an allowlist ([`function`],
//! [`aggregate`]) whose entries compute exactly what Postgres computes.
//! Anything else is a [`Refusal`], and the query stays with the stock
//! executor.
//!
//! Naming: each query level gets a number; range table entry `r` of level
//! `l` is the DataFusion relation `l{l}_r{r}`, with a base table's columns
//! under their attribute names and a subquery's under `c{resno}`. So a Var
//! (level, varno, varattno) names one column, also from inside a
//! correlated subquery (an outer reference).
//!
//! This file is the walk of one query level (its FROM list and joins,
//! WHERE, grouping, DISTINCT, ordering and limits) by one [`Translator`]
//! whose level stack every part reads; it stays whole past 600 lines
//! because those parts share that state at every step. Expressions
//! ([`expr`]), aggregates ([`aggregate`]), functions and operators
//! ([`function`]), what Postgres evaluates in each participant beyond
//! single calls ([`bridged`]), what DataFusion may do with values carried
//! as their images ([`image`]), what Postgres finishes ([`finish`]),
//! expressions constant for the statement ([`fold`]), set-returning
//! functions in FROM ([`srf`]), tables with inheritance children
//! ([`partitions`]) and the join order ([`order`]) live beside it.

mod aggregate;
mod args;
mod bridged;
mod collation;
mod distinct;
mod expr;
mod finish;
mod fold;
mod function;
mod grouping;
mod image;
mod order;
mod partitions;
mod scope;
mod setop;
mod srf;
mod subquery;
mod window;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef, ExprSchema, JoinType};
use datafusion::datasource::provider_as_source;
use datafusion::functions_aggregate::grouping::grouping_udaf;
use datafusion::logical_expr::expr::{Exists, InSubquery};
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    col, Expr, ExprFunctionExt, ExprSchemable, GroupingSet, LogicalPlan, LogicalPlanBuilder, SortExpr, WindowUDF,
};
use pgrx::pg_sys::{self, NodeTag};

pub use crate::nodes::list;
use crate::nodes::{cast, text};
use crate::plan::collate::order::PgOrder;
pub use order::{follow_stock_plan, plan_ranks, Ranks};
use scope::Scope;

pub use crate::hook::refusal::Refusal;

/// A translated query: its plan and the relations it reads (opened,
/// AccessShare-locked; the caller closes them).
pub struct Translation {
    /// The logical plan; its output columns are the Query's non-junk
    /// target entries, in order.
    pub plan: LogicalPlan,
    /// The opened relations, by OID.
    pub relations: Vec<(pg_sys::Oid, pg_sys::Relation)>,
    /// The Postgres type of each of the plan's output columns.
    pub outputs: Vec<finish::Output>,
    /// Each visible target entry of the Query as a Postgres expression
    /// over the plan's output columns (Vars of INDEX_VAR): a plain column,
    /// or what Postgres computes from columns DataFusion computed.
    pub finish: Vec<*mut pg_sys::Node>,
}

/// When a query is translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// While Postgres plans it, to decide whether weft takes it. A
    /// parameter whose value is not known yet (a generic plan: a prepared
    /// statement's, PL/pgSQL's) stands as a NULL of its type: the
    /// translation decides only whether weft can take the query, and the
    /// query is translated again when it runs.
    Planning,
    /// When it runs, with every parameter's value: a query that does not
    /// translate with them goes back to the stock plan.
    Running,
}

/// Translates `query`, or says why not (closing what it opened).
/// Parameters (`$1`...) take their values from `params` (a prepared
/// statement's custom plan, its execution, a PL/pgSQL function's
/// variables); what a parameter without one becomes depends on `stage`.
///
/// # Safety
/// `query` is a valid analyzed (and rewritten) Query, `params` NULL or
/// valid, on the backend thread.
pub unsafe fn translate(
    query: *mut pg_sys::Query,
    params: pg_sys::ParamListInfo,
    stage: Stage,
) -> Result<Translation, Refusal> {
    let mut translator = Translator {
        params,
        stage,
        ..Translator::default()
    };
    // SAFETY: per the caller.
    match unsafe { quietly(|| translator.query(query)) } {
        Ok(plan) => Ok(Translation {
            plan,
            relations: translator.relations,
            outputs: translator.outputs,
            finish: translator.finish,
        }),
        Err(refusal) => {
            for (_, rel) in translator.relations {
                // SAFETY: opened by this translation.
                unsafe { pg_sys::table_close(rel, pg_sys::NoLock as i32) };
            }
            Err(refusal)
        }
    }
}

/// Runs `f` with notices and warnings kept from the client. Translating
/// folds constant expressions, evaluating functions the stock planner has
/// already evaluated on the same query (it plans first, and a cached plan
/// is not planned again), and the client has had their NOTICEs (a text
/// search query without lexemes) from it, once, as without weft.
///
/// # Safety
/// On the backend thread, outside parallel mode.
unsafe fn quietly<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: per the caller; a GUC nest level of our own, set and popped
    // around `f` (an ERROR inside pops it with the transaction's).
    unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"client_min_messages".as_ptr(),
            c"error".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        let result = f();
        pg_sys::AtEOXact_GUC(true, nest);
        result
    }
}

/// The target entries of `query`.
///
/// # Safety
/// `query` is a valid Query.
pub unsafe fn targets(query: *mut pg_sys::Query) -> Vec<*mut pg_sys::TargetEntry> {
    // SAFETY: per the caller.
    unsafe { list((*query).targetList) }
}

/// The pointers of a node list.
///
/// # Safety
/// `l` is NIL or a valid pointer list.
pub unsafe fn node_list(l: *mut pg_sys::List) -> Vec<*mut std::ffi::c_void> {
    // SAFETY: per the caller.
    unsafe { list(l) }
}

/// One query level being translated.
struct Level {
    /// Unique within the translation.
    id: usize,
    query: *mut pg_sys::Query,
    /// Column names of each range table entry scanned so far, by rtindex;
    /// `None` for a dropped column.
    columns: HashMap<i32, Vec<Option<String>>>,
    /// The FROM clause's output schema, once built (outer references of
    /// sublinks are typed from it).
    schema: Option<DFSchemaRef>,
    /// The aggregation's output schema, once built (expressions after
    /// GROUP BY are typed from it).
    grouped: Option<DFSchemaRef>,
    /// Postgres's row estimate for each table the WHERE clause filters,
    /// by range table index ([`estimate`]).
    estimates: HashMap<i32, f64>,
    /// The level's window functions and the columns holding their values
    /// ([`window`]).
    windows: Vec<window::WindowColumn>,
}

/// The column ranking rows for FETCH .. WITH TIES.
const TIES_RANK: &str = "__weft_ties_rank";

struct Translator {
    /// The statement's parameter values (NULL: none known).
    params: pg_sys::ParamListInfo,
    /// When the translation is made, which decides what a parameter
    /// without a known value becomes.
    stage: Stage,
    relations: Vec<(pg_sys::Oid, pg_sys::Relation)>,
    /// The top level's output columns and finishing expressions (see
    /// [`Translation`]).
    outputs: Vec<finish::Output>,
    finish: Vec<*mut pg_sys::Node>,
    /// Above zero while translating what only compares by value (a
    /// comparison's operands, a subquery compared with): there a numeric
    /// quotient may be computed at a fixed scale, since its display scale
    /// (which Postgres picks per value) is never shown.
    value_only: usize,
    /// Above zero while translating an aggregate's argument, where a
    /// numeric CASE of different scales is refused rather than carried as
    /// Postgres's numerics (see `one_display_scale`): its sum is finished
    /// from a Decimal128 total and the largest scale.
    one_scale: usize,
    levels: Vec<Level>,
    next_level: usize,
    /// The first level number each WITH query was translated at: every
    /// reference translates it with the same numbers, so its copies are
    /// the same plan, operator for operator and name for name (which is
    /// how weft's ShareRepeated knows to run it once). A WITH query cannot
    /// refer to the levels around the reference, and each copy sits under
    /// its own alias, so the repeated names never meet.
    cte_levels: HashMap<usize, usize>,
    /// The operands of the `CASE x WHEN ...` being translated, innermost
    /// last: what a WHEN's `CaseTestExpr` stands for.
    case_operands: Vec<Expr>,
}

impl Default for Translator {
    fn default() -> Translator {
        Translator {
            params: std::ptr::null_mut(),
            stage: Stage::Running,
            relations: Vec::new(),
            outputs: Vec::new(),
            finish: Vec::new(),
            value_only: 0,
            one_scale: 0,
            levels: Vec::new(),
            next_level: 0,
            cte_levels: HashMap::new(),
            case_operands: Vec::new(),
        }
    }
}

impl Translator {
    /// One query level.
    unsafe fn query(&mut self, query: *mut pg_sys::Query) -> Result<LogicalPlan, Refusal> {
        // SAFETY: per the caller of `translate`.
        let q = unsafe { &*query };
        if q.commandType != pg_sys::CmdType::CMD_SELECT || !q.utilityStmt.is_null() {
            return Err(Refusal::shape("not a SELECT"));
        }
        let refuse_if = |cond: bool, what: &str| if cond { Err(what.to_string()) } else { Ok(()) };
        refuse_if(q.hasTargetSRFs, "set-returning functions")?;
        refuse_if(q.hasRecursive, "a recursive WITH")?;
        refuse_if(q.hasModifyingCTE, "a data-modifying WITH")?;
        refuse_if(q.hasForUpdate || !q.rowMarks.is_null(), "FOR UPDATE/SHARE")?;
        refuse_if(q.hasRowSecurity, "row-level security")?;

        self.levels.push(Level {
            id: self.next_level,
            query,
            columns: HashMap::new(),
            schema: None,
            grouped: None,
            estimates: HashMap::new(),
            windows: Vec::new(),
        });
        self.next_level += 1;
        // SAFETY: as above.
        let plan = unsafe { self.query_body(q) };
        self.levels.pop();
        plan
    }

    unsafe fn query_body(&mut self, q: &pg_sys::Query) -> Result<LogicalPlan, Refusal> {
        // FROM and WHERE.
        // SAFETY: the jointree of a valid Query.
        let jointree = unsafe { &*q.jointree };
        // SAFETY: the WHERE clause of a valid Query.
        let quals = unsafe { fold(jointree.quals) };
        let depth = self.levels.len() - 1;
        let query = self.level().query;
        // SAFETY: as above.
        self.level().estimates = unsafe { crate::plan::estimate::filtered_rows(query, quals, depth, self.params) };
        // SAFETY: as above.
        let mut items = unsafe { list::<pg_sys::Node>(jointree.fromlist) }
            .into_iter()
            // SAFETY: fromlist items of a valid Query.
            .map(|item| unsafe { self.join_item(item) })
            .collect::<Result<Vec<_>, _>>()?;
        if !q.setOperations.is_null() {
            // The level's rows are the set operation's; its target list
            // reads them as columns of the leftmost leaf's entry.
            // SAFETY: the set operations of a valid Query.
            let rows = unsafe { self.set_operation(q.setOperations)? };
            // SAFETY: as above.
            let leftmost = unsafe { setop::leftmost(q.setOperations)? };
            let alias = format!("l{}_r{leftmost}", self.level().id);
            items.push(self.aliased(rows, leftmost, alias)?);
        }
        let mut plan = cross_join(items.clone())?;
        self.level().schema = Some(plan.schema().clone());
        if !quals.is_null() {
            // SAFETY: as above.
            let predicate = unsafe { self.predicate(quals, &Scope::Rows)? };
            // An uncorrelated subquery condition (IN, EXISTS) on one FROM item
            // alone filters that item before the joins: the same rows (a WHERE
            // conjunct over a product filters the factor it reads), and
            // the semi join DataFusion makes of it then shrinks one table
            // instead of the joined rows (TPC-H Q18's IN on orders).
            let mut rest = Vec::new();
            let mut placed = false;
            for conjunct in split_conjunction_owned(predicate) {
                match subquery_item(&conjunct, &items) {
                    Some(i) => {
                        items[i] = LogicalPlanBuilder::from(items[i].clone())
                            .filter(conjunct)
                            .map_err(df)?
                            .build()
                            .map_err(df)?;
                        placed = true;
                    }
                    None => rest.push(conjunct),
                }
            }
            if placed {
                plan = cross_join(items)?;
            }
            if let Some(predicate) = conjunction(rest) {
                plan = LogicalPlanBuilder::from(plan)
                    .filter(predicate)
                    .map_err(df)?
                    .build()
                    .map_err(df)?;
            }
        }

        // The target list and HAVING with their constant subexpressions
        // folded, as the planner folds them (`date '1998-12-01' -
        // interval '90 days'` is a constant timestamp).
        // SAFETY: the target list of a valid Query; folding copies.
        let targets: Vec<*mut pg_sys::TargetEntry> = unsafe { list::<pg_sys::TargetEntry>(q.targetList) }
            .into_iter()
            .map(|target| unsafe {
                let copy = pg_sys::flatCopyTargetEntry(target);
                (*copy).expr = fold((*target).expr.cast()).cast();
                copy
            })
            .collect();
        // SAFETY: as above.
        let having = unsafe { fold(q.havingQual) };
        // GROUP BY, aggregates, HAVING.
        let scope = if q.hasAggs || !q.groupClause.is_null() || !q.groupingSets.is_null() || !having.is_null() {
            // SAFETY: as above.
            let (aggregated, scope) = unsafe { self.aggregate(q, plan, &targets, having)? };
            plan = aggregated;
            if !having.is_null() {
                // SAFETY: as above.
                let predicate = unsafe { self.predicate(having, &scope)? };
                plan = LogicalPlanBuilder::from(plan)
                    .filter(predicate)
                    .map_err(df)?
                    .build()
                    .map_err(df)?;
            }
            scope
        } else {
            Scope::Rows
        };
        // Window functions, over the rows after grouping.
        if q.hasWindowFuncs {
            // SAFETY: as above.
            plan = unsafe { self.windows(q, plan, &targets, &scope)? };
        }

        // Every target entry, junk included, as c{resno}; at the top
        // level, a visible entry DataFusion cannot compute exactly may be
        // finished by Postgres from columns DataFusion computes
        // (c{resno}_{k}, see `finish`).
        let top = self.levels.len() == 1;
        let mut exprs = Vec::with_capacity(targets.len());
        let mut visible = Vec::new();
        for &target in &targets {
            // SAFETY: a target entry of a valid Query.
            let target = unsafe { &*target };
            let node: *mut pg_sys::Node = target.expr.cast();
            // SAFETY: as above.
            match unsafe { self.expr(node, &scope) } {
                Ok(value) => {
                    let name = format!("c{}", target.resno);
                    exprs.push(value.alias(&name));
                    if top && !target.resjunk {
                        // SAFETY: as above.
                        let output = unsafe { finish::Output::of(node) };
                        output.carried()?;
                        // SAFETY: on the backend thread.
                        self.finish.push(unsafe { output.var(visible.len() + 1) });
                        self.outputs.push(output);
                        visible.push(name);
                    }
                }
                Err(refusal) => {
                    let liftable = top && !target.resjunk && target.ressortgroupref == 0 && q.distinctClause.is_null();
                    if !liftable {
                        return Err(refusal);
                    }
                    let mut leaves = Vec::new();
                    // SAFETY: as above.
                    let finished =
                        unsafe { self.lift(node, &scope, visible.len(), &mut leaves) }.map_err(|_| refusal)?;
                    for (k, (value, output)) in leaves.into_iter().enumerate() {
                        let name = format!("c{}_{k}", target.resno);
                        exprs.push(value.alias(&name));
                        self.outputs.push(output);
                        visible.push(name);
                    }
                    self.finish.push(finished);
                }
            }
        }
        if !top {
            // SAFETY: target entries of a valid Query.
            visible = targets
                .iter()
                .filter(|&&t| unsafe { !(*t).resjunk })
                // SAFETY: as above.
                .map(|&t| format!("c{}", unsafe { (*t).resno }))
                .collect();
        }
        let exprs_len = exprs.len();
        plan = LogicalPlanBuilder::from(plan)
            .project(exprs)
            .map_err(df)?
            .build()
            .map_err(df)?;

        // DISTINCT and DISTINCT ON.
        if !q.distinctClause.is_null() {
            // SAFETY: as above.
            plan = unsafe { self.distinct(q, plan, &targets)? };
        }

        // FETCH FIRST .. WITH TIES: its count; an OFFSET before it would
        // cut a set of peers where the plan meets them.
        let ties = if q.limitOption == pg_sys::LimitOption::LIMIT_OPTION_WITH_TIES {
            // SAFETY: as above.
            if unsafe { self.limit_value(q.limitOffset)? }.unwrap_or(0) != 0 {
                return Err(Refusal::inexact("OFFSET with FETCH .. WITH TIES"));
            }
            // SAFETY: as above.
            match unsafe { self.limit_value(q.limitCount)? } {
                Some(count) => Some(count),
                None => return Err(Refusal::shape("FETCH .. WITH TIES of no count")),
            }
        } else {
            None
        };

        // ORDER BY. Text under a collation other than C, and types
        // DataFusion does not order as Postgres, sort by each value's
        // place in Postgres's order of the whole input
        // (plan::collate::order), in a column of its own dropped after
        // the sort.
        if !q.sortClause.is_null() {
            let mut keys = Vec::new();
            let mut places = Vec::new();
            // SAFETY: as above.
            for clause in unsafe { list::<pg_sys::SortGroupClause>(q.sortClause) } {
                // SAFETY: as above.
                let clause = unsafe { &*clause };
                let target = find_target(&targets, clause.tleSortGroupRef)?;
                // SAFETY: as above.
                let resno = unsafe { (*target).resno };
                let mut column = format!("c{resno}");
                // A value carried as its image sorts by Postgres's
                // comparison, whatever its type.
                let image = plan
                    .schema()
                    .field_with_unqualified_name(&column)
                    .is_ok_and(|f| *f.data_type() == datafusion::arrow::datatypes::DataType::Binary);
                // SAFETY: as above.
                let key = unsafe { expr::sort_key(clause.sortop, (*target).expr.cast(), image)? };
                if let Some(comparator) = key.comparator {
                    let order = WindowUDF::new_from_impl(PgOrder::new(comparator).map_err(Refusal::shape)?);
                    let place = format!("{column}_place{}", places.len());
                    places.push(order.call(vec![col(&column)]).alias(&place));
                    column = place;
                }
                keys.push(SortExpr::new(col(column), !key.descending, clause.nulls_first));
            }
            let columns: Vec<Expr> = plan.schema().columns().into_iter().map(Expr::Column).collect();
            let mut builder = LogicalPlanBuilder::from(plan);
            if !places.is_empty() {
                builder = builder.window(places).map_err(df)?;
            }
            if let Some(count) = ties {
                // FETCH FIRST n ROWS WITH TIES: the first n rows and the
                // rows tied with the last of them, which are the rows
                // fewer than n rows precede (rank() <= n).
                let rank = datafusion::functions_window::expr_fn::rank()
                    .order_by(keys.clone())
                    .build()
                    .map_err(df)?
                    .alias(TIES_RANK);
                builder = builder
                    .window(vec![rank])
                    .map_err(df)?
                    .filter(col(TIES_RANK).lt_eq(datafusion::logical_expr::lit(count as u64)))
                    .map_err(df)?;
            }
            builder = builder.sort(keys).map_err(df)?;
            if builder.schema().fields().len() != columns.len() {
                builder = builder.project(columns).map_err(df)?;
            }
            plan = builder.build().map_err(df)?;
        }

        // LIMIT / OFFSET (constants, and parameters whose values are
        // known).
        if (!q.limitCount.is_null() || !q.limitOffset.is_null()) && ties.is_none() {
            // SAFETY: as above.
            let fetch = unsafe { self.limit_value(q.limitCount)? };
            // SAFETY: as above.
            let skip = unsafe { self.limit_value(q.limitOffset)? }.unwrap_or(0);
            plan = LogicalPlanBuilder::from(plan)
                .limit(skip, fetch)
                .map_err(df)?
                .build()
                .map_err(df)?;
        }

        // The visible columns.
        if visible.len() != exprs_len {
            let visible: Vec<Expr> = visible.into_iter().map(col).collect();
            plan = LogicalPlanBuilder::from(plan)
                .project(visible)
                .map_err(df)?
                .build()
                .map_err(df)?;
        }
        Ok(plan)
    }

    /// A FROM item: a range table reference, a join, or a nested list.
    unsafe fn join_item(&mut self, item: *mut pg_sys::Node) -> Result<LogicalPlan, Refusal> {
        // SAFETY: per the caller.
        unsafe {
            if let Some(r) = cast::<pg_sys::RangeTblRef>(item, NodeTag::T_RangeTblRef) {
                return self.range_entry((*r).rtindex);
            }
            if let Some(j) = cast::<pg_sys::JoinExpr>(item, NodeTag::T_JoinExpr) {
                let j = &*j;
                let join_type = match j.jointype {
                    pg_sys::JoinType::JOIN_INNER => JoinType::Inner,
                    pg_sys::JoinType::JOIN_LEFT => JoinType::Left,
                    pg_sys::JoinType::JOIN_RIGHT => JoinType::Right,
                    pg_sys::JoinType::JOIN_FULL => JoinType::Full,
                    _ => return Err(Refusal::shape("an unusual join type")),
                };
                let left = self.join_item(j.larg)?;
                let right = self.join_item(j.rarg)?;
                // The join's columns are its inputs' (Vars of the join RTE
                // are resolved through joinaliasvars).
                let schema = left.schema().join(right.schema()).map_err(df)?;
                let saved = self.level().schema.replace(Arc::new(schema));
                let on = if j.quals.is_null() {
                    Vec::new()
                } else {
                    vec![self.expr(fold(j.quals), &Scope::Rows)?]
                };
                self.level().schema = saved;
                return LogicalPlanBuilder::from(left)
                    .join_on(right, join_type, on)
                    .map_err(df)?
                    .build()
                    .map_err(df);
            }
            if let Some(f) = cast::<pg_sys::FromExpr>(item, NodeTag::T_FromExpr) {
                let f = &*f;
                let mut plan: Option<LogicalPlan> = None;
                for item in list::<pg_sys::Node>(f.fromlist) {
                    let next = self.join_item(item)?;
                    plan = Some(match plan {
                        None => next,
                        Some(left) => LogicalPlanBuilder::from(left)
                            .cross_join(next)
                            .map_err(df)?
                            .build()
                            .map_err(df)?,
                    });
                }
                let mut plan = plan.ok_or("an empty FROM list")?;
                if !f.quals.is_null() {
                    let saved = self.level().schema.replace(plan.schema().clone());
                    let predicate = self.predicate(fold(f.quals), &Scope::Rows);
                    self.level().schema = saved;
                    plan = LogicalPlanBuilder::from(plan)
                        .filter(predicate?)
                        .map_err(df)?
                        .build()
                        .map_err(df)?;
                }
                return Ok(plan);
            }
        }
        Err(Refusal::shape("an unusual FROM item"))
    }

    /// Range table entry `rtindex` of the current level as a plan named
    /// `l{level}_r{rtindex}`.
    unsafe fn range_entry(&mut self, rtindex: i32) -> Result<LogicalPlan, Refusal> {
        let level = self.levels.last().expect("inside a query level");
        let (level_id, query) = (level.id, level.query);
        // SAFETY: per the caller; rtindex is 1-based.
        let rte = unsafe { &*rt_fetch(query, rtindex)? };
        let alias = format!("l{level_id}_r{rtindex}");
        match rte.rtekind {
            pg_sys::RTEKind::RTE_RELATION => {
                if !rte.securityQuals.is_null() {
                    return Err(Refusal::shape("security-barrier quals"));
                }
                if !rte.tablesample.is_null() {
                    return Err(Refusal::shape("TABLESAMPLE"));
                }
                // SAFETY: a catalog lookup of a table the planner locked.
                if rte.inh && unsafe { partitions::has_children(rte.relid) } {
                    // SAFETY: per the caller.
                    let plan = unsafe { self.inherited(rte, rtindex, &alias)? };
                    return LogicalPlanBuilder::from(plan)
                        .alias(alias)
                        .map_err(df)?
                        .build()
                        .map_err(df);
                }
                // SAFETY: on the backend thread.
                let (rel, mut table) = unsafe { crate::plan::table::open_table(rte.relid) }?;
                table.filtered_rows = self.levels.last().and_then(|l| l.estimates.get(&rtindex).copied());
                self.relations.push((rte.relid, rel));
                let names = table.column_names();
                self.level().columns.insert(rtindex, names);
                LogicalPlanBuilder::scan(alias, provider_as_source(Arc::new(table)), None)
                    .map_err(df)?
                    .build()
                    .map_err(df)
            }
            pg_sys::RTEKind::RTE_SUBQUERY => {
                if rte.lateral {
                    return Err(Refusal::shape("LATERAL"));
                }
                // A security_barrier view's own conditions must hide its
                // rows from every function the querier adds, which
                // DataFusion's filter pushdown does not promise.
                if rte.security_barrier {
                    return Err(Refusal::shape("a security_barrier view"));
                }
                // SAFETY: a subquery RTE's query.
                let plan = unsafe { self.query(rte.subquery)? };
                self.aliased(plan, rtindex, alias)
            }
            pg_sys::RTEKind::RTE_CTE => {
                // SAFETY: a CTE reference names a CTE of an enclosing level.
                let (cte, owner) = unsafe { self.find_cte(rte)? };
                // Inlined at every reference (a non-recursive CTE's result
                // does not depend on where it is read), numbered alike.
                let after = self.next_level;
                self.next_level = *self.cte_levels.entry(cte as usize).or_insert(after);
                // The CTE's query is a level below the one whose WITH
                // holds it, wherever it is read: its own references (to
                // other CTEs, to outer columns) count levels from there.
                let reading = self.levels.split_off(owner + 1);
                // SAFETY: the CTE's query.
                let plan = unsafe { self.query((*cte).ctequery.cast()) };
                self.levels.extend(reading);
                self.next_level = self.next_level.max(after);
                self.aliased(plan?, rtindex, alias)
            }
            pg_sys::RTEKind::RTE_FUNCTION => {
                // SAFETY: a function entry's functions.
                let plan = unsafe { self.function_scan(rte, &alias)? };
                self.aliased(plan, rtindex, alias)
            }
            pg_sys::RTEKind::RTE_VALUES => {
                // SAFETY: a VALUES entry's lists of expressions.
                let plan = unsafe { self.values(rte)? };
                self.aliased(plan, rtindex, alias)
            }
            _ => Err(Refusal::shape(
                "a FROM item other than a table, subquery, WITH query or VALUES",
            )),
        }
    }

    /// A subquery's plan under `alias`, its columns c1..cn.
    fn aliased(&mut self, plan: LogicalPlan, rtindex: i32, alias: String) -> Result<LogicalPlan, Refusal> {
        let names = plan.schema().fields().iter().map(|f| Some(f.name().clone())).collect();
        self.level().columns.insert(rtindex, names);
        LogicalPlanBuilder::from(plan)
            .alias(alias)
            .map_err(df)?
            .build()
            .map_err(df)
    }

    /// The rows of a `VALUES` list in FROM: each column in one Arrow form,
    /// numerics of different display scales as Postgres's numerics
    /// (carried as images, each value keeping its own scale, as Postgres's
    /// column of numerics without a declared scale shows it).
    ///
    /// # Safety
    /// `rte` is a valid RTE_VALUES entry of the current level.
    unsafe fn values(&mut self, rte: &pg_sys::RangeTblEntry) -> Result<LogicalPlan, Refusal> {
        use datafusion::arrow::datatypes::DataType;
        use datafusion::common::{DFSchema, ScalarValue};
        if rte.lateral {
            return Err(Refusal::shape("a VALUES list reading columns beside it (LATERAL)"));
        }
        let mut rows = Vec::new();
        // SAFETY: per the caller; lists of expressions.
        for row in unsafe { list::<pg_sys::List>(rte.values_lists) } {
            let mut values = Vec::new();
            // SAFETY: as above.
            for node in unsafe { list::<pg_sys::Node>(row) } {
                // SAFETY: as above.
                values.push(unsafe { self.expr(node, &Scope::Rows)? });
            }
            rows.push(values);
        }
        // SAFETY: per the caller; the entry's column types.
        let types = unsafe { crate::nodes::oid_list(rte.coltypes) };
        let empty = DFSchema::empty();
        for (column, &typid) in types.iter().enumerate() {
            let forms: Vec<Option<DataType>> = rows
                .iter()
                .map(|row| match &row[column] {
                    Expr::Literal(value, _) if value.is_null() => None,
                    value => value.get_type(&empty).ok(),
                })
                .collect();
            let known: Vec<&DataType> = forms.iter().flatten().collect();
            if known.windows(2).all(|pair| pair[0] == pair[1]) {
                continue;
            }
            if typid != pg_sys::NUMERICOID {
                return Err(Refusal::shape("a VALUES column whose values differ in form"));
            }
            for (row, form) in rows.iter_mut().zip(&forms) {
                let value = std::mem::replace(&mut row[column], Expr::Literal(ScalarValue::Null, None));
                row[column] = match form {
                    None => Expr::Literal(ScalarValue::Binary(None), None),
                    Some(DataType::Binary) => value,
                    // SAFETY: on the backend thread.
                    Some(_) => unsafe {
                        function::numeric_call(
                            pg_sys::F_NUMERIC_UPLUS,
                            vec![(value, pg_sys::NUMERICOID)],
                            "a VALUES column of numerics of different display scales",
                        )?
                    },
                };
            }
        }
        LogicalPlanBuilder::values(rows).map_err(df)?.build().map_err(df)
    }

    /// The CTE an RTE_CTE entry reads, and the index of the level whose
    /// WITH holds it.
    unsafe fn find_cte(&self, rte: &pg_sys::RangeTblEntry) -> Result<(*mut pg_sys::CommonTableExpr, usize), Refusal> {
        let up = rte.ctelevelsup as usize;
        let level = self
            .levels
            .len()
            .checked_sub(1 + up)
            .ok_or("a WITH query outside the statement")?;
        // SAFETY: per the caller.
        unsafe {
            let name = text(rte.ctename);
            list::<pg_sys::CommonTableExpr>((*self.levels[level].query).cteList)
                .into_iter()
                .find(|&cte| text((*cte).ctename) == name)
                .map(|cte| (cte, level))
                .ok_or_else(|| Refusal::shape(format!("WITH query {name} not found")))
        }
    }

    /// GROUP BY and the aggregates of the target list and HAVING: the
    /// aggregated plan, and the scope later expressions see it through.
    unsafe fn aggregate(
        &mut self,
        q: &pg_sys::Query,
        plan: LogicalPlan,
        targets: &[*mut pg_sys::TargetEntry],
        having: *mut pg_sys::Node,
    ) -> Result<(LogicalPlan, Scope), Refusal> {
        let mut groups = Vec::new();
        let mut group_exprs = Vec::new();
        let mut refs = Vec::new();
        // SAFETY: per the caller.
        for clause in unsafe { list::<pg_sys::SortGroupClause>(q.groupClause) } {
            // SAFETY: as above.
            refs.push(unsafe { (*clause).tleSortGroupRef });
            // SAFETY: as above.
            let target = find_target(targets, unsafe { (*clause).tleSortGroupRef })?;
            // SAFETY: as above.
            let node: *mut pg_sys::Node = unsafe { (*target).expr.cast() };
            // SAFETY: as above.
            unsafe { expr::groupable(node, "GROUP BY")? };
            // SAFETY: as above.
            let value = unsafe { self.expr(node, &Scope::Rows)? };
            // SAFETY: as above.
            if unsafe { self.numeric_image(node, &value, &Scope::Rows) } {
                return Err(Refusal::inexact(
                    "GROUP BY over numerics without a declared scale, whose equal values may differ in their bytes",
                ));
            }
            let name = format!("g{}", groups.len());
            group_exprs.push(value.alias(&name));
            groups.push((node, name));
        }
        let mut aggrefs = Vec::new();
        for &target in targets {
            // SAFETY: as above.
            unsafe { aggregate::collect_aggrefs((*target).expr.cast(), &mut aggrefs)? };
        }
        // SAFETY: as above.
        unsafe { aggregate::collect_aggrefs(having, &mut aggrefs)? };
        let mut aggs = Vec::new();
        let mut parted: Vec<scope::Parted> = Vec::new();
        let mut agg_exprs = Vec::new();
        for aggref in aggrefs {
            // An aggregate whose display scale Postgres picks per value is
            // computed in two parts, which Postgres finishes (see
            // `finish`).
            // SAFETY: an Aggref of this level.
            if let Some((kind, sum, other)) = unsafe { self.parts(aggref)? } {
                let seen = |p: &scope::Parted| {
                    // SAFETY: Aggrefs of this level.
                    unsafe { pg_sys::equal(p.aggref as *const _, aggref as *const _) }
                };
                if !parted.iter().any(seen) {
                    let (sum_name, other_name) = (format!("v{}_sum", parted.len()), format!("v{}_other", parted.len()));
                    agg_exprs.push(sum.alias(&sum_name));
                    agg_exprs.push(other.alias(&other_name));
                    parted.push(scope::Parted {
                        aggref,
                        kind,
                        sum: sum_name,
                        other: other_name,
                    });
                }
                continue;
            }
            let same = |&(seen, _): &(*mut pg_sys::Aggref, Expr)| {
                // SAFETY: Aggrefs of this level.
                unsafe { pg_sys::equal(seen as *const _, aggref as *const _) }
            };
            if aggs.iter().any(same) {
                continue;
            }
            // SAFETY: as above.
            let value = unsafe { self.aggref(aggref)? };
            let name = format!("a{}", aggs.len());
            agg_exprs.push(value.alias(&name));
            // SAFETY: as above.
            let read = match unsafe { self.companion(aggref)? } {
                Some(companion) => {
                    let mut beside = Vec::new();
                    for (i, aggregate) in companion.aggregates.iter().enumerate() {
                        let column = format!("{name}_beside{i}");
                        agg_exprs.push(aggregate.clone().alias(&column));
                        beside.push(col(column.as_str()));
                    }
                    companion.read(col(name.as_str()), beside)
                }
                None => col(name.as_str()),
            };
            aggs.push((aggref, read));
        }
        // SAFETY: as above.
        let sets = unsafe { grouping::grouping_sets(q)? };
        let mut grouping_funcs = Vec::new();
        for &target in targets {
            // SAFETY: as above.
            unsafe { grouping::collect_grouping_funcs((*target).expr.cast(), &mut grouping_funcs) };
        }
        // SAFETY: as above.
        unsafe { grouping::collect_grouping_funcs(having, &mut grouping_funcs) };
        let (plan, group_exprs) = if sets.is_some() || !grouping_funcs.is_empty() {
            // Grouping sets and GROUPING() name their columns: the group
            // values computed first, as columns beside the input's.
            let mut columns: Vec<Expr> = plan.schema().columns().into_iter().map(Expr::Column).collect();
            columns.extend(group_exprs);
            let plan = LogicalPlanBuilder::from(plan)
                .project(columns)
                .map_err(df)?
                .build()
                .map_err(df)?;
            let group = |r: &u32| -> Result<Expr, Refusal> {
                let i = refs
                    .iter()
                    .position(|g| g == r)
                    .ok_or("a grouping set of a column not grouped")?;
                Ok(col(format!("g{i}")))
            };
            for &func in &grouping_funcs {
                // SAFETY: a GroupingFunc of this level's expressions.
                let f = unsafe { &*func };
                if f.agglevelsup != 0 {
                    return Err(Refusal::shape("GROUPING() of an outer level"));
                }
                let seen = |(g, _): &(*mut pg_sys::Node, String)| {
                    // SAFETY: parse trees of this level.
                    unsafe { pg_sys::equal(g.cast(), func.cast()) }
                };
                if groups.iter().any(seen) {
                    continue;
                }
                // SAFETY: its refs are an integer list.
                let args = unsafe { crate::nodes::int_list(f.refs) }
                    .iter()
                    .map(|&r| group(&(r as u32)))
                    .collect::<Result<Vec<_>, _>>()?;
                let name = format!("q{}", groups.len());
                agg_exprs.push(grouping_udaf().call(args).alias(&name));
                groups.push((func.cast(), name));
            }
            let group_exprs = match sets {
                Some(sets) => vec![Expr::GroupingSet(GroupingSet::GroupingSets(
                    sets.iter()
                        .map(|set| set.iter().map(group).collect::<Result<Vec<_>, _>>())
                        .collect::<Result<Vec<_>, _>>()?,
                ))],
                None => (0..refs.len()).map(|i| col(format!("g{i}"))).collect(),
            };
            (plan, group_exprs)
        } else {
            (plan, group_exprs)
        };
        let plan = LogicalPlanBuilder::from(plan)
            .aggregate(group_exprs, agg_exprs)
            .map_err(df)?
            .build()
            .map_err(df)?;
        self.level().grouped = Some(plan.schema().clone());
        Ok((plan, Scope::Grouped { groups, aggs, parted }))
    }

    /// The Arrow type of `value`, an expression of `scope`; None where it
    /// cannot be told.
    fn arrow_type(&self, value: &Expr, scope: &Scope) -> Option<datafusion::arrow::datatypes::DataType> {
        let schema = self
            .scope_schema(scope)
            .unwrap_or_else(|| Arc::new(datafusion::common::DFSchema::empty()));
        value.get_type(schema.as_ref()).ok()
    }

    /// The columns expressions of `scope` read at the current level, once
    /// known.
    fn scope_schema(&self, scope: &Scope) -> Option<DFSchemaRef> {
        let level = self.levels.last()?;
        match scope {
            Scope::Rows => level.schema.clone(),
            Scope::Grouped { .. } => level.grouped.clone(),
        }
    }

    /// Whether `value`, the translation of `node` in `scope`, is a numeric
    /// carried as its image (a column or a result of Postgres's without a
    /// declared scale), on which DataFusion's numeric kernels must not run:
    /// only Postgres computes with it. Also where its Arrow type cannot be
    /// told, which sends it to Postgres too.
    ///
    /// # Safety
    /// `node` is a valid expression node.
    unsafe fn numeric_image(&self, node: *mut pg_sys::Node, value: &Expr, scope: &Scope) -> bool {
        // SAFETY: per the caller.
        let (typid, _, _) = unsafe { crate::nodes::expr_type(node) };
        typid == pg_sys::NUMERICOID
            && self
                .arrow_type(value, scope)
                .is_none_or(|t| t == datafusion::arrow::datatypes::DataType::Binary)
    }

    /// The value of `node` where it is constant for the statement (a
    /// constant expression, a parameter whose value is known, cast).
    ///
    /// # Safety
    /// `node` is a valid expression of the current level.
    unsafe fn constant_of(&mut self, node: *mut pg_sys::Node) -> Option<datafusion::common::ScalarValue> {
        // SAFETY: per the caller. The planner folds constant expressions.
        let folded = unsafe { pg_sys::eval_const_expressions(std::ptr::null_mut(), node) };
        // SAFETY: as above.
        match unsafe { self.expr(folded, &Scope::Rows) } {
            Ok(Expr::Literal(value, _)) => Some(value),
            // A parameter of another type, cast.
            Ok(Expr::Cast(cast)) => match *cast.expr {
                Expr::Literal(value, _) => value.cast_to(cast.field.data_type()).ok(),
                _ => None,
            },
            _ => None,
        }
    }

    /// A LIMIT or OFFSET value: a non-negative int8 constant or known
    /// parameter, NULL (none), or a refusal.
    ///
    /// # Safety
    /// `node` is NULL or a valid expression of the current level.
    unsafe fn limit_value(&mut self, node: *mut pg_sys::Node) -> Result<Option<usize>, Refusal> {
        if node.is_null() {
            return Ok(None);
        }
        use datafusion::common::ScalarValue;
        // SAFETY: per the caller.
        match unsafe { self.constant_of(node) } {
            Some(ScalarValue::Int64(None)) => Ok(None),
            Some(ScalarValue::Int64(Some(value))) => usize::try_from(value)
                .map(Some)
                .map_err(|_| "a negative LIMIT or OFFSET".into()),
            _ => Err(Refusal::shape("a LIMIT or OFFSET that is not a constant")),
        }
    }

    fn level(&mut self) -> &mut Level {
        self.levels.last_mut().expect("inside a query level")
    }

    /// The column a Var names, as a DataFusion column of the current
    /// level, or an outer reference.
    unsafe fn var(&mut self, var: &pg_sys::Var) -> Result<Expr, Refusal> {
        let up = var.varlevelsup as usize;
        let index = self
            .levels
            .len()
            .checked_sub(1 + up)
            .ok_or("a Var of an unknown query level")?;
        let level = &self.levels[index];
        // SAFETY: per the caller.
        let rte = unsafe { &*rt_fetch(level.query, var.varno)? };
        if rte.rtekind == pg_sys::RTEKind::RTE_JOIN {
            if var.varattno <= 0 {
                return Err(Refusal::shape("a whole-row reference to a join"));
            }
            // SAFETY: a join RTE's alias vars.
            let aliased = unsafe { list::<pg_sys::Node>(rte.joinaliasvars) };
            let node = *aliased
                .get(var.varattno as usize - 1)
                .ok_or("a join column out of range")?;
            if node.is_null() {
                return Err(Refusal::shape("a dropped join column"));
            }
            // The alias var is relative to the join's own level.
            if up > 0 {
                return Err(Refusal::shape("an outer reference to a join's column"));
            }
            // SAFETY: an expression of this level.
            return unsafe { self.expr(node, &Scope::Rows) };
        }
        if var.varattno <= 0 {
            return Err(Refusal::shape("a system column or whole-row reference"));
        }
        let name = level
            .columns
            .get(&var.varno)
            .and_then(|names| names.get(var.varattno as usize - 1).cloned().flatten())
            .ok_or("a column weft did not scan")?;
        let column = Column::new(Some(format!("l{}_r{}", level.id, var.varno)), name);
        if up == 0 {
            return Ok(Expr::Column(column));
        }
        let schema = level
            .schema
            .as_ref()
            .ok_or("an outer reference before its FROM clause")?;
        let field = schema.field_from_column(&column).map_err(df)?;
        Ok(Expr::OuterReferenceColumn(
            Arc::new(field.as_ref().clone().with_nullable(true)),
            column,
        ))
    }
}

/// The target entry a sort/group clause refers to.
fn find_target(targets: &[*mut pg_sys::TargetEntry], sortgroupref: u32) -> Result<*mut pg_sys::TargetEntry, Refusal> {
    targets
        .iter()
        .copied()
        // SAFETY: target entries of a valid Query.
        .find(|&t| unsafe { (*t).ressortgroupref } == sortgroupref)
        .ok_or_else(|| "a sort or group clause without its target".into())
}

/// Range table entry `rtindex` (1-based) of `query`.
pub(crate) unsafe fn rt_fetch(query: *mut pg_sys::Query, rtindex: i32) -> Result<*mut pg_sys::RangeTblEntry, Refusal> {
    // SAFETY: per the caller.
    let entries = unsafe { list::<pg_sys::RangeTblEntry>((*query).rtable) };
    usize::try_from(rtindex - 1)
        .ok()
        .and_then(|i| entries.get(i).copied())
        .ok_or_else(|| Refusal::shape(format!("range table entry {rtindex} does not exist")))
}

/// `node` with its constant subexpressions evaluated (a copy), as the
/// planner's own `eval_const_expressions`; NULL stays NULL.
///
/// # Safety
/// `node` is NULL or a valid expression, on the backend thread.
unsafe fn fold(node: *mut pg_sys::Node) -> *mut pg_sys::Node {
    if node.is_null() {
        return node;
    }
    // SAFETY: per the caller. Folding evaluates only immutable functions
    // on constants, which the stock planner did the same way already
    // (it planned this query first). Folding may build operators without
    // their function (NOT (a > b) becomes a <= b); fix_opfuncids fills
    // them in, as the planner does.
    unsafe {
        let folded = pg_sys::eval_const_expressions(std::ptr::null_mut(), node);
        pg_sys::fix_opfuncids(folded);
        folded
    }
}

/// The FROM items joined as a product (Postgres's comma list), or one
/// empty row for none.
fn cross_join(items: Vec<LogicalPlan>) -> Result<LogicalPlan, Refusal> {
    let mut plans = items.into_iter();
    let Some(first) = plans.next() else {
        return LogicalPlanBuilder::empty(true).build().map_err(df);
    };
    plans.try_fold(first, |left, right| {
        LogicalPlanBuilder::from(left)
            .cross_join(right)
            .map_err(df)?
            .build()
            .map_err(df)
    })
}

/// The one FROM item that `conjunct`, a condition with an uncorrelated
/// IN or EXISTS subquery, reads alone; None for other conditions.
///
/// A correlated subquery asks about each outer row, and the semi (or
/// anti) join DataFusion makes of it has the outer rows as its build
/// side: it pays to ask after the joins have dropped what they drop, when
/// that side is small enough to hand its keys to the subquery's scan or
/// look them up in an index. TPC-H Q21's EXISTS and NOT EXISTS on
/// lineitem l1, placed on l1, met 2 million rows; after the joins with
/// the nation's suppliers and the finished orders, 38 thousand.
fn subquery_item(conjunct: &Expr, items: &[LogicalPlan]) -> Option<usize> {
    let mut columns = Vec::new();
    let mut subquery = false;
    let mut correlated = false;
    conjunct
        .apply(|e| {
            match e {
                Expr::Column(c) => columns.push(c.clone()),
                Expr::InSubquery(InSubquery { subquery: s, .. }) | Expr::Exists(Exists { subquery: s, .. }) => {
                    subquery = true;
                    correlated |= !s.outer_ref_columns.is_empty();
                }
                Expr::ScalarSubquery(_) => columns.push(Column::from_name("?")),
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .ok()?;
    if !subquery || correlated || items.len() < 2 {
        return None;
    }
    let mut owners = items
        .iter()
        .enumerate()
        .filter(|(_, item)| columns.iter().all(|c| item.schema().has_column(c)));
    match (owners.next(), owners.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

/// A DataFusion error as a refusal.
fn df(e: impl std::fmt::Display) -> Refusal {
    Refusal::datafusion(e)
}
