//! One participant's index lookups: its keys looked up in a btree, in
//! key order, each entry's row fetched ([`crate::plan::lookup`] decides
//! which joins look keys up, and which keys each participant takes).

use pgrx::pg_sys;

use crate::storage::btree::{Entry, LeafWalk};
use crate::storage::page::Fetch;
use crate::types::PgType;

/// One participant's lookups, in key order (which, for a table loaded in
/// key order, reads its pages in order too): a walk over the index's
/// leaves ([`crate::storage::btree`]) and a fetch of each entry's row
/// ([`crate::storage::page::Fetch`]) where the walk can serve, else Postgres's index
/// scan rescanned for each key.
pub struct IndexProbe {
    index: pg_sys::Relation,
    /// Where the lookups' state lives: btree allocates some of it lazily,
    /// in the context current when it does, and it must outlive the
    /// batches.
    memory: pg_sys::MemoryContext,
    /// The keys, ascending, and the next to look up.
    keys: Vec<i64>,
    next: usize,
    /// One row per key is enough (see [`IndexProbe::matched`]).
    first_match: bool,
    how: How,
}

/// How an [`IndexProbe`] reads the index.
enum How {
    /// Postgres's index scan, rescanned for each key; `active` while a
    /// key's scan may have more tuples.
    Scan {
        scan: pg_sys::IndexScanDesc,
        ty: PgType,
        active: bool,
    },
    /// The leaf walk. `found` holds the entries of the last leaf read,
    /// `at` the next to fetch; `fetched` is the key of the row fetched
    /// last and `kept` that of the row [`IndexProbe::matched`] last.
    Walk {
        walk: LeafWalk,
        fetch: Fetch,
        found: Vec<Entry>,
        at: usize,
        fetched: Option<usize>,
        kept: Option<usize>,
    },
}

/// The keys participant `me` of `participants` looks up: every
/// `participants`-th of them (keys it shares none of with the others,
/// spread over the whole range, so that all read the index and the table
/// in the same order).
pub fn divide(keys: Vec<i64>, me: usize, participants: usize) -> Vec<i64> {
    keys.into_iter()
        .enumerate()
        .filter(|(j, _)| j % participants.max(1) == me)
        .map(|(_, key)| key)
        .collect()
}

impl IndexProbe {
    /// Begins looking `keys` (ascending) up in `index` of `heap` (a
    /// column of type `ty`), under `snapshot`, allocating in `memory`.
    ///
    /// # Safety
    /// On the backend thread, inside [`crate::pgcall::call`]; `heap` open,
    /// `snapshot` registered and `memory` alive until [`IndexProbe::end`].
    pub unsafe fn begin(
        heap: pg_sys::Relation,
        index: pg_sys::Oid,
        snapshot: pg_sys::Snapshot,
        mut keys: Vec<i64>,
        ty: PgType,
        first_match: bool,
        memory: pg_sys::MemoryContext,
    ) -> IndexProbe {
        // A key outside the column's type matches nothing.
        let (min, max) = match ty {
            PgType::Int2 => (i64::from(i16::MIN), i64::from(i16::MAX)),
            PgType::Int4 => (i64::from(i32::MIN), i64::from(i32::MAX)),
            _ => (i64::MIN, i64::MAX),
        };
        keys.retain(|key| (min..=max).contains(key));
        // SAFETY: per the caller.
        unsafe {
            let previous = pg_sys::MemoryContextSwitchTo(memory);
            let index = pg_sys::index_open(index, pg_sys::AccessShareLock as i32);
            let how = if LeafWalk::usable(index) {
                How::Walk {
                    walk: LeafWalk::begin(index, ty, snapshot),
                    fetch: Fetch::new(heap, snapshot),
                    found: Vec::new(),
                    at: 0,
                    fetched: None,
                    kept: None,
                }
            } else {
                How::Scan {
                    scan: pg_sys::index_beginscan(heap, index, snapshot, 1, 0),
                    ty,
                    active: false,
                }
            };
            pg_sys::MemoryContextSwitchTo(previous);
            IndexProbe {
                index,
                memory,
                keys,
                next: 0,
                first_match,
                how,
            }
        }
    }

    /// Fetches the next visible row with one of the keys into `slot`;
    /// false once every key has been looked up.
    ///
    /// # Safety
    /// As for [`IndexProbe::begin`]; `slot` is a heap slot of the table.
    pub unsafe fn next(&mut self, slot: *mut pg_sys::TupleTableSlot) -> bool {
        // SAFETY: per the caller.
        unsafe {
            let previous = pg_sys::MemoryContextSwitchTo(self.memory);
            let found = match &mut self.how {
                How::Scan { scan, ty, active } => scan_next(*scan, *ty, active, &self.keys, &mut self.next, slot),
                How::Walk {
                    walk,
                    fetch,
                    found,
                    at,
                    fetched,
                    kept,
                } => loop {
                    if let Some(entry) = found.get(*at) {
                        *at += 1;
                        if let Some(ahead) = found.get(*at) {
                            fetch.prefetch_tuple(ahead.tid);
                        }
                        // With one row per key, a key whose row was kept
                        // is done.
                        if *kept == Some(entry.key) {
                            continue;
                        }
                        if let Some(counts) = crate::storage::page::counts(self.index) {
                            counts.t_tuples_returned += 1;
                        }
                        if fetch.row(entry.tid, slot) {
                            if let Some(counts) = crate::storage::page::counts(self.index) {
                                counts.t_tuples_fetched += 1;
                            }
                            *fetched = Some(entry.key);
                            break true;
                        }
                        continue;
                    }
                    if self.next >= self.keys.len() {
                        break false;
                    }
                    found.clear();
                    *at = 0;
                    let before = self.next;
                    walk.visit(&self.keys, &mut self.next, found);
                    for entry in found.iter() {
                        fetch.prefetch_item(entry.tid);
                    }
                    // Each key counts as an index scan, as Postgres's
                    // nested loop would count it.
                    if let Some(counts) = crate::storage::page::counts(self.index) {
                        counts.t_numscans += (self.next - before) as i64;
                    }
                },
            };
            pg_sys::MemoryContextSwitchTo(previous);
            found
        }
    }

    /// Tells the probe the row it fetched last was kept: with
    /// `first_match`, its key's scan ends there.
    pub fn matched(&mut self) {
        if !self.first_match {
            return;
        }
        match &mut self.how {
            How::Scan { active, .. } => *active = false,
            How::Walk { fetched, kept, .. } => *kept = *fetched,
        }
    }

    /// The keys looked up so far.
    pub fn probed(&self) -> usize {
        self.next
    }

    /// The index's leaves the walk read and its descents from the root so
    /// far; none through Postgres's index scan.
    pub fn walked(&self) -> (usize, usize) {
        match &self.how {
            How::Scan { .. } => (0, 0),
            How::Walk { walk, .. } => (walk.pages, walk.descents),
        }
    }

    /// Ends the scan and closes the index.
    ///
    /// # Safety
    /// As for [`IndexProbe::begin`].
    pub unsafe fn end(self) {
        // SAFETY: per the caller; ours, ended once.
        unsafe {
            match self.how {
                How::Scan { scan, .. } => pg_sys::index_endscan(scan),
                How::Walk { walk, fetch, .. } => {
                    walk.end();
                    fetch.end();
                }
            }
            pg_sys::index_close(self.index, pg_sys::NoLock as i32);
        }
    }
}

/// [`IndexProbe::next`] through Postgres's index scan `scan`: rescanned
/// for each key from `keys[*next]` on until a row is found.
///
/// # Safety
/// As for [`IndexProbe::next`].
unsafe fn scan_next(
    scan: pg_sys::IndexScanDesc,
    ty: PgType,
    active: &mut bool,
    keys: &[i64],
    next: &mut usize,
    slot: *mut pg_sys::TupleTableSlot,
) -> bool {
    // SAFETY: per the caller.
    unsafe {
        loop {
            if *active {
                if pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot) {
                    return true;
                }
                *active = false;
            }
            let Some(&key) = keys.get(*next) else {
                return false;
            };
            *next += 1;
            // The keys fit the column's type (IndexProbe::begin).
            let (procedure, datum) = match ty {
                PgType::Int2 => (pg_sys::F_INT2EQ, pg_sys::Datum::from(key as i16)),
                PgType::Int4 => (pg_sys::F_INT4EQ, pg_sys::Datum::from(key as i32)),
                _ => (pg_sys::F_INT8EQ, pg_sys::Datum::from(key)),
            };
            let mut scan_key = pg_sys::ScanKeyData::default();
            pg_sys::ScanKeyInit(
                &mut scan_key,
                1,
                pg_sys::BTEqualStrategyNumber as u16,
                pg_sys::Oid::from(procedure),
                datum,
            );
            // Copies the key into the scan.
            pg_sys::index_rescan(scan, &mut scan_key, 1, std::ptr::null_mut(), 0);
            *active = true;
        }
    }
}
