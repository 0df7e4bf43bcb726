//! Postgres heap tables as DataFusion sources.
//!
//! [`HeapTable`] is a table as the leader plans with it (its columns as
//! Arrow fields, its size from pg_class). Its scan, [`HeapScanExec`],
//! travels in the shipped plan as the relation's OID and relfilenode, the
//! projected columns and a scan slot number ([`HeapCodec`]). Every
//! participant binds the slot to its own opened relation and to the scan's
//! shared state, a Postgres parallel heap scan the leader set up in the
//! section's segment ([`ScanBinding`]): participants take blocks from it
//! as they go, so together they read the table once, under the leader's
//! snapshot (which the parallel scan carries).
//!
//! A scan reads the projected columns of 8192 rows per batch straight into
//! Arrow builders ([`crate::types::ColumnReader`]). Every Postgres call is
//! made on the participant's backend thread (its runtime is
//! current-thread; pgrx refuses any other thread) through
//! [`crate::pgcall::call`], so a Postgres error becomes the query's error.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{exec_err, internal_datafusion_err, DataFusionError, Result, Statistics};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::TableProviderFilterPushDown;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use datafusion_proto::logical_plan::from_proto::parse_expr;
use datafusion_proto::logical_plan::to_proto::serialize_expr;
use datafusion_proto::logical_plan::DefaultLogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use datafusion_proto::protobuf::LogicalExprNode;
use futures::Stream;
use pgrx::pg_sys;
use prost::Message;
use weft_runtime::Participant;

use crate::guc;
use crate::pgcall;
use crate::plan::estimate;
use crate::plan::lookup::{Keys, LookupIndex};
use crate::storage::deform::{self, Layout};
use crate::storage::filter::{self, FilterColumn, ScanFilter};
use crate::storage::keys::{KeySet, KeySlot};
use crate::storage::probe::{self, IndexProbe};
use crate::types::{ColumnReader, PgType};

/// Rows per batch a scan produces.
pub const BATCH_ROWS: usize = 8192;

/// The share of a table's rows a filter keeps, when Postgres has not
/// estimated it: what DataFusion's FilterExec would have estimated.
const FILTERED: f64 = 0.2;

/// How many times faster a scan reads rows when their join key drops them
/// in the walk ([`crate::plan::keys`]) than when they go to the join, for
/// [`HeapScanExec::with_lookup`]'s divided keys. TPC-H Q7 and Q8 looked
/// up 121 and 91 thousand keys at 2.5 µs each (lineitem's scan, dropping
/// rows by key, takes about 35 ns a row: 70 rows a key), where
/// `weft.index_lookup_ratio`'s 32 is measured against joins.
const KEY_FILTERED_SCAN_SPEEDUP: f64 = 3.0;

/// Tuples a filtered scan examines per batch at most (a batch may then
/// hold fewer rows than [`BATCH_ROWS`]; the scan has not ended until a
/// batch comes back empty with no page left).
const EXAMINED_ROWS: usize = 4 * BATCH_ROWS;

/// A column of a heap table.
#[derive(Clone, Debug)]
pub struct HeapColumn {
    /// Its attribute number (1-based).
    pub attnum: i16,
    /// Its name.
    pub name: String,
    /// Its type, as Postgres declares it.
    pub typid: pg_sys::Oid,
    /// Its type modifier (-1 for none).
    pub typmod: i32,
    /// Its type as weft reads it, or why weft cannot.
    pub ty: Result<PgType, String>,
    /// Whether it may hold NULLs (no NOT NULL constraint).
    pub nullable: bool,
    /// `format_type` of its type, for messages.
    pub type_name: String,
    /// Its distinct values in the whole table ([`crate::plan::stats`]).
    pub distinct: Option<f64>,
}

/// A heap table as the leader plans with it.
#[derive(Debug)]
pub struct HeapTable {
    /// The relation.
    pub relid: pg_sys::Oid,
    /// Its storage's number, which participants check.
    pub relfilenode: u32,
    /// Its (schema-qualified) name, for messages and EXPLAIN.
    pub name: String,
    /// Its live columns, in attribute order.
    pub columns: Vec<HeapColumn>,
    /// pg_class's row estimate (None before the first ANALYZE or VACUUM).
    pub rows: Option<f64>,
    /// Postgres's estimate of the rows the query's conditions on this
    /// table alone keep (plain SQL; see `translate::estimate`).
    pub filtered_rows: Option<f64>,
    /// The btree indexes a scan can look join keys up in.
    pub indexes: Vec<LookupIndex>,
    schema: SchemaRef,
}

impl HeapTable {
    /// The table over `columns` (live columns, in attribute order).
    pub fn new(
        relid: pg_sys::Oid,
        relfilenode: u32,
        name: String,
        columns: Vec<HeapColumn>,
        rows: Option<f64>,
    ) -> HeapTable {
        // A column weft cannot read keeps its place (so that its name
        // resolves) as a Null field; scanning it is refused with a reason.
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| {
                let ty = c.ty.as_ref().map_or(DataType::Null, |t| t.arrow());
                Field::new(&c.name, ty, c.nullable || c.ty.is_err())
            })
            .collect();
        HeapTable {
            relid,
            relfilenode,
            name,
            columns,
            rows,
            filtered_rows: None,
            indexes: Vec::new(),
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// The columns a scan filter may read: those weft can read, with their
    /// index in `columns`.
    fn filterable(&self) -> (Vec<usize>, Vec<FilterColumn<'_>>) {
        self.columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((i, (c.name.as_str(), *c.ty.as_ref().ok()?))))
            .unzip()
    }

    /// Column names by attribute number - 1; None for dropped columns.
    pub fn column_names(&self) -> Vec<Option<String>> {
        let last = self.columns.iter().map(|c| c.attnum).max().unwrap_or(0);
        let mut names = vec![None; last.max(0) as usize];
        for c in &self.columns {
            names[c.attnum as usize - 1] = Some(c.name.clone());
        }
        names
    }
}

#[async_trait]
impl TableProvider for HeapTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Exact for the filters the scan evaluates itself ([`crate::storage::filter`]).
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        let (_, columns) = self.filterable();
        Ok(filters
            .iter()
            .map(|f| match ScanFilter::supports(f, &columns) {
                true => TableProviderFilterPushDown::Exact,
                false => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let indexes: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.columns.len()).collect(),
        };
        let columns = indexes
            .iter()
            .map(|&i| self.scan_column(i))
            .collect::<Result<Vec<_>>>()?;
        // The filters DataFusion pushed (all of them exact: it no longer
        // evaluates them). They are compiled over the table's columns to
        // learn which they read, then over those columns alone, as every
        // participant compiles them from the shipped plan.
        let filter = match filters {
            [] => None,
            _ => {
                let (indexes, filterable) = self.filterable();
                let read = ScanFilter::compile(filters.to_vec(), &filterable).map_err(DataFusionError::Plan)?;
                let inputs = read
                    .inputs
                    .iter()
                    .map(|&i| self.scan_column(indexes[i]))
                    .collect::<Result<Vec<_>>>()?;
                Some(Filtered::new(filters.to_vec(), inputs).map_err(DataFusionError::Plan)?)
            }
        };
        let scan = HeapScanExec::new(
            ScanTarget {
                relid: self.relid,
                relfilenode: self.relfilenode,
                name: self.name.clone(),
            },
            columns,
            filter,
            state.config().target_partitions(),
            self.rows,
            None,
            None,
        );
        // Postgres's estimate from the Query (plain SQL), or from the
        // conditions DataFusion pushed (weft.query).
        let filtered_rows = match (self.filtered_rows, filters) {
            (Some(rows), _) => Some(rows),
            (None, []) => None,
            // SAFETY: the leader plans on its backend thread; the table is
            // open (resolved) for the whole statement.
            (None, filters) => unsafe { estimate::scan_rows(self.relid, &self.columns, filters) },
        };
        Ok(Arc::new(HeapScanExec {
            filtered_rows,
            indexes: self.indexes.clone(),
            ..scan
        }))
    }
}

impl HeapTable {
    /// Column `i` as a scan reads it, or why it cannot.
    fn scan_column(&self, i: usize) -> Result<ScanColumn> {
        let column = &self.columns[i];
        match &column.ty {
            Ok(ty) => Ok(ScanColumn {
                attnum: column.attnum,
                name: column.name.clone(),
                typid: column.typid,
                typmod: column.typmod,
                ty: *ty,
                nullable: column.nullable,
                distinct: column.distinct,
            }),
            Err(reason) => Err(DataFusionError::Plan(format!(
                "column \"{}\" of table {} has type {}, which weft cannot read: {reason}",
                column.name, self.name, column.type_name
            ))),
        }
    }
}

/// A scan's filter and the columns it reads (its inputs, in order).
#[derive(Clone, Debug)]
struct Filtered {
    inputs: Vec<ScanColumn>,
    filter: Arc<ScanFilter>,
}

impl Filtered {
    /// `exprs` compiled over `inputs` (the columns they read, in the order
    /// they read them).
    fn new(exprs: Vec<Expr>, inputs: Vec<ScanColumn>) -> Result<Filtered, String> {
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
struct ScanColumn {
    attnum: i16,
    name: String,
    typid: pg_sys::Oid,
    typmod: i32,
    ty: PgType,
    nullable: bool,
    /// Its distinct values in the whole table (planning only: not
    /// shipped).
    distinct: Option<f64>,
}

/// How a scan looks keys up in an index ([`crate::plan::lookup`]).
#[derive(Clone, Debug)]
struct Lookup {
    /// The output column looked up.
    column: usize,
    index: LookupIndex,
    /// The rows the lookups are estimated to fetch (of all participants).
    rows: f64,
    /// What the lookups cost as a share of scanning the table whole
    /// (planning only: the cost gate's).
    share: f64,
    /// Which keys each participant looks up.
    keys: Keys,
    /// Each key's lookup stops at the first row kept (a semi or anti join).
    first_match: bool,
    /// Divided keys: past this many, looking them up would cost more than
    /// scanning, and the scan reads its share of the table instead, keeping
    /// the rows with one of the keys. Every participant holds the same
    /// keys, so all decide alike (a participant looking up a part of the
    /// keys beside one scanning its blocks would miss rows or repeat them).
    max_keys: Option<u64>,
    /// Where the join publishes its build side's keys (linked after
    /// decoding, [`crate::plan::keys::link`]).
    slot: Option<Arc<KeySlot>>,
}

/// The relation a scan reads.
#[derive(Clone, Debug)]
struct ScanTarget {
    relid: pg_sys::Oid,
    relfilenode: u32,
    name: String,
}

/// A participant's hold on a shipped scan: its opened relation and the
/// scan's shared state in the section's segment.
#[derive(Clone, Copy, Debug)]
pub struct ScanBinding {
    /// The relation, opened by this participant.
    pub rel: pg_sys::Relation,
    /// The parallel scan's shared state.
    pub pscan: pg_sys::ParallelTableScanDesc,
}

// SAFETY: a binding is only dereferenced by Postgres calls on the backend
// thread that made it (pgrx's guarded calls check the thread); the plan
// holding it must be Send + Sync to be an ExecutionPlan at all.
unsafe impl Send for ScanBinding {}
// SAFETY: as above.
unsafe impl Sync for ScanBinding {}

/// Scans one heap table as a share of a parallel scan; see the module docs.
#[derive(Clone, Debug)]
pub struct HeapScanExec {
    target: ScanTarget,
    columns: Vec<ScanColumn>,
    /// The filter the scan evaluates, if DataFusion pushed one.
    filter: Option<Filtered>,
    /// Join keys the scan's rows must be among ([`crate::plan::keys`]): an
    /// output column, and where the join publishes its build side's keys.
    keys: Vec<(usize, Arc<KeySlot>)>,
    partitions: usize,
    /// The table's rows, as pg_class estimates them.
    rows: Option<f64>,
    /// Postgres's estimate of the rows the query's conditions on the table
    /// keep (the scan's size in planning, shown by EXPLAIN).
    filtered_rows: Option<f64>,
    /// The table's indexes a lookup could use (planning only).
    indexes: Vec<LookupIndex>,
    /// Set when the scan reads the table through an index, looking up a
    /// join's keys, instead of scanning its share of the blocks.
    lookup: Option<Lookup>,
    /// The scan's slot in the section's payload (set by the leader once
    /// the plan is final).
    slot: Option<u32>,
    /// This participant's binding of the slot (set when decoded).
    binding: Option<ScanBinding>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl HeapScanExec {
    fn new(
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
    /// share a leaf and a heap page. Measured here: TPC-H Q21's 35
    /// thousand orders fetched their 171 thousand lineitems in 118 ms, 3.4
    /// µs a key, as Q4's 57 thousand fetched their first lineitem in 4 µs
    /// each.
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
    fn row_width(&self) -> usize {
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
        let inputs: Vec<i16> = self
            .filter
            .iter()
            .flat_map(|f| f.inputs.iter().map(|c| c.attnum))
            .collect();
        let last_attnum = self
            .columns
            .iter()
            .map(|c| c.attnum)
            .chain(inputs.iter().copied())
            .max()
            .unwrap_or(0);
        Ok(Box::pin(HeapStream {
            schema: self.schema(),
            table: self.target.name.clone(),
            binding,
            readers: self
                .columns
                .iter()
                .map(|c| (c.attnum, ColumnReader::new(c.ty, BATCH_ROWS)))
                .collect(),
            last_attnum,
            filter: self.filter.clone(),
            keys: self
                .keys
                .iter()
                .map(|(c, slot)| (self.columns[*c].attnum, Arc::clone(slot)))
                .collect(),
            inputs,
            scratch: filter::Scratch::default(),
            layout: None,
            pages: Pages::default(),
            walk: deform::Walk::new(self.columns.len(), last_attnum.max(0) as usize),
            open: None,
            lookup,
            probe: None,
            probed: MetricBuilder::new(&self.metrics).counter("keys_looked_up", partition),
            leaves: MetricBuilder::new(&self.metrics).counter("index_leaves_read", partition),
            descents: MetricBuilder::new(&self.metrics).counter("index_descents", partition),
            done: false,
            fail: me.is_some() && me == fail,
            metrics: BaselineMetrics::new(&self.metrics, partition),
            examined: MetricBuilder::new(&self.metrics).counter("tuples_examined", partition),
        }))
    }
}

/// What an index lookup scan looks up, and where.
struct LookupRun {
    index: pg_sys::Oid,
    slot: Arc<KeySlot>,
    /// The part of the keys this participant looks up: (its number, of
    /// how many); (0, 1) for all.
    part: (usize, usize),
    /// The looked up column's type and attribute number.
    ty: PgType,
    attnum: i16,
    /// One row per key is enough.
    first_match: bool,
    /// [`Lookup::max_keys`].
    max_keys: Option<u64>,
}

/// A running scan's Postgres state.
#[derive(Clone, Copy)]
struct OpenScan {
    scan: pg_sys::TableScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
    /// Holds the scan and its slot; deleted at the end.
    memory: pg_sys::MemoryContext,
    /// Detoasted values of the current batch; reset per batch.
    batch_memory: pg_sys::MemoryContext,
}

/// The page-at-a-time read's position: the visible tuples of the current
/// page (`heapgetpage` lists them in the scan descriptor).
#[derive(Default)]
struct Pages {
    /// The parallel block scan's worker state is initialized.
    started: bool,
    /// No block (or, on Postgres's slot path, no tuple) is left for this
    /// participant.
    finished: bool,
    /// The next of the current page's visible tuples, and their count.
    next: usize,
    count: usize,
    /// The page expected next, brought into the cache as this one is
    /// walked.
    ahead: deform::Lookahead,
}

/// One participant's share of a parallel heap scan, as batches.
struct HeapStream {
    schema: SchemaRef,
    /// The table's name, for messages.
    table: String,
    binding: ScanBinding,
    readers: Vec<(i16, ColumnReader)>,
    /// The last attribute read (by a reader or the filter).
    last_attnum: i16,
    filter: Option<Filtered>,
    /// Join keys: the attribute, and the keys its values must be among.
    keys: Vec<(i16, Arc<KeySlot>)>,
    /// The attribute each filter input reads.
    inputs: Vec<i16>,
    /// The filter's decoded inputs (Postgres's path).
    scratch: filter::Scratch,
    /// How to read tuples in Rust (None: through Postgres's slot).
    layout: Option<Layout>,
    /// Where the page-at-a-time read is.
    pages: Pages,
    /// The page walk's working space.
    walk: deform::Walk,
    open: Option<OpenScan>,
    /// An index lookup scan's plan, and its walk once begun.
    lookup: Option<LookupRun>,
    probe: Option<IndexProbe>,
    /// Keys looked up, and the index leaves read and descents from its
    /// root that took, when walked ([`crate::storage::btree`]) (EXPLAIN ANALYZE).
    probed: Count,
    leaves: Count,
    descents: Count,
    done: bool,
    /// Raise an ERROR when asked for a batch (weft.test_fail_participant).
    fail: bool,
    /// Rows output and time spent (EXPLAIN ANALYZE).
    metrics: BaselineMetrics,
    /// Visible tuples looked at, passing or not (EXPLAIN ANALYZE).
    examined: Count,
}

// SAFETY: the raw Postgres pointers are used only on the backend thread
// that created them (pgrx's guarded calls check it); DataFusion requires
// streams to be Send, and a current-thread runtime never moves them.
unsafe impl Send for HeapStream {}

impl HeapStream {
    /// Reads the next batch; None at the end of this participant's share.
    ///
    /// # Safety
    /// On the backend thread, inside [`pgcall::call`].
    unsafe fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.fail {
            // At the first batch asked for: every participant asks at least
            // once, even one whose share turns out empty.
            let me = guc::TEST_FAIL_PARTICIPANT.get();
            pgrx::error!("injected failure in participant {me} (weft.test_fail_participant)")
        }
        let open = match self.open {
            Some(open) => open,
            // SAFETY: per the caller.
            None => unsafe { self.begin() },
        };
        // SAFETY: per the caller; the memory contexts and the scan are ours
        // and alive until `end`.
        let rows = unsafe {
            let previous = pg_sys::MemoryContextSwitchTo(open.batch_memory);
            let filled = if self.layout.is_some() {
                self.fill_pages(open)
            } else {
                self.fill(open)
            };
            pg_sys::MemoryContextSwitchTo(previous);
            pg_sys::MemoryContextReset(open.batch_memory);
            filled?
        };
        if rows == 0 && self.pages.finished {
            return Ok(None);
        }
        let columns = self
            .readers
            .iter_mut()
            .map(|(_, reader)| reader.finish().map_err(DataFusionError::Execution))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(Some(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?))
    }

    /// Begins this participant's share of the parallel scan.
    ///
    /// # Safety
    /// On the backend thread, inside [`pgcall::call`].
    unsafe fn begin(&mut self) -> OpenScan {
        // SAFETY: per the caller; the binding's relation is open and locked
        // for the whole run, its pscan initialized by the leader before
        // any participant started.
        let open = unsafe {
            let memory = pg_sys::AllocSetContextCreateInternal(
                pg_sys::TopTransactionContext,
                c"weft heap scan".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            );
            let batch_memory = pg_sys::AllocSetContextCreateInternal(
                memory,
                c"weft heap scan batch".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            );
            let previous = pg_sys::MemoryContextSwitchTo(memory);
            let scan = pg_sys::table_beginscan_parallel(self.binding.rel, self.binding.pscan);
            let slot = pg_sys::table_slot_create(self.binding.rel, std::ptr::null_mut());
            pg_sys::MemoryContextSwitchTo(previous);
            OpenScan {
                scan,
                slot,
                memory,
                batch_memory,
            }
        };
        self.open = Some(open);
        if let Some(lookup) = &self.lookup {
            // The join has read its build side whole before asking its
            // probe side for rows.
            let Some(keys) = lookup.slot.get() else {
                pgrx::error!(
                    "weft: the index lookup of {} began before its join keys were known",
                    self.table
                )
            };
            if lookup.max_keys.is_some_and(|max| keys.len() as u64 > max) {
                // Too many keys to look up: this participant reads its
                // share of the table, keeping the rows with a key, as
                // every participant does (they hold the same keys).
                self.keys.push((lookup.attnum, Arc::clone(&lookup.slot)));
                self.lookup = None;
            } else {
                // SAFETY: per the caller; the heap scan registered its
                // snapshot, the leader's, and keeps it until `end`.
                self.probe = Some(unsafe {
                    IndexProbe::begin(
                        self.binding.rel,
                        lookup.index,
                        (*open.scan).rs_snapshot,
                        probe::divide(keys.sorted(), lookup.part.0, lookup.part.1),
                        lookup.ty,
                        lookup.first_match,
                        open.memory,
                    )
                });
                // Lookups read through Postgres's slot.
                return open;
            }
        }
        // SAFETY: the relation is open; its descriptor has every attribute.
        self.layout = unsafe {
            Layout::new(
                (*self.binding.rel).rd_att,
                self.last_attnum,
                &self.readers,
                &self.inputs,
                self.filter.as_ref().map(|f| &*f.filter),
                &self.keys.iter().map(|(attnum, _)| *attnum).collect::<Vec<_>>(),
            )
        };
        open
    }

    /// Reads up to a batch of rows into the readers, a page at a time
    /// ([`crate::storage::deform`]); the rows read. With a filter, it stops after
    /// [`EXAMINED_ROWS`] tuples even if fewer passed (possibly none), so that
    /// a batch takes about as long with a filter as without one.
    ///
    /// # Safety
    /// On the backend thread, inside [`pgcall::call`], `open` alive and
    /// `self.layout` set.
    unsafe fn fill_pages(&mut self, open: OpenScan) -> Result<usize> {
        const INVALID_BLOCK: pg_sys::BlockNumber = pg_sys::BlockNumber::MAX;
        let Some(layout) = &self.layout else {
            return exec_err!("weft: a page read without a layout");
        };
        let scan = open.scan.cast::<pg_sys::HeapScanDescData>();
        let rel = self.binding.rel;
        let pscan = self.binding.pscan.cast::<pg_sys::ParallelBlockTableScanDescData>();
        let filter = self.filter.as_ref().map(|f| &*f.filter);
        // The join keys published so far (a join's build side may finish
        // while this scan runs).
        let keys: Vec<Option<&KeySet>> = self.keys.iter().map(|(_, slot)| slot.get()).collect();
        // No column read and nothing to test (count(*)): the tuples need not
        // be looked at. (A filter reading no column is a constant, tested
        // per tuple all the same.)
        let blind = layout.is_empty() && filter.is_none();
        let mut rows = 0;
        let mut examined = 0;
        while rows < BATCH_ROWS && examined < EXAMINED_ROWS {
            if self.pages.next >= self.pages.count {
                if self.pages.finished {
                    break;
                }
                // SAFETY: per the caller: the scan is a parallel heap scan
                // of `rel` over `pscan`, in page mode (an MVCC snapshot);
                // this is heapgettup_pagemode's walk over its blocks.
                let block = unsafe {
                    let worker = (*scan).rs_parallelworkerdata;
                    if !self.pages.started {
                        pg_sys::table_block_parallelscan_startblock_init(rel, worker, pscan);
                        self.pages.started = true;
                    }
                    pg_sys::table_block_parallelscan_nextpage(rel, worker, pscan)
                };
                if block == INVALID_BLOCK {
                    self.pages.finished = true;
                    break;
                }
                // SAFETY: as above; pins the page (the buffer the
                // lookahead found for it, if it still holds it) and lists
                // its visible tuples under the scan's snapshot.
                unsafe { crate::storage::page::read_page(scan, block, self.pages.ahead.recent(block)) };
                self.pages.next = 0;
                // SAFETY: as above.
                self.pages.count = unsafe { (*scan).rs_ntuples }.max(0) as usize;
                // SAFETY: as above.
                unsafe { count_returned(rel, self.pages.count) };
                if !blind {
                    // SAFETY: read_page pinned the page; the scan covers
                    // rs_nblocks blocks of `rel`.
                    unsafe {
                        deform::prefetch_page((*scan).rs_cbuf);
                        if block + 1 < (*scan).rs_nblocks {
                            self.pages.ahead.aim(rel, block + 1, self.pages.count, (*scan).rs_cbuf);
                        }
                    }
                }
                continue;
            }
            if blind {
                let take = (self.pages.count - self.pages.next).min(BATCH_ROWS - rows);
                self.pages.next += take;
                rows += take;
                examined += take;
                continue;
            }
            // This page's next visible tuples, as many as the batch takes,
            // column by column, then to the readers (while the page is
            // pinned: the values point into it).
            let mut deformed = Ok(());
            while self.pages.next < self.pages.count && rows < BATCH_ROWS && !self.walk.is_full() {
                self.pages.ahead.step();
                let ahead = self.pages.next + deform::PREFETCH_AHEAD;
                if ahead < self.pages.count {
                    // SAFETY: a visible tuple of the pinned current page.
                    unsafe { deform::prefetch_tuple((*scan).rs_cbuf, (*scan).rs_vistuples[ahead]) };
                }
                // SAFETY: a visible tuple of the pinned current page.
                let passed = unsafe {
                    let (tuple, len) = deform::page_tuple((*scan).rs_cbuf, (*scan).rs_vistuples[self.pages.next]);
                    layout.deform(tuple, len, &mut self.walk, filter, &keys)
                };
                self.pages.next += 1;
                examined += 1;
                match passed {
                    Ok(passed) => rows += usize::from(passed),
                    Err(e) => {
                        deformed = Err(e);
                        break;
                    }
                }
            }
            // SAFETY: the values point into the still pinned page.
            let flushed = unsafe { self.walk.flush(&mut self.readers) };
            // The readers copied what they keep: the values detoasted for
            // these tuples (also those the filter turned away) are freed
            // now, not when the batch ends, as Postgres frees them tuple
            // by tuple. Cheap when nothing was allocated (a reset context
            // is not reset again).
            // SAFETY: the batch's own context, current here, holding
            // nothing that outlives the staged tuples.
            unsafe { pg_sys::MemoryContextReset(open.batch_memory) };
            if let Err((name, e)) = deformed {
                return exec_err!("column \"{name}\" of {}: {e}", self.table);
            }
            if let Err((reader, e)) = flushed {
                let name = self.schema.field(reader).name();
                return exec_err!("column \"{name}\" of {}: {e}", self.table);
            }
        }
        self.examined.add(examined);
        Ok(rows)
    }

    /// Reads up to a batch of rows into the readers; the rows read.
    ///
    /// # Safety
    /// On the backend thread, inside [`pgcall::call`], `open` alive.
    unsafe fn fill(&mut self, open: OpenScan) -> Result<usize> {
        if self.pages.finished {
            return Ok(0);
        }
        let mut rows = 0;
        let mut examined = 0;
        while rows < BATCH_ROWS && examined < EXAMINED_ROWS {
            // SAFETY: per the caller; the slot belongs to the scan's
            // relation.
            let found = match &mut self.probe {
                // SAFETY: as above; the probe is this scan's.
                Some(probe) => unsafe { probe.next(open.slot) },
                // SAFETY: as above.
                None => unsafe {
                    pg_sys::heap_getnextslot(open.scan, pg_sys::ScanDirection::ForwardScanDirection, open.slot)
                },
            };
            if !found {
                self.pages.finished = true;
                break;
            }
            examined += 1;
            // SAFETY: as above; deforming up to the last attribute read
            // makes tts_values/tts_isnull valid up to it.
            unsafe {
                if (*open.slot).tts_nvalid < self.last_attnum {
                    pg_sys::slot_getsomeattrs_int(open.slot, i32::from(self.last_attnum));
                }
                let values = (*open.slot).tts_values;
                let nulls = (*open.slot).tts_isnull;
                if let Some(Filtered { inputs, filter }) = &self.filter {
                    let fetch = |j: usize| {
                        let at = (inputs[j].attnum - 1) as usize;
                        (*values.add(at), *nulls.add(at))
                    };
                    match filter.passes(&mut self.scratch, fetch) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err((j, e)) => return exec_err!("column \"{}\" of {}: {e}", inputs[j].name, self.table),
                    }
                }
                for (i, (attnum, reader)) in self.readers.iter_mut().enumerate() {
                    let at = (*attnum - 1) as usize;
                    if let Err(e) = reader.push(*values.add(at), *nulls.add(at)) {
                        let name = self.schema.field(i).name();
                        return Err(DataFusionError::Execution(format!(
                            "column \"{name}\" of {}: {e}",
                            self.table
                        )));
                    }
                }
            }
            rows += 1;
            if let Some(probe) = &mut self.probe {
                probe.matched();
            }
        }
        self.examined.add(examined);
        Ok(rows)
    }
}

impl Stream for HeapStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let elapsed = self.metrics.elapsed_compute().clone();
        let timer = elapsed.timer();
        // SAFETY: polled on the participant's backend thread (its runtime
        // is current-thread), inside pgcall::call.
        let next = pgcall::call("heap scan", || unsafe { self.next_batch() });
        timer.done();
        let poll = match next {
            Ok(Some(batch)) => Poll::Ready(Some(Ok(batch))),
            Ok(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Err(e) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
        };
        self.metrics.record_poll(poll)
    }
}

impl RecordBatchStream for HeapStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Drop for HeapStream {
    fn drop(&mut self) {
        let Some(open) = self.open.take() else { return };
        // After a Postgres error only the transaction's abort may clean up
        // (the failed call may have left buffers locked); it releases all
        // of this with the transaction's resources.
        if pgcall::error_pending() {
            return;
        }
        let probe = self.probe.take();
        if let Some(probe) = &probe {
            self.probed.add(probe.probed());
            let (leaves, descents) = probe.walked();
            self.leaves.add(leaves);
            self.descents.add(descents);
        }
        // SAFETY: on the backend thread (streams are dropped where they
        // ran); the scan, its probe and its memory are ours. An error is
        // kept and raised after the run.
        let _ = pgcall::call("end of a heap scan", || unsafe {
            if let Some(probe) = probe {
                probe.end();
            }
            pg_sys::ExecDropSingleTupleTableSlot(open.slot);
            pg_sys::heap_endscan(open.scan);
            pg_sys::MemoryContextDelete(open.memory);
            Ok(())
        });
    }
}

/// A [`HeapScanExec`] in a shipped plan.
#[derive(Clone, PartialEq, Message)]
struct ScanNode {
    #[prost(uint32, tag = "1")]
    relid: u32,
    #[prost(uint32, tag = "2")]
    relfilenode: u32,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(uint32, tag = "4")]
    slot: u32,
    #[prost(uint32, tag = "5")]
    partitions: u32,
    #[prost(double, optional, tag = "6")]
    rows: Option<f64>,
    #[prost(message, repeated, tag = "7")]
    columns: Vec<ColumnNode>,
    /// The filter's conjuncts, each a datafusion-proto LogicalExprNode.
    #[prost(bytes = "vec", repeated, tag = "8")]
    filters: Vec<Vec<u8>>,
    /// The columns the filter reads, in input order.
    #[prost(message, repeated, tag = "9")]
    inputs: Vec<ColumnNode>,
    /// Postgres's estimate of the rows the filter keeps (for EXPLAIN).
    #[prost(double, optional, tag = "10")]
    filtered_rows: Option<f64>,
    /// Set for an index lookup scan.
    #[prost(message, optional, tag = "11")]
    lookup: Option<LookupNode>,
}

/// A scan's [`Lookup`] in a shipped plan (its keys are linked after
/// decoding).
#[derive(Clone, PartialEq, Message)]
struct LookupNode {
    #[prost(uint32, tag = "1")]
    column: u32,
    #[prost(int32, tag = "2")]
    attnum: i32,
    #[prost(uint32, tag = "3")]
    index: u32,
    #[prost(string, tag = "4")]
    name: String,
    #[prost(double, tag = "5")]
    rows_per_key: f64,
    #[prost(double, tag = "6")]
    rows: f64,
    #[prost(bool, tag = "7")]
    first_match: bool,
    /// The keys divided among the participants ([`Keys::Divided`]).
    #[prost(bool, tag = "8")]
    divided: bool,
    #[prost(uint64, optional, tag = "9")]
    max_keys: Option<u64>,
}

impl ColumnNode {
    fn new(c: &ScanColumn) -> ColumnNode {
        ColumnNode {
            attnum: i32::from(c.attnum),
            name: c.name.clone(),
            typid: c.typid.to_u32(),
            typmod: c.typmod,
            nullable: c.nullable,
        }
    }

    fn decode(self) -> Result<ScanColumn> {
        let typid = pg_sys::Oid::from(self.typid);
        let ty = PgType::of(typid, self.typmod).map_err(DataFusionError::Execution)?;
        let attnum = i16::try_from(self.attnum).ok().filter(|a| *a > 0);
        let Some(attnum) = attnum else {
            return exec_err!("weft: a shipped scan names attribute {}", self.attnum);
        };
        Ok(ScanColumn {
            attnum,
            name: self.name,
            typid,
            typmod: self.typmod,
            ty,
            nullable: self.nullable,
            distinct: None,
        })
    }
}

#[derive(Clone, PartialEq, Message)]
struct ColumnNode {
    #[prost(int32, tag = "1")]
    attnum: i32,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(uint32, tag = "3")]
    typid: u32,
    #[prost(int32, tag = "4")]
    typmod: i32,
    #[prost(bool, tag = "5")]
    nullable: bool,
}

/// A shipped scan's slot: the relation it must read, as the leader saw it.
#[derive(Clone, Copy, Debug)]
pub struct SlotTarget {
    /// The relation.
    pub relid: pg_sys::Oid,
    /// Its storage's number when the leader planned.
    pub relfilenode: u32,
}

/// The sources' codec: encodes [`HeapScanExec`]s; decodes them bound to
/// this participant's `bindings` (by slot).
#[derive(Debug, Default)]
pub struct HeapCodec {
    bindings: Vec<(SlotTarget, ScanBinding)>,
    /// Scans without a slot encode as slot 0 (for comparing plans, not
    /// shipping them).
    unslotted: bool,
}

impl HeapCodec {
    /// A codec that binds decoded scans to `bindings`, slot i to entry i.
    pub fn new(bindings: Vec<(SlotTarget, ScanBinding)>) -> HeapCodec {
        HeapCodec {
            bindings,
            unslotted: false,
        }
    }

    /// A codec for comparing plans before their scans have slots
    /// ([`weft_runtime::ShareRepeated`]: two scans are the same when they
    /// read the same columns of the same relation the same way); what it
    /// encodes is never shipped.
    pub fn comparing() -> HeapCodec {
        HeapCodec {
            bindings: Vec::new(),
            unslotted: true,
        }
    }
}

impl PhysicalExtensionCodec for HeapCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        _converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let node = ScanNode::decode(buf).map_err(|e| internal_datafusion_err!("weft heap scan node: {e}"))?;
        let Some((target, binding)) = self.bindings.get(node.slot as usize) else {
            return exec_err!("weft: a shipped scan names slot {}, which the section lacks", node.slot);
        };
        if target.relid.to_u32() != node.relid || target.relfilenode != node.relfilenode {
            return exec_err!(
                "weft: the shipped scan of {} does not match its slot's relation",
                node.name
            );
        }
        let columns = node
            .columns
            .into_iter()
            .map(ColumnNode::decode)
            .collect::<Result<Vec<_>>>()?;
        let filter = match node.filters.is_empty() {
            true => None,
            false => {
                let exprs = node
                    .filters
                    .iter()
                    .map(|bytes| {
                        let proto = LogicalExprNode::decode(bytes.as_slice())
                            .map_err(|e| internal_datafusion_err!("weft scan filter: {e}"))?;
                        parse_expr(&proto, ctx, &DefaultLogicalExtensionCodec {})
                            .map_err(|e| internal_datafusion_err!("weft scan filter: {e}"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let inputs = node
                    .inputs
                    .into_iter()
                    .map(ColumnNode::decode)
                    .collect::<Result<Vec<_>>>()?;
                Some(Filtered::new(exprs, inputs).map_err(DataFusionError::Execution)?)
            }
        };
        let scan = HeapScanExec::new(
            ScanTarget {
                relid: pg_sys::Oid::from(node.relid),
                relfilenode: node.relfilenode,
                name: node.name,
            },
            columns,
            filter,
            node.partitions as usize,
            node.rows,
            Some(node.slot),
            Some(*binding),
        );
        let lookup = match node.lookup {
            None => None,
            Some(l) => {
                let column = l.column as usize;
                let attnum = i16::try_from(l.attnum).ok();
                if scan.columns.get(column).map(|c| Some(c.attnum)) != Some(attnum) {
                    return exec_err!(
                        "weft: the shipped index lookup of {} names a column it does not read",
                        scan.target.name
                    );
                }
                Some(Lookup {
                    column,
                    index: LookupIndex {
                        attnum: attnum.unwrap_or_default(),
                        index: pg_sys::Oid::from(l.index),
                        name: l.name,
                        rows_per_key: l.rows_per_key,
                    },
                    rows: l.rows,
                    share: 1.0,
                    keys: if l.divided { Keys::Divided } else { Keys::Own },
                    first_match: l.first_match,
                    max_keys: l.max_keys,
                    slot: None,
                })
            }
        };
        Ok(Arc::new(HeapScanExec {
            filtered_rows: node.filtered_rows,
            lookup,
            ..scan
        }))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(scan) = node.downcast_ref::<HeapScanExec>() else {
            return exec_err!("weft cannot ship {}", node.name());
        };
        let Some(slot) = scan.slot.or(self.unslotted.then_some(0)) else {
            return exec_err!("weft: the scan of {} has no slot", scan.target.name);
        };
        let message = ScanNode {
            relid: scan.target.relid.to_u32(),
            relfilenode: scan.target.relfilenode,
            name: scan.target.name.clone(),
            slot,
            partitions: scan.partitions as u32,
            rows: scan.rows,
            filtered_rows: scan.filtered_rows,
            lookup: scan.lookup.as_ref().map(|l| LookupNode {
                column: l.column as u32,
                attnum: i32::from(l.index.attnum),
                index: l.index.index.to_u32(),
                name: l.index.name.clone(),
                rows_per_key: l.index.rows_per_key,
                rows: l.rows,
                first_match: l.first_match,
                divided: l.keys == Keys::Divided,
                max_keys: l.max_keys,
            }),
            columns: scan.columns.iter().map(ColumnNode::new).collect(),
            filters: match &scan.filter {
                None => Vec::new(),
                Some(f) => f
                    .filter
                    .exprs
                    .iter()
                    .map(|e| {
                        serialize_expr(e, &DefaultLogicalExtensionCodec {})
                            .map(|proto| proto.encode_to_vec())
                            .map_err(|e| internal_datafusion_err!("weft scan filter: {e}"))
                    })
                    .collect::<Result<Vec<_>>>()?,
            },
            inputs: scan
                .filter
                .iter()
                .flat_map(|f| f.inputs.iter().map(ColumnNode::new))
                .collect(),
        };
        message
            .encode(buf)
            .map_err(|e| internal_datafusion_err!("weft heap scan node: {e}"))
    }
}

/// Counts `tuples` visible tuples of `rel` as returned by a sequential scan
/// (`pg_stat_user_tables.seq_tup_read`), as heap_getnextslot counts each
/// tuple it returns (pgstat.h, `pgstat_count_heap_getnext`).
///
/// # Safety
/// `rel` is open, on the backend thread.
unsafe fn count_returned(rel: pg_sys::Relation, tuples: usize) {
    // SAFETY: per the caller; the relation's statistics entry, made on
    // first use where statistics are collected for it.
    unsafe {
        if (*rel).pgstat_info.is_null() {
            if !(*rel).pgstat_enabled {
                return;
            }
            pg_sys::pgstat_assoc_relation(rel);
        }
        if let Some(status) = (*rel).pgstat_info.as_mut() {
            status.t_counts.t_tuples_returned += tuples as pg_sys::PgStat_Counter;
        }
    }
}

/// Opens `relid` (AccessShareLock, until the transaction ends) as a heap
/// table weft can scan, or says why weft cannot (closing it again).
/// Privileges are the caller's to check.
///
/// # Safety
/// On the backend thread.
pub unsafe fn open_table(relid: pg_sys::Oid) -> Result<(pg_sys::Relation, HeapTable), String> {
    // SAFETY: per the caller; table_open raises Postgres's own error for a
    // relation that does not exist.
    let rel = unsafe { pg_sys::table_open(relid, pg_sys::AccessShareLock as i32) };
    // SAFETY: an open relation's catalog row and descriptor.
    let table = unsafe { describe(relid, rel) };
    if table.is_err() {
        // SAFETY: opened above.
        unsafe { pg_sys::table_close(rel, pg_sys::NoLock as i32) };
    }
    table.map(|table| (rel, table))
}

/// The heap table `rel` is, or why weft cannot scan it.
///
/// # Safety
/// `rel` is open, on the backend thread.
pub unsafe fn describe(relid: pg_sys::Oid, rel: pg_sys::Relation) -> Result<HeapTable, String> {
    // SAFETY: per the caller.
    unsafe {
        let class = &*(*rel).rd_rel;
        let name = format!(
            "{}.{}",
            std::ffi::CStr::from_ptr(pg_sys::get_namespace_name(class.relnamespace)).to_string_lossy(),
            std::ffi::CStr::from_ptr(class.relname.data.as_ptr()).to_string_lossy()
        );
        let kind = class.relkind as u8;
        if kind != pg_sys::RELKIND_RELATION && kind != pg_sys::RELKIND_MATVIEW {
            return Err(format!(
                "{name} is not a table; weft reads tables and materialized views"
            ));
        }
        // Parallel workers cannot see the leader's local buffers, where a
        // temporary table's pages live.
        if class.relpersistence as u8 == pg_sys::RELPERSISTENCE_TEMP {
            return Err(format!(
                "{name} is a temporary table, which parallel workers cannot read"
            ));
        }
        // Postgres raises its own error when it reads one; the plan left
        // to it does.
        if !class.relispopulated {
            return Err(format!("materialized view {name} has not been populated"));
        }
        if pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, false)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
        {
            return Err(format!(
                "table {name} has row-level security enabled, and weft does not apply policies"
            ));
        }
        if (*rel).rd_tableam != pg_sys::GetHeapamTableAmRoutine() {
            return Err(format!("table {name} does not use the heap access method"));
        }
        let rows = (class.reltuples >= 0.0).then_some(f64::from(class.reltuples));
        let descriptor = &*(*rel).rd_att;
        let attributes = descriptor.attrs.as_slice(descriptor.natts as usize);
        let columns = attributes
            .iter()
            .filter(|a| !a.attisdropped)
            .map(|a| HeapColumn {
                attnum: a.attnum,
                name: std::ffi::CStr::from_ptr(a.attname.data.as_ptr())
                    .to_string_lossy()
                    .into_owned(),
                typid: a.atttypid,
                typmod: a.atttypmod,
                ty: PgType::of(a.atttypid, a.atttypmod),
                nullable: !a.attnotnull,
                type_name: std::ffi::CStr::from_ptr(pg_sys::format_type_with_typemod(a.atttypid, a.atttypmod))
                    .to_string_lossy()
                    .into_owned(),
                distinct: crate::plan::stats::distinct(relid, a.attnum, rows),
            })
            .collect();
        let relfilenode = (*rel).rd_node.relNode.to_u32();
        let mut table = HeapTable::new(relid, relfilenode, name, columns, rows);
        table.indexes = crate::plan::lookup::indexes(rel, rows);
        Ok(table)
    }
}
