//! One participant's share of a parallel heap scan, as Arrow batches.
//!
//! Every participant binds the scan to its own opened relation and to the
//! scan's shared state, a Postgres parallel heap scan the leader set up in
//! the section's segment ([`ScanBinding`]): participants take blocks from
//! it as they go, so together they read the table once, under the
//! leader's snapshot (which the parallel scan carries).
//!
//! A scan reads the projected columns of [`BATCH_ROWS`] rows per batch
//! straight into Arrow builders ([`crate::types::ColumnReader`]), walking
//! each page's tuples in Rust ([`crate::storage::deform`]) or, where that
//! walk cannot serve, through Postgres's slot; an index lookup scan reads
//! its rows by key ([`crate::storage::probe`]). Every Postgres call is
//! made on the participant's backend thread (its runtime is
//! current-thread; pgrx refuses any other thread) through
//! [`crate::pgcall::call`], so a Postgres error becomes the query's error.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{exec_err, DataFusionError, Result};
use datafusion::execution::RecordBatchStream;
use datafusion::physical_plan::metrics::{BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder};
use futures::Stream;
use pgrx::pg_sys;

use crate::error::Error;
use crate::guc;
use crate::pgcall;
use crate::storage::deform::{self, Layout};
use crate::storage::filter::{self, ScanFilter};
use crate::storage::keys::{KeySet, KeySlot};
use crate::storage::prefetch;
use crate::storage::probe::{self, IndexProbe};
use crate::types::{ColumnReader, PgType};

/// Rows per batch a scan produces.
pub const BATCH_ROWS: usize = 8192;

/// Tuples a filtered scan examines per batch at most (a batch may then
/// hold fewer rows than [`BATCH_ROWS`]; the scan has not ended until a
/// batch comes back empty with no page left).
const EXAMINED_ROWS: usize = 4 * BATCH_ROWS;

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

/// What an index lookup scan looks up, and where.
pub struct LookupRun {
    /// The btree index.
    pub index: pg_sys::Oid,
    /// Where the join publishes the keys.
    pub slot: Arc<KeySlot>,
    /// The part of the keys this participant looks up: (its number, of
    /// how many); (0, 1) for all.
    pub part: (usize, usize),
    /// The looked up column's type.
    pub ty: PgType,
    /// The looked up column's attribute number.
    pub attnum: i16,
    /// One row per key is enough.
    pub first_match: bool,
    /// Past this many keys, the scan reads its share of the table
    /// instead, keeping the rows with one of the keys.
    pub max_keys: Option<u64>,
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
    ahead: prefetch::Lookahead,
}

/// One participant's share of a parallel heap scan, as batches.
pub struct HeapStream {
    schema: SchemaRef,
    /// The table's name, for messages.
    table: String,
    binding: ScanBinding,
    readers: Vec<(i16, ColumnReader)>,
    /// The last attribute read (by a reader or the filter).
    last_attnum: i16,
    filter: Option<StreamFilter>,
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

/// A scan's filter and the attributes it reads.
pub struct StreamFilter {
    /// The filter.
    pub filter: Arc<ScanFilter>,
    /// Its inputs, in order.
    pub inputs: Vec<FilterInput>,
}

/// A column a scan filter reads.
pub struct FilterInput {
    /// Its attribute number.
    pub attnum: i16,
    /// Its name, for messages.
    pub name: String,
}

/// What one participant's share of a heap scan reads, and how.
pub struct StreamSpec {
    /// The batches' schema: one field per column.
    pub schema: SchemaRef,
    /// The table's name, for messages.
    pub table: String,
    /// The opened relation and the parallel scan's shared state.
    pub binding: ScanBinding,
    /// Each output column's attribute number and type.
    pub columns: Vec<(i16, PgType)>,
    /// The conditions rows must meet, evaluated in the walk.
    pub filter: Option<StreamFilter>,
    /// Join keys: the attribute, and the keys its values must be among.
    pub keys: Vec<(i16, Arc<KeySlot>)>,
    /// For an index lookup scan: what it looks up, and where.
    pub lookup: Option<LookupRun>,
    /// Raise an ERROR when asked for a batch (weft.test_fail_participant).
    pub fail: bool,
}

impl HeapStream {
    /// The stream of `spec`'s share of the scan, counting into `metrics`
    /// under `partition`.
    pub fn new(spec: StreamSpec, metrics: &ExecutionPlanMetricsSet, partition: usize) -> HeapStream {
        let inputs: Vec<i16> = spec
            .filter
            .iter()
            .flat_map(|f| f.inputs.iter().map(|c| c.attnum))
            .collect();
        let last_attnum = spec
            .columns
            .iter()
            .map(|(attnum, _)| *attnum)
            .chain(inputs.iter().copied())
            .max()
            .unwrap_or(0);
        HeapStream {
            schema: spec.schema,
            table: spec.table,
            binding: spec.binding,
            walk: deform::Walk::new(spec.columns.len(), last_attnum.max(0) as usize),
            readers: spec
                .columns
                .iter()
                .map(|(attnum, ty)| (*attnum, ColumnReader::new(*ty, BATCH_ROWS)))
                .collect(),
            last_attnum,
            filter: spec.filter,
            keys: spec.keys,
            inputs,
            scratch: filter::Scratch::default(),
            layout: None,
            pages: Pages::default(),
            open: None,
            lookup: spec.lookup,
            probe: None,
            probed: MetricBuilder::new(metrics).counter("keys_looked_up", partition),
            leaves: MetricBuilder::new(metrics).counter("index_leaves_read", partition),
            descents: MetricBuilder::new(metrics).counter("index_descents", partition),
            done: false,
            fail: spec.fail,
            metrics: BaselineMetrics::new(metrics, partition),
            examined: MetricBuilder::new(metrics).counter("tuples_examined", partition),
        }
    }
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
            .map(|(_, reader)| reader.finish().map_err(Error::into_datafusion))
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
                        prefetch::prefetch_page((*scan).rs_cbuf);
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
                let ahead = self.pages.next + prefetch::PREFETCH_AHEAD;
                if ahead < self.pages.count {
                    // SAFETY: a visible tuple of the pinned current page.
                    unsafe { prefetch::prefetch_tuple((*scan).rs_cbuf, (*scan).rs_vistuples[ahead]) };
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
                return Err(column_error(e, name, &self.table));
            }
            if let Err((reader, e)) = flushed {
                let name = self.schema.field(reader).name();
                return Err(column_error(e, name, &self.table));
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
                if let Some(StreamFilter { inputs, filter }) = &self.filter {
                    let fetch = |j: usize| {
                        let at = (inputs[j].attnum - 1) as usize;
                        (*values.add(at), *nulls.add(at))
                    };
                    match filter.passes(&mut self.scratch, fetch) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err((j, e)) => return Err(column_error(e, &inputs[j].name, &self.table)),
                    }
                }
                for (i, (attnum, reader)) in self.readers.iter_mut().enumerate() {
                    let at = (*attnum - 1) as usize;
                    if let Err(e) = reader.push(*values.add(at), *nulls.add(at)) {
                        let name = self.schema.field(i).name();
                        return Err(column_error(e, name, &self.table));
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

/// A failure reading column `name` of `table`, as the query's error.
fn column_error(e: Error, name: &str, table: &str) -> DataFusionError {
    e.context(format_args!("column \"{name}\" of {table}"))
        .into_datafusion()
}
