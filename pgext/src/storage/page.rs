//! Reading a heap scan's next page: Postgres's `heapgetpage`, pinning
//! the buffer the walk's lookahead already found.
//!
//! A page's buffer is found through the buffer pool's mapping table, a
//! shared hash table whose every lookup is a cache miss or two: a large
//! share of a scan's time. The walk looks each page up
//! once to prefetch it while the page before it is walked
//! ([`crate::storage::prefetch::Lookahead`]), and `heapgetpage` looks it up again
//! to pin it. [`read_page`] pins that same buffer with
//! `ReadRecentBuffer`, which checks the buffer still holds the block (its
//! tag, under the buffer header's spinlock) instead of searching for it,
//! and falls back to the ordinary read when it does not. Everything else
//! is `heapgetpage`'s, step for step (PostgreSQL 15,
//! `src/backend/access/heap/heapam.c`): pruning, the share lock, the
//! old-snapshot test, visibility (every tuple of an all-visible page, as
//! Postgres takes it), serializable conflicts, and the buffer counts of
//! `pg_statio`.
//!
//! [`Fetch`] reads rows by TID for index lookups, as an index scan's heap
//! fetch does (`heapam_index_fetch_tuple`), pinning each page through the
//! buffer [`near`] the previous one: a table's consecutive blocks read in
//! order sit in consecutive buffers, and looking each fetched page up in
//! the mapping table would be a sizeable part of a lookup's cost.

use pgrx::pg_sys;

use crate::storage::buffer::{near, near_in};

/// Reads `block` into the page-mode heap scan `scan`, as `heapgetpage`
/// does: releases the previous page, pins this one (the buffer `recent`,
/// if it still holds the block), and lists its visible tuples in
/// `rs_vistuples` / `rs_ntuples`.
///
/// # Safety
/// `scan` is a heap scan in page mode (`SO_ALLOW_PAGEMODE`, an MVCC
/// snapshot) and `block` one of its relation's blocks, on the backend
/// thread, inside [`crate::pgcall::call`] (reading a page may raise an
/// ERROR). `recent` is any buffer number, or `InvalidBuffer` (0).
pub unsafe fn read_page(scan: pg_sys::HeapScanDesc, block: pg_sys::BlockNumber, recent: pg_sys::Buffer) {
    // SAFETY: per the caller; each step is heapgetpage's, on the scan's
    // own fields, with the page pinned from ReadRecentBuffer or
    // ReadBufferExtended on and share-locked while its line pointers are
    // read.
    unsafe {
        assert!(
            (*scan).rs_base.rs_flags & pg_sys::ScanOptions::SO_ALLOW_PAGEMODE != 0,
            "a heap scan read a page at a time outside page mode"
        );
        let rel = (*scan).rs_base.rs_rd;
        let snapshot = (*scan).rs_base.rs_snapshot;
        if (*scan).rs_cbuf != pg_sys::InvalidBuffer as pg_sys::Buffer {
            pg_sys::ReleaseBuffer((*scan).rs_cbuf);
            (*scan).rs_cbuf = pg_sys::InvalidBuffer as pg_sys::Buffer;
        }
        pgrx::check_for_interrupts!();
        (*scan).rs_cbuf = pin(rel, block, recent, (*scan).rs_strategy);
        (*scan).rs_cblock = block;
        let buffer = (*scan).rs_cbuf;
        let page = crate::storage::deform::page(buffer);
        let header = page.cast::<pg_sys::PageHeaderData>();
        prune(rel, buffer, header);
        pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_SHARE as i32);
        test_for_old_snapshot(snapshot, rel, header);
        let lines = page_max_offset(header);
        let all_visible =
            (u32::from((*header).pd_flags) & pg_sys::PD_ALL_VISIBLE) != 0 && !(*snapshot).takenDuringRecovery;
        // Outside SERIALIZABLE no read conflicts are tracked (Postgres's
        // check returns at once); inside, each tuple is reported as
        // heapgetpage reports it.
        let serializable = pg_sys::XactIsoLevel == pg_sys::XACT_SERIALIZABLE as i32;
        let items = std::ptr::addr_of!((*header).pd_linp).cast::<pg_sys::ItemIdData>();
        let mut visible = 0usize;
        for offset in 1..=lines {
            let item = &*items.add(usize::from(offset) - 1);
            if item.lp_flags() != pg_sys::LP_NORMAL {
                continue;
            }
            let valid = if all_visible && !serializable {
                true
            } else {
                let mut tuple = pg_sys::HeapTupleData {
                    t_len: item.lp_len(),
                    t_self: pg_sys::ItemPointerData::default(),
                    t_tableOid: (*rel).rd_id,
                    t_data: page.add(item.lp_off() as usize).cast_mut().cast(),
                };
                pgrx::itemptr::item_pointer_set_all(&mut tuple.t_self, block, offset);
                let valid = all_visible || pg_sys::HeapTupleSatisfiesVisibility(&mut tuple, snapshot, buffer);
                if serializable {
                    pg_sys::HeapCheckForSerializableConflictOut(valid, rel, &mut tuple, buffer, snapshot);
                }
                valid
            };
            if valid {
                // More tuples than a page holds: a corrupt page (the
                // panic is caught as the call's error).
                let Some(slot) = (*scan).rs_vistuples.get_mut(visible) else {
                    pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_UNLOCK as i32);
                    panic!("block {block} has more line pointers than a heap page holds");
                };
                *slot = offset;
                visible += 1;
            }
        }
        pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_UNLOCK as i32);
        (*scan).rs_ntuples = visible as i32;
    }
}

/// `heap_page_prune_opt`, which returns at once for a page no deleted or
/// updated tuple has marked prunable: the call is spared then. (Its one
/// other effect, under old_snapshot_threshold = 0, is a test hook.)
///
/// # Safety
/// `buffer` is a pinned, unlocked buffer of `rel` and `header` its page,
/// inside [`crate::pgcall::call`].
unsafe fn prune(rel: pg_sys::Relation, buffer: pg_sys::Buffer, header: *const pg_sys::PageHeaderData) {
    // SAFETY: per the caller; pd_prune_xid is a hint, read unlocked as
    // Postgres reads it.
    unsafe {
        if (*header).pd_prune_xid != pg_sys::InvalidTransactionId || pg_sys::old_snapshot_threshold == 0 {
            pg_sys::heap_page_prune_opt(rel, buffer);
        }
    }
}

/// `rel`'s pg_stat counts of this transaction, if they are kept
/// (`pgstat_should_count_relation`).
///
/// # Safety
/// `rel` is open, on the backend thread.
pub unsafe fn counts<'a>(rel: pg_sys::Relation) -> Option<&'a mut pg_sys::PgStat_TableCounts> {
    // SAFETY: per the caller; the relcache entry's link to its counts.
    unsafe {
        if (*rel).pgstat_info.is_null() && (*rel).pgstat_enabled {
            pg_sys::pgstat_assoc_relation(rel);
        }
        (*rel).pgstat_info.as_mut().map(|stats| &mut stats.t_counts)
    }
}

/// `block` of `rel` pinned: `recent` when it is a shared buffer still
/// holding the block (no mapping lookup), else read as always, with the
/// scan's strategy. (A temporary table's local buffers are read as
/// always: some PostgreSQL 15 minor releases look a local recent buffer
/// up among the shared ones.)
///
/// # Safety
/// As for [`read_page`].
pub unsafe fn pin(
    rel: pg_sys::Relation,
    block: pg_sys::BlockNumber,
    recent: pg_sys::Buffer,
    strategy: pg_sys::BufferAccessStrategy,
) -> pg_sys::Buffer {
    // SAFETY: per the caller.
    unsafe {
        if recent > 0 && pg_sys::ReadRecentBuffer((*rel).rd_node, pg_sys::ForkNumber::MAIN_FORKNUM, block, recent) {
            // ReadBufferExtended's pg_statio counts, which
            // ReadRecentBuffer leaves to its caller: a block fetched, and
            // found in the pool.
            if let Some(counts) = counts(rel) {
                counts.t_blocks_fetched += 1;
                counts.t_blocks_hit += 1;
            }
            return recent;
        }
        pg_sys::ReadBufferExtended(
            rel,
            pg_sys::ForkNumber::MAIN_FORKNUM,
            block,
            pg_sys::ReadBufferMode::RBM_NORMAL,
            strategy,
        )
    }
}

/// The block `tid` points into.
fn block_of(tid: pg_sys::ItemPointerData) -> pg_sys::BlockNumber {
    u32::from(tid.ip_blkid.bi_hi) << 16 | u32::from(tid.ip_blkid.bi_lo)
}

/// Rows of a heap relation read by TID, as an index scan reads them
/// (PostgreSQL 15's `heapam_index_fetch_tuple`): the page pinned (kept
/// from the previous row when it is the same block), pruned when first
/// pinned, share-locked while the row's HOT chain is searched for the
/// member the snapshot sees, and that member stored in the slot.
pub struct Fetch {
    rel: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    /// The page of the last row fetched, pinned (`InvalidBuffer` before
    /// the first), and its block.
    buffer: pg_sys::Buffer,
    block: pg_sys::BlockNumber,
}

impl Fetch {
    /// Fetches rows of `rel` as `snapshot` (an MVCC snapshot, which sees
    /// at most one member of a HOT chain) sees them.
    pub fn new(rel: pg_sys::Relation, snapshot: pg_sys::Snapshot) -> Fetch {
        Fetch {
            rel,
            snapshot,
            buffer: pg_sys::InvalidBuffer as pg_sys::Buffer,
            block: pg_sys::InvalidBlockNumber,
        }
    }

    /// Stores the row at `tid` (or the HOT chain member there the
    /// snapshot sees) in `slot`; false when the snapshot sees none.
    ///
    /// # Safety
    /// On the backend thread, inside [`crate::pgcall::call`]; `rel` open
    /// and `snapshot` registered while the fetch is used; `slot` a buffer
    /// heap slot of `rel`; `tid` any item pointer into `rel` (an index
    /// entry's).
    pub unsafe fn row(&mut self, tid: pg_sys::ItemPointerData, slot: *mut pg_sys::TupleTableSlot) -> bool {
        // SAFETY: per the caller; the page is pinned while its tuple is
        // searched and stored (the slot takes a pin of its own), and
        // share-locked while its line pointers and headers are read.
        unsafe {
            let block = block_of(tid);
            if self.buffer == pg_sys::InvalidBuffer as pg_sys::Buffer || block != self.block {
                let recent = near_in(self.rel, self.buffer, self.block, block);
                if self.buffer != pg_sys::InvalidBuffer as pg_sys::Buffer {
                    pg_sys::ReleaseBuffer(self.buffer);
                    self.buffer = pg_sys::InvalidBuffer as pg_sys::Buffer;
                }
                self.buffer = pin(self.rel, block, recent, std::ptr::null_mut());
                self.block = block;
                prune(self.rel, self.buffer, crate::storage::deform::page(self.buffer).cast());
            }
            let heap_slot = slot.cast::<pg_sys::BufferHeapTupleTableSlot>();
            let tuple = std::ptr::addr_of_mut!((*heap_slot).base.tupdata);
            let mut tid = tid;
            let mut all_dead = false;
            pg_sys::LockBuffer(self.buffer, pg_sys::BUFFER_LOCK_SHARE as i32);
            let found = pg_sys::heap_hot_search_buffer(
                &mut tid,
                self.rel,
                self.buffer,
                self.snapshot,
                tuple,
                &mut all_dead,
                true,
            );
            (*tuple).t_self = tid;
            pg_sys::LockBuffer(self.buffer, pg_sys::BUFFER_LOCK_UNLOCK as i32);
            if found {
                (*slot).tts_tableOid = (*self.rel).rd_id;
                pg_sys::ExecStoreBufferHeapTuple(tuple, slot, self.buffer);
            }
            found
        }
    }

    /// The buffer that holds, or by [`near`]'s guess may hold, `block`
    /// (`InvalidBuffer` for no guess).
    fn guess(&self, block: pg_sys::BlockNumber) -> pg_sys::Buffer {
        if block == self.block {
            self.buffer
        } else {
            near(self.buffer, self.block, block)
        }
    }

    /// Asks the CPU to bring what [`Fetch::row`] reads first of `tid`
    /// into its cache: its page's header and line pointer.
    pub fn prefetch_item(&self, tid: pg_sys::ItemPointerData) {
        let buffer = self.guess(block_of(tid));
        if buffer <= 0 {
            return;
        }
        // SAFETY: a shared buffer's number: its page's address, unread.
        let page = unsafe { crate::storage::deform::page(buffer) };
        let item = std::mem::offset_of!(pg_sys::PageHeaderData, pd_linp)
            + (usize::from(tid.ip_posid).max(1) - 1) * std::mem::size_of::<pg_sys::ItemIdData>();
        crate::storage::prefetch::prefetch_lines(page, 0, 1);
        crate::storage::prefetch::prefetch_lines(page, item, 1);
    }

    /// Asks the CPU to bring `tid`'s tuple header into its cache, reading
    /// the line pointer [`Fetch::prefetch_item`] brought: a prefetch one
    /// row ahead of [`Fetch::row`].
    pub fn prefetch_tuple(&self, tid: pg_sys::ItemPointerData) {
        let buffer = self.guess(block_of(tid));
        // (A line pointer past the page's is read from no page.)
        let lines = (pg_sys::BLCKSZ as usize - std::mem::offset_of!(pg_sys::PageHeaderData, pd_linp)) / 4;
        if buffer <= 0 || tid.ip_posid == 0 || usize::from(tid.ip_posid) > lines {
            return;
        }
        // SAFETY: a shared buffer's page, maybe not pinned and maybe not
        // the block guessed: its line pointer, a 4-byte-aligned word
        // inside the page, is read atomically (other processes may be
        // writing it), only to aim a prefetch, which never faults
        // wherever it points.
        unsafe {
            let page = crate::storage::deform::page(buffer);
            let word = page
                .add(std::mem::offset_of!(pg_sys::PageHeaderData, pd_linp))
                .cast::<u32>()
                .add(usize::from(tid.ip_posid) - 1);
            let item =
                std::sync::atomic::AtomicU32::from_ptr(word.cast_mut()).load(std::sync::atomic::Ordering::Relaxed);
            // ItemIdData: lp_off is the low 15 bits.
            let offset = (item & 0x7fff) as usize;
            crate::storage::prefetch::prefetch_lines(page, offset, 2);
        }
    }

    /// Releases the page held.
    ///
    /// # Safety
    /// As for [`Fetch::row`].
    pub unsafe fn end(self) {
        if self.buffer != pg_sys::InvalidBuffer as pg_sys::Buffer {
            // SAFETY: per the caller; the fetch's own pin.
            unsafe { pg_sys::ReleaseBuffer(self.buffer) };
        }
    }
}

/// bufmgr.h's `TestForOldSnapshot`: the page is too new for an old
/// snapshot under `old_snapshot_threshold` ("snapshot too old").
///
/// # Safety
/// `header` is the share-locked page of `rel`'s buffer, `snapshot` valid.
pub unsafe fn test_for_old_snapshot(
    snapshot: pg_sys::Snapshot,
    rel: pg_sys::Relation,
    header: *const pg_sys::PageHeaderData,
) {
    // SAFETY: per the caller.
    unsafe {
        if pg_sys::old_snapshot_threshold >= 0
            && !snapshot.is_null()
            && matches!(
                (*snapshot).snapshot_type,
                pg_sys::SnapshotType::SNAPSHOT_MVCC | pg_sys::SnapshotType::SNAPSHOT_TOAST
            )
            && (*snapshot).lsn != 0
            && page_lsn(header) > (*snapshot).lsn
        {
            pg_sys::TestForOldSnapshot_impl(snapshot, rel);
        }
    }
}

/// The page's LSN (`PageGetLSN`).
///
/// # Safety
/// `header` is a pinned page.
unsafe fn page_lsn(header: *const pg_sys::PageHeaderData) -> u64 {
    // SAFETY: per the caller.
    let lsn = unsafe { (*header).pd_lsn };
    (u64::from(lsn.xlogid) << 32) | u64::from(lsn.xrecoff)
}

/// The page's last line pointer number (`PageGetMaxOffsetNumber`).
///
/// # Safety
/// `header` is a pinned, locked page.
pub unsafe fn page_max_offset(header: *const pg_sys::PageHeaderData) -> u16 {
    const HEADER: usize = std::mem::offset_of!(pg_sys::PageHeaderData, pd_linp);
    // SAFETY: per the caller.
    let lower = usize::from(unsafe { (*header).pd_lower });
    (lower.saturating_sub(HEADER) / std::mem::size_of::<pg_sys::ItemIdData>()) as u16
}
