//! Index lookups: a hash join whose build side is small beside the table
//! under its probe side reads that table through a btree index, key by
//! key, instead of scanning it whole.
//!
//! This is Postgres's nested loop over an index scan, made parallel the
//! way weft runs everything. The join's build side, once read, publishes
//! its keys ([`crate::plan::keys::KeyCollectExec`]); the scan under the probe
//! side looks them up in the index, in key order, and fetches every row
//! with each. Which keys a participant looks up ([`Keys`]) keeps the
//! join exact without exchanging the table's rows:
//!
//! - [`Keys::Own`]: each participant keeps its own share of the build
//!   side (no broadcast, no hash exchange) and looks up that share's keys.
//!   Each then joins its build rows with all their matches, so the hash
//!   join turns from `CollectLeft` into `Partitioned`, both sides being the
//!   participant's own partition. This serves the joins whose output
//!   depends only on the probe rows that match (inner, left, left semi and
//!   left anti); in TPC-H Q4, 57 thousand orders look up their lineitems
//!   instead of reading and hashing all 6 million.
//! - [`Keys::Divided`]: the build side is broadcast (every participant
//!   holds all of it), and its keys are divided among the participants,
//!   so that each row of the table is fetched once, as a scan's shares
//!   would read it. This also serves right semi joins, which output each
//!   matching probe row once (`WHERE t.k IN (SELECT ...)`).
//!
//! [`IndexLookups`] takes a join when the keys it is estimated to look
//! up, times `weft.index_lookup_ratio` (how many rows a scan reads in the
//! time a lookup finds a key), plus the rows they fetch, are at most the
//! table's rows. For a semi or anti join on the key alone, each key's
//! lookup stops at its first row. With divided keys the plan is the
//! scan's either way, so the scan decides when it starts, from the keys
//! actually published: estimates of a build side are often far off.
//!
//! [`indexes`] lists a table's usable indexes when the leader describes
//! it; [`crate::storage::probe::IndexProbe`] is one participant's walk over its
//! keys.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{JoinType, NullEquality, Result};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use pgrx::pg_sys;
use weft_runtime::joins;

use crate::plan::keys;
use crate::plan::scan::{HeapScanExec, Keys, LookupIndex};
use crate::types::PgType;

/// The indexes of `rel` (of `rows` rows) that lookups can use.
///
/// # Safety
/// `rel` is open, on the backend thread.
pub unsafe fn indexes(rel: pg_sys::Relation, rows: Option<f64>) -> Vec<LookupIndex> {
    let mut found = Vec::new();
    // SAFETY: per the caller; the relcache's index list, and each index
    // opened (and locked, as the planner does) to read its definition.
    unsafe {
        let list = pg_sys::RelationGetIndexList(rel);
        let oids: Vec<pg_sys::Oid> = if list.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts((*list).elements, (*list).length as usize)
                .iter()
                .map(|cell| cell.oid_value)
                .collect()
        };
        for oid in oids {
            let index = pg_sys::index_open(oid, pg_sys::AccessShareLock as i32);
            if let Some(attnum) = usable(rel, index) {
                let unique = (*(*index).rd_index).indisunique && (*(*index).rd_index).indnkeyatts == 1;
                found.push(LookupIndex {
                    attnum,
                    index: oid,
                    name: std::ffi::CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr())
                        .to_string_lossy()
                        .into_owned(),
                    rows_per_key: if unique {
                        1.0
                    } else {
                        rows_per_key((*rel).rd_id, attnum, rows)
                    },
                });
            }
            pg_sys::index_close(index, pg_sys::NoLock as i32);
        }
    }
    found
}

/// Whether this transaction's snapshots may use `index`. An index built
/// over a broken HOT chain (`indcheckxmin`) lacks entries for row versions
/// that snapshots older than its creation can still see, so Postgres's
/// planner skips it until its pg_index row's xmin is older than the
/// transaction's xmin (plancat.c, `get_relation_info`); so does weft.
///
/// # Safety
/// `index` is open, on the backend thread.
unsafe fn visible_to_snapshot(index: pg_sys::Relation) -> bool {
    // SAFETY: per the caller; an open index's relcache entry keeps its
    // pg_index tuple.
    unsafe {
        if !(*(*index).rd_index).indcheckxmin {
            return true;
        }
        let header = &*(*(*index).rd_indextuple).t_data;
        let frozen = pg_sys::HEAP_XMIN_FROZEN as u16;
        if header.t_infomask & frozen == frozen {
            return true;
        }
        pg_sys::TransactionIdPrecedes(header.t_choice.t_heap.t_xmin, pg_sys::TransactionXmin)
    }
}

/// The integer column `index` (an open index of `rel`) can look up, if
/// it is a usable btree.
///
/// # Safety
/// Both open, on the backend thread.
unsafe fn usable(rel: pg_sys::Relation, index: pg_sys::Relation) -> Option<i16> {
    // SAFETY: per the caller; an open index's relcache entry.
    unsafe {
        let form = &*(*index).rd_index;
        if (*(*index).rd_rel).relam != pg_sys::BTREE_AM_OID
            || !form.indisvalid
            || !form.indisready
            || !form.indislive
            || form.indnkeyatts < 1
            || !pg_sys::RelationGetIndexPredicate(index).is_null()
            || !visible_to_snapshot(index)
        {
            return None;
        }
        let attnum = *form.indkey.values.as_slice(1).first()?;
        if attnum <= 0 {
            return None; // an expression
        }
        let descriptor = &*(*rel).rd_att;
        let attribute = descriptor
            .attrs
            .as_slice(descriptor.natts as usize)
            .get(attnum as usize - 1)?;
        if !matches!(
            PgType::of(attribute.atttypid, attribute.atttypmod),
            Ok(PgType::Int2 | PgType::Int4 | PgType::Int8)
        ) {
            return None;
        }
        // The type's own equality: any other operator family could mean
        // another equality than the join's.
        let default = pg_sys::GetDefaultOpClass(attribute.atttypid, pg_sys::BTREE_AM_OID);
        if default == pg_sys::InvalidOid
            || pg_sys::get_opclass_family(default) != *(*index).rd_opfamily
            || *(*index).rd_opcintype != attribute.atttypid
        {
            return None;
        }
        Some(attnum)
    }
}

/// Rows per distinct value of column `attnum` of `relid`, from
/// pg_statistic (as ANALYZE left it); 10 without statistics.
///
/// # Safety
/// On the backend thread.
unsafe fn rows_per_key(relid: pg_sys::Oid, attnum: i16, rows: Option<f64>) -> f64 {
    const UNKNOWN: f64 = 10.0;
    // SAFETY: per the caller.
    match (rows, unsafe { crate::plan::stats::distinct(relid, attnum, rows) }) {
        (Some(rows), Some(distinct)) => (rows / distinct).max(1.0),
        _ => UNKNOWN,
    }
}

/// Turns hash joins into index lookups (see the module docs), in two
/// passes around [`weft_runtime::Distribute`]. Both run in the leader.
#[derive(Debug)]
pub struct IndexLookups {
    /// `weft.index_lookup_ratio`: how many rows a scan reads in the time
    /// a lookup finds a key; 0 for no lookups.
    ratio: f64,
}

impl IndexLookups {
    /// Lookups for `weft.index_lookup_ratio` = `ratio`.
    pub fn new(ratio: f64) -> IndexLookups {
        IndexLookups { ratio }
    }

    /// Before distribution: joins whose build side each participant can
    /// keep its own share of ([`Keys::Own`]): inner, left, left semi and
    /// left anti joins over a build side read in as many partitions as
    /// the probe side (DataFusion gathered it to collect it whole).
    pub fn own_keys(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        self.each_join(plan, |join| {
            let join_type = *join.join_type();
            if !(joins::drops_unmatched_probe_rows(join_type) && joins::output_per_build_row(join_type)) {
                return Ok(None);
            }
            let build = match join.left().downcast_ref::<CoalescePartitionsExec>() {
                Some(coalesce) if coalesce.fetch().is_none() => Arc::clone(coalesce.input()),
                Some(_) => return Ok(None),
                None => Arc::clone(join.left()),
            };
            if build.output_partitioning().partition_count() != join.right().output_partitioning().partition_count() {
                return Ok(None);
            }
            // A semi or anti join asks only whether a key has a row: the
            // first the scan keeps is enough, unless the join tests more
            // than the key (the scan is not the last to drop rows).
            let first_match = matches!(join.join_type(), JoinType::LeftSemi | JoinType::LeftAnti)
                && join.on().len() == 1
                && join.filter().is_none()
                && keeps_every_row(join.right());
            let Some(probe) = self.lookup(join, &build, Keys::Own, first_match) else {
                return Ok(None);
            };
            join.builder()
                .with_partition_mode(PartitionMode::Partitioned)
                .with_new_children(vec![build, probe])?
                .build_exec()
                .map(Some)
        })
    }

    /// After distribution (among `participants`): inner and right semi
    /// joins whose build side every participant holds whole
    /// ([`Keys::Divided`]).
    pub fn divided_keys(&self, plan: Arc<dyn ExecutionPlan>, participants: usize) -> Result<Arc<dyn ExecutionPlan>> {
        self.each_join(plan, |join| {
            let join_type = *join.join_type();
            let exact = joins::drops_unmatched_probe_rows(join_type) && joins::output_per_probe_row(join_type);
            if !exact || !keys::whole_everywhere(join.left(), participants) {
                return Ok(None);
            }
            let Some(probe) = self.lookup(join, join.left(), Keys::Divided, false) else {
                return Ok(None);
            };
            join.builder()
                .with_new_children(vec![Arc::clone(join.left()), probe])?
                .build_exec()
                .map(Some)
        })
    }

    /// `plan` with `rewrite` applied to each `CollectLeft` hash join
    /// that lookups could serve, bottom up.
    fn each_join(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        rewrite: impl Fn(&HashJoinExec) -> Result<Option<Arc<dyn ExecutionPlan>>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.ratio <= 0.0 {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            if join.mode != PartitionMode::CollectLeft
                || join.null_equality() != NullEquality::NullEqualsNothing
                || join.null_aware
            {
                return Ok(Transformed::no(node));
            }
            Ok(match rewrite(join)? {
                Some(join) => Transformed::yes(join),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    /// `join`'s probe side with the scan under it looking up the keys of
    /// `build`, if one of the join's keys is a column of that scan with an
    /// index and the lookups pay.
    fn lookup(
        &self,
        join: &HashJoinExec,
        build: &Arc<dyn ExecutionPlan>,
        keys: Keys,
        first_match: bool,
    ) -> Option<Arc<dyn ExecutionPlan>> {
        let build_rows = weft_runtime::estimated_rows(build)? as f64;
        join.on().iter().find_map(|(_, probe_key)| {
            let column = probe_key.downcast_ref::<Column>()?;
            let lookup =
                |scan: &HeapScanExec, at: usize| scan.with_lookup(at, build_rows, self.ratio, keys, first_match);
            keys::push_to_scan(join.right(), column.index(), &lookup, keys::Through::Rows)
        })
    }
}

/// Whether every row of the scan under `plan` reaches its output: only
/// projections (and cooperative wrappers) between them.
fn keeps_every_row(plan: &Arc<dyn ExecutionPlan>) -> bool {
    if plan.downcast_ref::<HeapScanExec>().is_some() {
        return true;
    }
    let passes = plan.downcast_ref::<ProjectionExec>().is_some() || plan.downcast_ref::<CooperativeExec>().is_some();
    passes && keeps_every_row(plan.children()[0])
}
