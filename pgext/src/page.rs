//! Reading a heap scan's next page: Postgres's `heapgetpage`, pinning
//! the buffer the walk's lookahead already found.
//!
//! A page's buffer is found through the buffer pool's mapping table, a
//! shared hash table whose every lookup is a cache miss or two: perf of a
//! lineitem scan put 17% of its time there. The walk looks each page up
//! once to prefetch it while the page before it is walked
//! ([`crate::deform::Lookahead`]), and `heapgetpage` looked it up again
//! to pin it. [`read_page`] pins that same buffer with
//! `ReadRecentBuffer`, which checks the buffer still holds the block (its
//! tag, under the buffer header's spinlock) instead of searching for it,
//! and falls back to the ordinary read when it does not. Everything else
//! is `heapgetpage`'s, step for step (PostgreSQL 15,
//! `src/backend/access/heap/heapam.c`): pruning, the share lock, the
//! old-snapshot test, visibility (every tuple of an all-visible page, as
//! Postgres takes it), serializable conflicts, and the buffer counts of
//! `pg_statio`.

use pgrx::pg_sys;

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
        let page = crate::deform::page(buffer);
        let header = page.cast::<pg_sys::PageHeaderData>();
        // heap_page_prune_opt returns at once for a page no deleted or
        // updated tuple has marked prunable: spare the call. (Its one
        // other effect, under old_snapshot_threshold = 0, is a test hook.)
        if (*header).pd_prune_xid != pg_sys::InvalidTransactionId || pg_sys::old_snapshot_threshold == 0 {
            pg_sys::heap_page_prune_opt(rel, buffer);
        }
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

/// `block` of `rel` pinned: `recent` when it is a shared buffer still
/// holding the block (no mapping lookup), else read as always, with the
/// scan's strategy. (A temporary table's local buffers are read as
/// always: some PostgreSQL 15 minor releases look a local recent buffer
/// up among the shared ones.)
///
/// # Safety
/// As for [`read_page`].
unsafe fn pin(
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
            if (*rel).pgstat_info.is_null() && (*rel).pgstat_enabled {
                pg_sys::pgstat_assoc_relation(rel);
            }
            if let Some(stats) = (*rel).pgstat_info.as_mut() {
                stats.t_counts.t_blocks_fetched += 1;
                stats.t_counts.t_blocks_hit += 1;
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

/// bufmgr.h's `TestForOldSnapshot`: the page is too new for an old
/// snapshot under `old_snapshot_threshold` ("snapshot too old").
///
/// # Safety
/// `header` is the share-locked page of `rel`'s buffer, `snapshot` valid.
unsafe fn test_for_old_snapshot(
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
unsafe fn page_max_offset(header: *const pg_sys::PageHeaderData) -> u16 {
    const HEADER: usize = std::mem::offset_of!(pg_sys::PageHeaderData, pd_linp);
    // SAFETY: per the caller.
    let lower = usize::from(unsafe { (*header).pd_lower });
    (lower.saturating_sub(HEADER) / std::mem::size_of::<pg_sys::ItemIdData>()) as u16
}
