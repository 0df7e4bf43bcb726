//! A table with inheritance children in FROM: a partitioned table (every
//! level of it) or an inheritance parent, not under ONLY. Its rows are
//! those of its leaves (the tables with storage under it, the parent
//! among them where it has storage), each read by its own scan and their
//! columns matched by name, since a leaf's attribute numbers may differ
//! from the parent's (dropped columns, another column order, a table
//! attached later); then one UNION ALL under the parent's name.
//!
//! Partitions that cannot hold a row the query keeps are not read: as
//! Postgres's constraint exclusion does (`relation_excluded_by_constraints`),
//! a partition whose constraint (`get_partition_qual_relid`, its
//! ancestors' bounds included) the level's WHERE conditions on the table
//! refute (`predicate_refuted_by`) is left out. Parameters count with
//! their values where they are known (a custom plan, and every execution,
//! which translates again). Conditions under an outer join stay out of
//! it: there a row the condition drops may still decide which rows are
//! NULL-extended.

use datafusion::common::Column;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{col, lit, Expr, LogicalPlan, LogicalPlanBuilder};
use pgrx::pg_sys::{self, NodeTag};

use super::fold::{planner_with, without_errors};
use super::{df, Refusal, Stage, Translator};
use crate::nodes::list;

/// Functions of Postgres's partitioning and rewriter headers, which pgrx
/// does not bind; called through `pg_guard_ffi_boundary`.
mod inheritance {
    use std::ffi::c_int;

    use pgrx::pg_sys::{Expr, List, Node, Oid, Relation};

    unsafe extern "C-unwind" {
        /// Every table under `parent`, itself first, each locked in `lockmode`.
        pub fn find_all_inheritors(parent: Oid, lockmode: c_int, numparents: *mut *mut List) -> *mut List;
        /// A partition's constraint (its ancestors' included) as one
        /// expression over its own attribute numbers (varno 1); NULL for a
        /// table that is not a partition.
        pub fn get_partition_qual_relid(relid: Oid) -> *mut Expr;
        /// `expr` (Vars of varno `fromrel_varno` numbered as `from_rel`'s
        /// attributes) renumbered as `to_rel`'s, matched by name.
        pub fn map_partition_varattnos(
            expr: *mut List,
            fromrel_varno: c_int,
            to_rel: Relation,
            from_rel: Relation,
        ) -> *mut List;
        /// Whether `relid` has (or may have had) inheritance children.
        pub fn has_subclass(relid: Oid) -> bool;
        /// Renumbers the Vars of range table entry `old` to `new`.
        pub fn ChangeVarNodes(node: *mut Node, old: c_int, new: c_int, sublevels_up: c_int);
    }
}

/// Calls `f`, a Postgres function, with its ERROR raised as Rust's.
///
/// # Safety
/// As `f`'s.
unsafe fn guarded<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: per the caller.
    unsafe { pg_sys::submodules::ffi::pg_guard_ffi_boundary(f) }
}

/// Whether table `relid` has inheritance children (partitions).
///
/// # Safety
/// On the backend thread.
pub(super) unsafe fn has_children(relid: pg_sys::Oid) -> bool {
    // SAFETY: per the caller; a catalog lookup.
    unsafe { guarded(|| inheritance::has_subclass(relid)) }
}

impl Translator {
    /// The rows of `rte` (a table with inheritance children, read with
    /// them), range table entry `rtindex` of the current level, under
    /// `alias`.
    ///
    /// # Safety
    /// `rte` is a valid RTE_RELATION entry of the current level.
    pub(super) unsafe fn inherited(
        &mut self,
        rte: &pg_sys::RangeTblEntry,
        rtindex: i32,
        alias: &str,
    ) -> Result<LogicalPlan, Refusal> {
        // SAFETY: per the caller; the stock planner has locked the table.
        let parent = unsafe { pg_sys::table_open(rte.relid, pg_sys::NoLock as i32) };
        // SAFETY: as above.
        let plan = unsafe { self.leaves(parent, rtindex, alias) };
        // SAFETY: opened above.
        unsafe { pg_sys::table_close(parent, pg_sys::NoLock as i32) };
        plan
    }

    /// See [`Translator::inherited`]; `parent` is open.
    unsafe fn leaves(&mut self, parent: pg_sys::Relation, rtindex: i32, alias: &str) -> Result<LogicalPlan, Refusal> {
        // SAFETY: an open relation's descriptor.
        let names = unsafe { column_names(parent) };
        // SAFETY: an open relation.
        let relid = unsafe { (*parent).rd_id };
        // SAFETY: the relation's descendants, locked as a scan of them
        // needs.
        let tables = unsafe {
            guarded(|| inheritance::find_all_inheritors(relid, pg_sys::AccessShareLock as i32, std::ptr::null_mut()))
        };
        // SAFETY: as above.
        let conditions = unsafe { self.conditions_on(rtindex) };
        let mut leaves = Vec::new();
        // SAFETY: a list of OIDs.
        for table in unsafe { crate::nodes::oid_list(tables) } {
            // SAFETY: a catalog lookup.
            match unsafe { pg_sys::get_rel_relkind(table) } as u8 {
                // No storage: its rows are its partitions'.
                pg_sys::RELKIND_PARTITIONED_TABLE => continue,
                pg_sys::RELKIND_RELATION => {}
                _ => {
                    return Err(Refusal::shape(
                        "a child of a table that is not a table (a foreign table)",
                    ))
                }
            }
            // SAFETY: locked above.
            let excluded = unsafe { excluded(table, parent, &conditions) };
            leaves.push((table, excluded));
        }
        // Where every leaf is excluded, the first is read through a false
        // filter: no rows, of its columns' types.
        let none = leaves.iter().all(|&(_, excluded)| excluded);
        let mut scans = Vec::new();
        for (i, &(table, excluded)) in leaves.iter().enumerate() {
            if excluded && !(none && i == 0) {
                continue;
            }
            // SAFETY: on the backend thread.
            let (rel, leaf) = unsafe { crate::plan::table::open_table(table) }.map_err(Refusal::shape)?;
            self.relations.push((table, rel));
            let leaf_alias = format!("{alias}_t{}", scans.len());
            let scan =
                LogicalPlanBuilder::scan(leaf_alias.clone(), provider_as_source(std::sync::Arc::new(leaf)), None)
                    .map_err(df)?
                    .build()
                    .map_err(df)?;
            // The parent's columns, by name.
            let columns: Vec<Expr> = names
                .iter()
                .flatten()
                .map(|name| col(Column::new(Some(leaf_alias.as_str()), name.as_str())).alias(name))
                .collect();
            let mut scan = LogicalPlanBuilder::from(scan).project(columns).map_err(df)?;
            if excluded {
                scan = scan.filter(lit(false)).map_err(df)?;
            }
            scans.push(scan.build().map_err(df)?);
        }
        let mut scans = scans.into_iter();
        let Some(first) = scans.next() else {
            return Err(Refusal::shape("a partitioned table without partitions"));
        };
        let mut union = LogicalPlanBuilder::from(first);
        for scan in scans {
            union = union.union(scan).map_err(df)?;
        }
        self.level().columns.insert(rtindex, names);
        union.build().map_err(df)
    }

    /// The WHERE conditions of the current level on range table entry
    /// `rtindex` alone (no other table's columns, no outer level's, no
    /// subquery, nothing volatile), as an implicitly ANDed list over Vars
    /// of varno 1; parameters replaced by their values where known when the
    /// query runs. Empty where the level has an outer join.
    ///
    /// # Safety
    /// On the backend thread; the current level's Query is valid.
    unsafe fn conditions_on(&mut self, rtindex: i32) -> *mut pg_sys::List {
        let query = self.levels.last().expect("inside a query level").query;
        // SAFETY: per the caller; the Query's join tree and range table.
        unsafe {
            let q = &*query;
            let outer_join = list::<pg_sys::RangeTblEntry>(q.rtable).into_iter().any(|rte| {
                (*rte).rtekind == pg_sys::RTEKind::RTE_JOIN && (*rte).jointype != pg_sys::JoinType::JOIN_INNER
            });
            if outer_join || q.jointree.is_null() || (*q.jointree).quals.is_null() {
                return std::ptr::null_mut();
            }
            let quals = pg_sys::copyObjectImpl((*q.jointree).quals.cast()).cast::<pg_sys::Node>();
            let mut kept = std::ptr::null_mut();
            for qual in list::<pg_sys::Node>(pg_sys::make_ands_implicit(quals.cast())) {
                if own_condition(qual, rtindex) {
                    kept = pg_sys::lappend(kept, qual.cast());
                }
            }
            if kept.is_null() {
                return kept;
            }
            guarded(|| inheritance::ChangeVarNodes(kept.cast(), rtindex, 1, 0));
            // Parameters by their values (a generic plan's, when it runs);
            // constants folded, as the planner folds them before it
            // excludes. An ERROR in folding (a division by zero) leaves the
            // conditions out, to be Postgres's to raise row by row.
            let params = if self.stage == Stage::Running {
                self.params
            } else {
                std::ptr::null_mut()
            };
            without_errors(|| pg_sys::eval_const_expressions(planner_with(params), kept.cast()))
                .map_or(std::ptr::null_mut(), |folded| folded.cast())
        }
    }
}

/// Whether `qual` reads only table `rtindex` of its level (and at least one
/// of its columns), with nothing volatile and no subquery.
///
/// # Safety
/// `qual` is a valid expression.
unsafe fn own_condition(qual: *mut pg_sys::Node, rtindex: i32) -> bool {
    /// What the walk has seen: columns of the table, and anything else.
    struct Seen {
        rtindex: i32,
        columns: usize,
    }
    /// True (stop) at anything but a column of the table: another
    /// table's, an outer level's, a whole row or system column, a
    /// subquery.
    #[pgrx::pg_guard]
    unsafe extern "C-unwind" fn walk(node: *mut pg_sys::Node, context: *mut std::ffi::c_void) -> bool {
        // SAFETY: Postgres's walker calls this with valid nodes and our
        // context.
        unsafe {
            if node.is_null() {
                return false;
            }
            let seen = &mut *context.cast::<Seen>();
            match (*node).type_ {
                NodeTag::T_Var => {
                    let var = &*node.cast::<pg_sys::Var>();
                    seen.columns += 1;
                    var.varno != seen.rtindex || var.varlevelsup != 0 || var.varattno <= 0
                }
                NodeTag::T_SubLink | NodeTag::T_SubPlan | NodeTag::T_Query => true,
                _ => pg_sys::expression_tree_walker(node, Some(walk), context),
            }
        }
    }
    let mut seen = Seen { rtindex, columns: 0 };
    // SAFETY: per the caller; Postgres's walkers.
    unsafe { !pg_sys::contain_volatile_functions(qual) && !walk(qual, (&raw mut seen).cast()) && seen.columns > 0 }
}

/// Whether partition `table` of `parent` cannot hold a row meeting
/// `conditions` (over the parent's columns, varno 1).
///
/// # Safety
/// `table` is locked; `parent` open; `conditions` NULL or a valid list.
unsafe fn excluded(table: pg_sys::Oid, parent: pg_sys::Relation, conditions: &*mut pg_sys::List) -> bool {
    if conditions.is_null() {
        return false;
    }
    // SAFETY: per the caller; catalog reads, and the conditions renumbered
    // as the partition's attributes.
    unsafe {
        let constraint = guarded(|| inheritance::get_partition_qual_relid(table));
        if constraint.is_null() {
            return false;
        }
        let rel = pg_sys::table_open(table, pg_sys::NoLock as i32);
        let conditions = pg_sys::copyObjectImpl((*conditions).cast()).cast::<pg_sys::List>();
        let mapped = guarded(|| inheritance::map_partition_varattnos(conditions, 1, rel, parent));
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        guarded(|| pg_sys::predicate_refuted_by(pg_sys::make_ands_implicit(constraint), mapped, false))
    }
}

/// The names of `rel`'s columns by attribute number, None for a dropped
/// one.
///
/// # Safety
/// `rel` is open.
unsafe fn column_names(rel: pg_sys::Relation) -> Vec<Option<String>> {
    // SAFETY: per the caller; the descriptor's attributes.
    unsafe {
        let desc = (*rel).rd_att;
        (0..(*desc).natts as usize)
            .map(|i| {
                let attribute = &*(*desc).attrs.as_ptr().add(i);
                (!attribute.attisdropped).then(|| {
                    std::ffi::CStr::from_ptr(attribute.attname.data.as_ptr())
                        .to_string_lossy()
                        .into_owned()
                })
            })
            .collect()
    }
}
