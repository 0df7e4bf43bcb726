//! [`HeapScanExec`]: the scan of a heap table in weft's physical plan.
//!
//! It travels in the shipped plan as the relation's OID and relfilenode,
//! the projected columns and a scan slot number ([`crate::plan::codec`]);
//! each participant runs its share as a
//! [`HeapStream`](crate::storage::stream::HeapStream). The passes of
//! [`crate::plan::keys`] and [`crate::plan::lookup`] give it join keys to
//! filter by, or keys to look up in an index.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{exec_err, Result, Statistics};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use pgrx::pg_sys;
use weft_runtime::Participant;

use crate::guc;
use crate::storage::filter::{FilterColumn, ScanFilter};
use crate::storage::keys::KeySlot;
use crate::storage::stream::{FilterInput, HeapStream, LookupRun, ScanBinding, StreamFilter, StreamSpec};
use crate::types::PgType;

/// The share of a table's rows a filter keeps, when Postgres has not
/// estimated it: what DataFusion's FilterExec would have estimated.
const FILTERED: f64 = 0.2;

/// How many times faster a scan reads rows when their join key drops them
/// in the walk ([`crate::plan::keys`]) than when they go to the join, for
/// [`HeapScanExec::with_lookup`]'s divided keys: `weft.index_lookup_ratio`
/// is measured against a scan feeding a join, and weighed by it alone,
/// divided keys are looked up where the key-filtered scan is cheaper
/// (measured: see benches/README.md, 'TPC-H SF1 in plain SQL').
const KEY_FILTERED_SCAN_SPEEDUP: f64 = 3.0;

/// A scan's filter and the columns it reads (its inputs, in order).
#[derive(Clone, Debug)]
pub(super) struct Filtered {
    pub(super) inputs: Vec<ScanColumn>,
    pub(super) filter: Arc<ScanFilter>,
}

impl Filtered {
    /// `exprs` compiled over `inputs` (the columns they read, in the order
    /// they read them).
    pub(super) fn new(exprs: Vec<Expr>, inputs: Vec<ScanColumn>) -> Result<Filtered, String> {
        let columns: Vec<FilterColumn> = inputs.iter().map(|c| (c.name.as_str(), c.ty)).collect();
        let filter = ScanFilter::compile(exprs, &columns)?;
        if filter.inputs != (0..inputs.len()).collect::<Vec<_>>() {
            return Err("weft: a scan filter's inputs changed between compilations".into());
        }
        Ok(Filtered {
            inputs,
            filter: Arc::new(filter),
        })
    }
}

/// A projected column of a scan.
#[derive(Clone, Debug)]
pub(super) struct ScanColumn {
    pub(super) attnum: i16,
    pub(super) name: String,
    pub(super) typid: pg_sys::Oid,
    pub(super) typmod: i32,
    pub(super) ty: PgType,
    pub(super) nullable: bool,
    /// Its distinct values in the whole table (planning only: not
    /// shipped).
    pub(super) distinct: Option<f64>,
}

/// How a scan looks keys up in an index ([`crate::plan::lookup`]).
#[derive(Clone, Debug)]
pub(super) struct Lookup {
    /// The output column looked up.
    pub(super) column: usize,
    pub(super) index: LookupIndex,
    /// The rows the lookups are estimated to fetch (of all participants).
    pub(super) rows: f64,
    /// What the lookups cost as a share of scanning the table whole
    /// (planning only: the cost gate's).
    pub(super) share: f64,
    /// Which keys each participant looks up.
    pub(super) keys: Keys,
    /// Each key's lookup stops at the first row kept (a semi or anti join).
    pub(super) first_match: bool,
    /// Divided keys: past this many, looking them up would cost more than
    /// scanning, and the scan reads its share of the table instead, keeping
    /// the rows with one of the keys. Every participant holds the same
    /// keys, so all decide alike (a participant looking up a part of the
    /// keys beside one scanning its blocks would miss rows or repeat them).
    pub(super) max_keys: Option<u64>,
    /// Where the join publishes its build side's keys (linked after
    /// decoding, [`crate::plan::keys::link`]).
    pub(super) slot: Option<Arc<KeySlot>>,
}

/// The relation a scan reads.
#[derive(Clone, Debug)]
pub(super) struct ScanTarget {
    pub(super) relid: pg_sys::Oid,
    pub(super) relfilenode: u32,
    pub(super) name: String,
}

/// Scans one heap table as a share of a parallel scan; see the module docs.
#[derive(Clone, Debug)]
pub struct HeapScanExec {
    pub(super) target: ScanTarget,
    pub(super) columns: Vec<ScanColumn>,
    /// The filter the scan evaluates, if DataFusion pushed one.
    pub(super) filter: Option<Filtered>,
    /// Join keys the scan's rows must be among ([`crate::plan::keys`]): an
    /// output column, and where the join publishes its build side's keys.
    pub(super) keys: Vec<(usize, Arc<KeySlot>)>,
    pub(super) partitions: usize,
    /// The table's rows, as pg_class estimates them.
    pub(super) rows: Option<f64>,
    /// Postgres's estimate of the rows the query's conditions on the table
    /// keep (the scan's size in planning, shown by EXPLAIN).
    pub(super) filtered_rows: Option<f64>,
    /// The table's indexes a lookup could use (planning only).
    pub(super) indexes: Vec<LookupIndex>,
    /// Set when the scan reads the table through an index, looking up a
    /// join's keys, instead of scanning its share of the blocks.
    pub(super) lookup: Option<Lookup>,
    /// The scan's slot in the section's payload (set by the leader once
    /// the plan is final).
    pub(super) slot: Option<u32>,
    /// This participant's binding of the slot (set when decoded).
    pub(super) binding: Option<ScanBinding>,
    pub(super) properties: Arc<PlanProperties>,
    pub(super) metrics: ExecutionPlanMetricsSet,
}

impl HeapScanExec {
    pub(super) fn new(
        target: ScanTarget,
        columns: Vec<ScanColumn>,
        filter: Option<Filtered>,
        partitions: usize,
        rows: Option<f64>,
        slot: Option<u32>,
        binding: Option<ScanBinding>,
    ) -> HeapScanExec {
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(&c.name, c.ty.arrow(), c.nullable))
            .collect();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::new(Schema::new(fields))),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        HeapScanExec {
            target,
            columns,
            filter,
            keys: Vec::new(),
            partitions,
            rows,
            filtered_rows: None,
            indexes: Vec::new(),
            lookup: None,
            slot,
            binding,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The relation this scan reads.
    pub fn relid(&self) -> pg_sys::Oid {
        self.target.relid
    }

    /// The scan's slot, once assigned.
    pub fn slot(&self) -> Option<u32> {
        self.slot
    }

    /// This scan with its slot number.
    pub fn with_slot(&self, slot: u32) -> HeapScanExec {
        HeapScanExec {
            slot: Some(slot),
            ..self.clone()
        }
    }

    /// This scan keeping only rows whose output column `column` is among
    /// the keys `slot` will hold, once it holds them; None if the column is
    /// not an integer (the keys are compared as 64-bit integers).
    pub fn with_key_filter(&self, column: usize, slot: Arc<KeySlot>) -> Option<HeapScanExec> {
        if !matches!(self.columns.get(column)?.ty, PgType::Int2 | PgType::Int4 | PgType::Int8) {
            return None;
        }
        let mut keys = self.keys.clone();
        keys.push((column, slot));
        Some(HeapScanExec { keys, ..self.clone() })
    }

    /// This scan looking up, in an index on output column `column`, the
    /// keys of a build side estimated at `build_rows` rows, if the table
    /// has such an index and the lookups cost at most a scan of the table
    /// ([`crate::plan::lookup`]); looking up `keys`. With `first_match`, each
    /// key's lookup stops at the first row kept.
    ///
    /// A key costs `ratio` scanned rows (a descent of the btree and a heap
    /// fetch), and each row fetched one more: the rows of one key mostly
    /// share a leaf and a heap page: a key with several rows costs about
    /// what a key with one does (measured: see benches/README.md, 'TPC-H
    /// SF1 in plain SQL').
    ///
    /// [`Keys::Divided`] lookups are taken whatever the estimate: the plan
    /// is the same as the scan's, so the scan counts the keys once they are
    /// published and looks them up only if that costs at most a scan
    /// ([`Lookup::max_keys`]). Postgres's estimate of a build side under a
    /// HAVING is often far off (TPC-H Q18: 57 orders found, hundreds of
    /// thousands estimated).
    pub fn with_lookup(
        &self,
        column: usize,
        build_rows: f64,
        ratio: f64,
        keys: Keys,
        first_match: bool,
    ) -> Option<HeapScanExec> {
        if self.lookup.is_some() {
            return None;
        }
        let attnum = self.columns.get(column)?.attnum;
        let index = self.indexes.iter().find(|i| i.attnum == attnum)?;
        let table = self.rows.filter(|r| *r > 0.0)?;
        // A scan whose rows are dropped by their key as it reads them (the
        // alternative to divided keys) reads rows faster than one feeding
        // a join (the alternative to a participant's own keys).
        let ratio = match keys {
            Keys::Own => ratio,
            Keys::Divided => ratio * KEY_FILTERED_SCAN_SPEEDUP,
        };
        let rows_per_key = if first_match { 1.0 } else { index.rows_per_key };
        let per_key = ratio + rows_per_key;
        let cost = build_rows * per_key;
        if cost > table && keys == Keys::Own {
            return None;
        }
        let share = (cost / table).min(1.0);
        let fetched = build_rows * rows_per_key;
        let kept = match (&self.filter, self.filtered_rows) {
            (None, _) => 1.0,
            (Some(_), Some(filtered)) => (filtered / table).min(1.0),
            (Some(_), None) => FILTERED,
        };
        Some(HeapScanExec {
            lookup: Some(Lookup {
                column,
                index: index.clone(),
                rows: fetched * kept,
                share,
                keys,
                first_match,
                max_keys: (keys == Keys::Divided).then(|| (table / per_key) as u64),
                slot: None,
            }),
            ..self.clone()
        })
    }

    /// What this scan costs as a share of reading its table whole: 1, or
    /// less for index lookups.
    pub fn reading_share(&self) -> f64 {
        self.lookup.as_ref().map_or(1.0, |l| l.share)
    }

    /// This lookup scan taking its keys from `slot`, if it looks up output
    /// column `column` and has no keys yet.
    pub fn with_lookup_keys(&self, column: usize, slot: Arc<KeySlot>) -> Option<HeapScanExec> {
        let lookup = self
            .lookup
            .as_ref()
            .filter(|l| l.column == column && l.slot.is_none())?;
        Some(HeapScanExec {
            lookup: Some(Lookup {
                slot: Some(slot),
                ..lookup.clone()
            }),
            ..self.clone()
        })
    }

    /// Estimated bytes of one projected row in Arrow.
    pub(super) fn row_width(&self) -> usize {
        self.columns
            .iter()
            .map(|c| match c.ty {
                PgType::Bool => 1,
                PgType::Int2 => 2,
                PgType::Int4 | PgType::Float4 | PgType::Oid | PgType::Date => 4,
                PgType::Numeric { .. } | PgType::Interval | PgType::Uuid => 16,
                PgType::Text | PgType::BpChar | PgType::Name | PgType::Bytea => 24,
                _ => 8,
            })
            .sum()
    }
}

impl DisplayAs for HeapScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        write!(f, "HeapScan: {} [{}]", self.target.name, names.join(", "))?;
        if let Some(filtered) = &self.filter {
            let exprs: Vec<String> = match filtered.filter.exprs.as_slice() {
                [one] => vec![one.to_string()],
                all => all.iter().map(|e| format!("({e})")).collect(),
            };
            write!(f, " filter=[{}]", exprs.join(" AND "))?;
            if let Some(rows) = self.filtered_rows {
                write!(f, " estimated_rows={rows:.0}")?;
            }
        }
        if let Some(lookup) = &self.lookup {
            let name = &self.columns[lookup.column].name;
            let first = if lookup.first_match { ", first match" } else { "" };
            let divided = if lookup.keys == Keys::Divided {
                ", keys divided"
            } else {
                ""
            };
            write!(f, " index_lookup=[{name} in {}{divided}{first}]", lookup.index.name)?;
            if let Some(max) = lookup.max_keys {
                write!(f, " scan_past_keys={max}")?;
            }
        }
        if !self.keys.is_empty() {
            let names: Vec<&str> = self.keys.iter().map(|(c, _)| self.columns[*c].name.as_str()).collect();
            write!(f, " join_keys=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for HeapScanExec {
    fn name(&self) -> &str {
        "HeapScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    /// pg_class's estimate, spread over the partitions (participants); a
    /// lookup scan the rows it is estimated to fetch; a filter keeps what
    /// Postgres estimates the query's conditions on the table keep or,
    /// without that, DataFusion's default share of the rows (what its
    /// FilterExec would have estimated). Each column's distinct values are
    /// those left among the rows kept ([`crate::plan::stats`]).
    fn statistics_from_inputs(&self, _inputs: &[Arc<Statistics>], args: &StatisticsArgs) -> Result<Arc<Statistics>> {
        let mut statistics = Statistics::new_unknown(&self.schema());
        if let Some(table) = self.rows {
            let kept = match (&self.lookup, &self.filter, self.filtered_rows) {
                (Some(lookup), _, _) => lookup.rows,
                (None, Some(_), Some(filtered)) => filtered,
                (None, Some(_), None) => table * FILTERED,
                (None, None, _) => table,
            };
            let share = match args.partition() {
                Some(_) => 1.0 / self.partitions.max(1) as f64,
                None => 1.0,
            };
            let rows = (kept * share) as usize;
            statistics.num_rows = Precision::Inexact(rows);
            statistics.total_byte_size = Precision::Inexact(rows * self.row_width());
            for (column, stats) in self.columns.iter().zip(&mut statistics.column_statistics) {
                if let Some(distinct) = column.distinct {
                    let left = crate::plan::stats::kept_distinct(distinct, table, kept * share);
                    stats.distinct_count = Precision::Inexact(left as usize);
                }
            }
        }
        Ok(Arc::new(statistics))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let Some(binding) = self.binding else {
            return exec_err!("weft: the scan of {} is not bound to a parallel scan", self.target.name);
        };
        let participant = context.session_config().get_extension::<Participant>();
        let lookup = match &self.lookup {
            None => None,
            Some(Lookup {
                slot: Some(slot),
                index,
                column,
                keys,
                first_match,
                max_keys,
                ..
            }) => Some(LookupRun {
                index: index.index,
                slot: Arc::clone(slot),
                // Divided keys: this participant's part of them.
                part: match (keys, &participant) {
                    (Keys::Divided, Some(p)) => (p.id() as usize, p.participants() as usize),
                    _ => (0, 1),
                },
                ty: self.columns[*column].ty,
                attnum: self.columns[*column].attnum,
                first_match: *first_match,
                max_keys: *max_keys,
            }),
            Some(_) => return exec_err!("weft: the index lookup of {} has no join keys", self.target.name),
        };
        let me = participant.as_ref().map(|p| p.id());
        let fail = u32::try_from(guc::TEST_FAIL_PARTICIPANT.get()).ok();
        let filter = self.filter.as_ref().map(|f| StreamFilter {
            filter: Arc::clone(&f.filter),
            inputs: f
                .inputs
                .iter()
                .map(|c| FilterInput {
                    attnum: c.attnum,
                    name: c.name.clone(),
                })
                .collect(),
        });
        let spec = StreamSpec {
            schema: self.schema(),
            table: self.target.name.clone(),
            binding,
            columns: self.columns.iter().map(|c| (c.attnum, c.ty)).collect(),
            filter,
            keys: self
                .keys
                .iter()
                .map(|(c, slot)| (self.columns[*c].attnum, Arc::clone(slot)))
                .collect(),
            lookup,
            fail: me.is_some() && me == fail,
        };
        Ok(Box::pin(HeapStream::new(spec, &self.metrics, partition)))
    }
}

/// A btree index a scan can look keys up in: its first key column is an
/// integer column of the table, compared by the type's default operator
/// class, and it covers every row (not partial, no expressions).
#[derive(Clone, Debug, PartialEq)]
pub struct LookupIndex {
    /// The indexed column's attribute number.
    pub attnum: i16,
    /// The index.
    pub index: pg_sys::Oid,
    /// Its name, for EXPLAIN.
    pub name: String,
    /// Rows per distinct value of the column, from the table's statistics
    /// (1 for a unique index on the column alone).
    pub rows_per_key: f64,
}

/// Where the keys an index lookup scan looks up come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// This participant's own share of the build side: the join is run
    /// partitioned, each participant joining its build rows with their
    /// matches.
    Own,
    /// The whole build side, which every participant holds (broadcast),
    /// its keys divided among the participants: each row of the table is
    /// fetched by one participant only, as a scan's share would be.
    Divided,
}
