//! Ascending integer keys looked up in a btree by walking its leaf level.
//!
//! An index scan per key descends from the root each time: two or three
//! pages, each found in the buffer mapping table, locked and binary
//! searched with the opclass's comparison called through fmgr, a large
//! share of the time of many lookups. Lookups come sorted (a hash
//! join's build keys, [`crate::plan::keys`]), so each key's entries lie on the
//! leaf of the key before it or a few pages to its right. [`LeafWalk`]
//! keeps its place on the leaf level and reads each leaf once for all the
//! keys on it, comparing keys in Rust; it descends only for the first key
//! and for one too far to the right to reach by a few steps.
//!
//! It reads pages as nbtree's own scans do (PostgreSQL 15,
//! `src/backend/access/nbtree/`, and its README): a leaf under a share
//! lock, its entries copied out before the lock is let go, the walk
//! moving right along the sibling links (Lehman and Yao), skipping the
//! pages being deleted. Entries only ever move right (page splits), so:
//!
//! - a key's entries are on the leaf the walk holds or to its right, as
//!   long as the key is past the one that brought the walk there; the
//!   leaf's high key, read again under each lock, says which;
//! - a key whose entries run past a leaf's end continues on the right
//!   sibling the leaf had *when its entries were copied*: one split since
//!   then put a page in between holding entries already copied.
//!
//! Heap rows the snapshot sees were in the index before the scan began,
//! so a concurrent insert is not missed, as in Postgres's own scans.
//!
//! What the walk leaves to Postgres's index scan ([`LeafWalk::usable`]):
//! indexes ordered other than ascending with NULLs last on the key, and
//! SERIALIZABLE transactions (an index scan there takes predicate locks
//! on the leaves it reads). Entries marked dead are fetched, not skipped
//! as index scans skip them: the heap says they are not visible.

use std::ffi::c_int;

use pgrx::pg_sys;

use crate::types::PgType;

/// Pages the walk steps right for a key before it descends from the
/// root instead: a step reads one page, a descent two or three.
const MAX_STEPS: u32 = 3;

/// The first attribute of an index tuple with no NULLs starts here:
/// `MAXALIGN(sizeof(IndexTupleData))`.
const DATA_OFFSET: usize = 8;

/// With NULLs, after the NULL bitmap: `MAXALIGN(sizeof(IndexTupleData) +
/// sizeof(IndexAttributeBitMapData))`.
const DATA_OFFSET_NULLS: usize = 16;

/// nbtree.h's page flags and tuple bits used here.
const BTP_DELETED: u16 = 1 << 2;
const BTP_HALF_DEAD: u16 = 1 << 4;
const INDEX_ALT_TID_MASK: u16 = 0x2000;
const INDEX_NULL_MASK: u16 = 0x8000;
const BT_OFFSET_MASK: u16 = 0x0FFF;
const BT_IS_POSTING: u16 = 0x2000;
/// The high key's line pointer on a page that is not the rightmost.
const P_HIKEY: u16 = 1;

/// nbtree.h's `BTScanInsertData`, which pgrx does not bind; only its
/// first scan key is touched (`_bt_mkscankey` allocates one per key
/// column).
#[repr(C)]
struct BTScanInsertData {
    heapkeyspace: bool,
    allequalimage: bool,
    anynullkeys: bool,
    nextkey: bool,
    pivotsearch: bool,
    scantid: pg_sys::ItemPointer,
    keysz: c_int,
    scankeys: [pg_sys::ScanKeyData; 1],
}

/// nbtree.h's `BTPageOpaqueData`: the special space of every btree page.
#[repr(C)]
struct BTPageOpaqueData {
    btpo_prev: pg_sys::BlockNumber,
    btpo_next: pg_sys::BlockNumber,
    btpo_level: u32,
    btpo_flags: u16,
    btpo_cycleid: u16,
}

/// nbtree's functions, which pgrx does not bind; called through
/// `pg_guard_ffi_boundary` ([`guarded`]).
mod ffi {
    use std::ffi::{c_int, c_void};

    use pgrx::pg_sys;

    use super::BTScanInsertData;

    unsafe extern "C-unwind" {
        pub fn _bt_mkscankey(rel: pg_sys::Relation, itup: pg_sys::IndexTuple) -> *mut BTScanInsertData;
        pub fn _bt_metaversion(rel: pg_sys::Relation, heapkeyspace: *mut bool, allequalimage: *mut bool);
        pub fn _bt_search(
            rel: pg_sys::Relation,
            key: *mut BTScanInsertData,
            buffer: *mut pg_sys::Buffer,
            access: c_int,
            snapshot: pg_sys::Snapshot,
        ) -> *mut c_void;
        pub fn _bt_freestack(stack: *mut c_void);
        pub fn _bt_checkpage(rel: pg_sys::Relation, buffer: pg_sys::Buffer);
    }
}

/// Runs `f`, a call of one of [`ffi`]'s functions, turning a Postgres
/// ERROR into a Rust panic as pgrx's bound functions do.
///
/// # Safety
/// As for the function called.
unsafe fn guarded<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: per the caller.
    unsafe { pg_sys::submodules::ffi::pg_guard_ffi_boundary(f) }
}

/// One index entry found: which key (its place in the keys walked) and
/// the heap row it points to.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// The key's place in the keys walked.
    pub key: usize,
    /// The heap row's TID.
    pub tid: pg_sys::ItemPointerData,
}

/// One participant's walk over a btree's leaves for ascending keys.
pub struct LeafWalk {
    index: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    /// The insertion scan key a descent searches with: the key column's
    /// comparison, its argument set per descent.
    insert: *mut BTScanInsertData,
    /// The key column's type (int2, int4 or int8: the entries' width).
    ty: PgType,
    /// The leaf the walk is on, pinned and not locked between visits
    /// (`InvalidBuffer` before the first descent), and its block.
    leaf: pg_sys::Buffer,
    block: pg_sys::BlockNumber,
    /// The current key's entries continue on this block: the leaf's right
    /// sibling when its entries were copied.
    resume: Option<pg_sys::BlockNumber>,
    /// Leaves read, for EXPLAIN's metrics.
    pub pages: usize,
    /// Descents from the root, for EXPLAIN's metrics.
    pub descents: usize,
}

/// A share-locked leaf as the walk reads it.
struct Leaf {
    page: *const u8,
    ty: PgType,
    /// Its first entry's and last line pointer's offsets.
    first: u16,
    last: u16,
    /// Its right sibling (`P_NONE`, 0, for the rightmost page) and its
    /// high key's first column (`None` when rightmost; `Some(None)` for a
    /// NULL, which sorts after every key).
    right: pg_sys::BlockNumber,
    high: Option<Option<i64>>,
    /// Half-dead or deleted: to be stepped over.
    ignore: bool,
}

impl Leaf {
    /// Entries [`Leaf::lower_bound`] steps over at a time (an index tuple
    /// of an integer key is 16 bytes: eight of them span two cache lines).
    const STRIDE: u16 = 8;

    /// Reads the locked page of `buffer`.
    ///
    /// # Safety
    /// `buffer` is a pinned, share-locked btree page.
    unsafe fn read(buffer: pg_sys::Buffer, ty: PgType) -> Leaf {
        // SAFETY: per the caller; a btree page's special space is its
        // opaque data (_bt_checkpage checked its size when it was read).
        unsafe {
            let page = crate::storage::deform::page(buffer);
            let header = page.cast::<pg_sys::PageHeaderData>();
            let opaque = &*page.add(usize::from((*header).pd_special)).cast::<BTPageOpaqueData>();
            let rightmost = opaque.btpo_next == 0;
            let mut leaf = Leaf {
                page,
                ty,
                first: if rightmost { P_HIKEY } else { P_HIKEY + 1 },
                last: crate::storage::page::page_max_offset(header),
                right: opaque.btpo_next,
                high: None,
                ignore: opaque.btpo_flags & (BTP_DELETED | BTP_HALF_DEAD) != 0,
            };
            if !rightmost && !leaf.ignore && leaf.last >= P_HIKEY {
                leaf.high = Some(leaf.key(P_HIKEY));
            }
            leaf
        }
    }

    /// The index tuple at line pointer `offset`.
    fn tuple(&self, offset: u16) -> *const pg_sys::IndexTupleData {
        // SAFETY: `offset` is one of the page's line pointers (callers
        // keep to first..=last); its item lies inside the page.
        unsafe {
            let items = self.page.add(std::mem::offset_of!(pg_sys::PageHeaderData, pd_linp));
            let item = &*items.cast::<pg_sys::ItemIdData>().add(usize::from(offset) - 1);
            self.page.add(item.lp_off() as usize).cast()
        }
    }

    /// The key column of the entry at `offset`; `None` for a NULL.
    fn key(&self, offset: u16) -> Option<i64> {
        let tuple = self.tuple(offset);
        // SAFETY: an index tuple of the page: its header, NULL bitmap and
        // first attribute, which a key column of an integer type stores
        // unaligned-safe at the maxaligned data offset.
        unsafe {
            let info = (*tuple).t_info;
            let data = if info & INDEX_NULL_MASK != 0 {
                // The bitmap's bit set means "not NULL".
                let bits = *tuple.cast::<u8>().add(std::mem::size_of::<pg_sys::IndexTupleData>());
                if bits & 1 == 0 {
                    return None;
                }
                DATA_OFFSET_NULLS
            } else {
                DATA_OFFSET
            };
            let at = tuple.cast::<u8>().add(data);
            Some(match self.ty {
                PgType::Int2 => i64::from(at.cast::<i16>().read_unaligned()),
                PgType::Int4 => i64::from(at.cast::<i32>().read_unaligned()),
                _ => at.cast::<i64>().read_unaligned(),
            })
        }
    }

    /// Whether every entry with `key` lies to the right of this page.
    fn before(&self, key: i64) -> bool {
        self.ignore || matches!(self.high, Some(Some(high)) if high < key)
    }

    /// The first entry at or after `from` whose key is at least `key`
    /// (`last + 1` if none), NULLs sorting last: forward from `from` in
    /// strides of [`Leaf::STRIDE`] entries, then a binary search within the
    /// stride that passed it.
    ///
    /// The walk's keys ascend, so each search starts where the last one
    /// ended, and reading forward touches the page's line pointers and
    /// tuples in address order, which the hardware prefetcher follows. A
    /// binary search over the whole page waits for a cache miss at nearly
    /// every probe instead, on the load of the probed tuple, and that wait
    /// becomes most of the walk's time.
    fn lower_bound(&self, from: u16, key: i64) -> u16 {
        let below = |offset: u16| matches!(self.key(offset), Some(found) if found < key);
        let end = self.last + 1;
        let (mut low, mut high) = (from, end);
        while low < end {
            let probe = (low + Self::STRIDE - 1).min(end - 1);
            if !below(probe) {
                high = probe;
                break;
            }
            low = probe + 1;
        }
        while low < high {
            let middle = low + (high - low) / 2;
            if below(middle) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// Appends the heap TIDs of the entry at `offset` (one, or a posting
    /// list's) to `found` as `key`'s.
    fn entries(&self, offset: u16, key: usize, found: &mut Vec<Entry>) {
        let tuple = self.tuple(offset);
        // SAFETY: a leaf's non-pivot tuple: a heap TID, or a posting list
        // of them at the offset its TID's block field holds (nbtree.h's
        // BTreeTupleGetPosting).
        unsafe {
            let tid = (*tuple).t_tid;
            let posting = (*tuple).t_info & INDEX_ALT_TID_MASK != 0 && tid.ip_posid & BT_IS_POSTING != 0;
            if !posting {
                found.push(Entry { key, tid });
                return;
            }
            let count = usize::from(tid.ip_posid & BT_OFFSET_MASK);
            let start = (u32::from(tid.ip_blkid.bi_hi) << 16 | u32::from(tid.ip_blkid.bi_lo)) as usize;
            let list = tuple.cast::<u8>().add(start).cast::<pg_sys::ItemPointerData>();
            found.extend((0..count).map(|n| Entry {
                key,
                tid: list.add(n).read_unaligned(),
            }));
        }
    }
}

impl LeafWalk {
    /// Whether `index` (open, a btree from [`crate::plan::lookup::indexes`]) can
    /// be walked in this transaction.
    ///
    /// # Safety
    /// On the backend thread; `index` open.
    pub unsafe fn usable(index: pg_sys::Relation) -> bool {
        // SAFETY: per the caller; the relcache entry's index options.
        let ascending = unsafe { *(*index).rd_indoption == 0 };
        // SAFETY: a plain global of this backend.
        let serializable = unsafe { pg_sys::XactIsoLevel } == pg_sys::XACT_SERIALIZABLE as i32;
        ascending && !serializable
    }

    /// Begins a walk over `index` (whose key column is of type `ty`) under
    /// `snapshot`.
    ///
    /// # Safety
    /// On the backend thread, inside [`crate::pgcall::call`], in a memory
    /// context that outlives the walk; `index` open and [`usable`] and
    /// `snapshot` registered until [`LeafWalk::end`].
    ///
    /// [`usable`]: LeafWalk::usable
    pub unsafe fn begin(index: pg_sys::Relation, ty: PgType, snapshot: pg_sys::Snapshot) -> LeafWalk {
        // SAFETY: per the caller; the insertion key is set up as
        // _bt_first sets up its own: the index's version from its
        // metapage, one key column, no heap TID tiebreaker.
        unsafe {
            let insert = guarded(|| ffi::_bt_mkscankey(index, std::ptr::null_mut()));
            let (mut heapkeyspace, mut allequalimage) = (false, false);
            guarded(|| ffi::_bt_metaversion(index, &mut heapkeyspace, &mut allequalimage));
            (*insert).heapkeyspace = heapkeyspace;
            (*insert).allequalimage = allequalimage;
            (*insert).anynullkeys = false;
            (*insert).nextkey = false;
            (*insert).pivotsearch = false;
            (*insert).scantid = std::ptr::null_mut();
            (*insert).keysz = 1;
            (*insert).scankeys[0].sk_flags &= !(pg_sys::SK_ISNULL as i32);
            LeafWalk {
                index,
                snapshot,
                insert,
                ty,
                leaf: pg_sys::InvalidBuffer as pg_sys::Buffer,
                block: pg_sys::InvalidBlockNumber,
                resume: None,
                pages: 0,
                descents: 0,
            }
        }
    }

    /// Reads the next leaf the keys from `keys[*next]` on need, appending
    /// the entries on it of every key it holds to `found` and moving
    /// `*next` past the keys it finished. `keys` ascend and fit the key
    /// column's type.
    ///
    /// # Safety
    /// As for [`LeafWalk::begin`]; `*next < keys.len()`.
    pub unsafe fn visit(&mut self, keys: &[i64], next: &mut usize, found: &mut Vec<Entry>) {
        pgrx::check_for_interrupts!();
        // SAFETY: per the caller; the leaf is pinned by the walk, locked
        // here and unlocked before returning.
        unsafe {
            let key = keys[*next];
            let mut steps = 0;
            if let Some(right) = self.resume.take() {
                // The key's entries go on here, those before already
                // copied: a descent would find its first entry and copy
                // them again, so from here the walk only steps right.
                self.step(right);
                steps = u32::MAX;
            } else if self.leaf == pg_sys::InvalidBuffer as pg_sys::Buffer {
                if !self.descend(key) {
                    *next = keys.len();
                    return;
                }
                steps = u32::MAX;
            } else {
                pg_sys::LockBuffer(self.leaf, pg_sys::BUFFER_LOCK_SHARE as i32);
            }
            let mut leaf = Leaf::read(self.leaf, self.ty);
            while leaf.before(key) {
                if leaf.right == 0 {
                    // A deleted page is never the rightmost: a corrupt
                    // index (the panic is caught as the call's error).
                    pg_sys::LockBuffer(self.leaf, pg_sys::BUFFER_LOCK_UNLOCK as i32);
                    panic!("btree leaf {} is being deleted and has no right sibling", self.block);
                }
                if steps == MAX_STEPS {
                    pg_sys::LockBuffer(self.leaf, pg_sys::BUFFER_LOCK_UNLOCK as i32);
                    if !self.descend(key) {
                        *next = keys.len();
                        return;
                    }
                    steps = u32::MAX;
                } else {
                    pg_sys::LockBuffer(self.leaf, pg_sys::BUFFER_LOCK_UNLOCK as i32);
                    self.step(leaf.right);
                    steps = steps.saturating_add(1);
                }
                leaf = Leaf::read(self.leaf, self.ty);
            }
            self.pages += 1;
            crate::storage::page::test_for_old_snapshot(self.snapshot, self.index, leaf.page.cast());
            let mut from = leaf.first;
            while let Some(&key) = keys.get(*next) {
                if leaf.before(key) {
                    break;
                }
                from = leaf.lower_bound(from, key);
                while from <= leaf.last && leaf.key(from) == Some(key) {
                    leaf.entries(from, *next, found);
                    from += 1;
                }
                if from > leaf.last && leaf.high == Some(Some(key)) {
                    self.resume = Some(leaf.right);
                    break;
                }
                *next += 1;
            }
            // The next visit starts on the right sibling (or further
            // right): bring it into the cache while this leaf's rows are
            // fetched.
            if leaf.right != 0 && *next < keys.len() {
                let guess = crate::storage::buffer::near(self.leaf, self.block, leaf.right);
                if guess != pg_sys::InvalidBuffer as pg_sys::Buffer {
                    // (A shared buffer's number: its address, unread.)
                    crate::storage::prefetch::prefetch_block(crate::storage::deform::page(guess));
                }
            }
            pg_sys::LockBuffer(self.leaf, pg_sys::BUFFER_LOCK_UNLOCK as i32);
        }
    }

    /// Descends from the root to the leaf where `key`'s entries begin,
    /// leaving it pinned and share-locked; false for an empty index.
    ///
    /// # Safety
    /// As for [`LeafWalk::visit`]; the leaf held, if any, is unlocked.
    unsafe fn descend(&mut self, key: i64) -> bool {
        // SAFETY: per the caller; _bt_search returns the leaf pinned and
        // locked (BT_READ), or InvalidBuffer when there is no root.
        unsafe {
            self.release();
            (*self.insert).scankeys[0].sk_argument = match self.ty {
                PgType::Int2 => pg_sys::Datum::from(key as i16),
                PgType::Int4 => pg_sys::Datum::from(key as i32),
                _ => pg_sys::Datum::from(key),
            };
            let mut buffer = pg_sys::InvalidBuffer as pg_sys::Buffer;
            let stack = guarded(|| {
                ffi::_bt_search(
                    self.index,
                    self.insert,
                    &mut buffer,
                    pg_sys::BUFFER_LOCK_SHARE as c_int,
                    self.snapshot,
                )
            });
            guarded(|| ffi::_bt_freestack(stack));
            self.descents += 1;
            if buffer == pg_sys::InvalidBuffer as pg_sys::Buffer {
                return false;
            }
            self.leaf = buffer;
            self.block = pg_sys::BufferGetBlockNumber(buffer);
            true
        }
    }

    /// Moves to leaf `right`: unpins the leaf held (a scan never holds two
    /// leaves' locks), then pins `right`, through the buffer
    /// [`crate::storage::page::near`] the leaf's, and share-locks it.
    ///
    /// # Safety
    /// As for [`LeafWalk::visit`]; the leaf held is unlocked.
    unsafe fn step(&mut self, right: pg_sys::BlockNumber) {
        // SAFETY: per the caller.
        unsafe {
            let recent = crate::storage::buffer::near_in(self.index, self.leaf, self.block, right);
            self.release();
            self.leaf = crate::storage::page::pin(self.index, right, recent, std::ptr::null_mut());
            self.block = right;
            pg_sys::LockBuffer(self.leaf, pg_sys::BUFFER_LOCK_SHARE as i32);
            guarded(|| ffi::_bt_checkpage(self.index, self.leaf));
        }
    }

    /// Unpins the leaf held (unlocked), if any.
    ///
    /// # Safety
    /// On the backend thread.
    unsafe fn release(&mut self) {
        if self.leaf != pg_sys::InvalidBuffer as pg_sys::Buffer {
            // SAFETY: per the caller; the walk's own pin.
            unsafe { pg_sys::ReleaseBuffer(self.leaf) };
            self.leaf = pg_sys::InvalidBuffer as pg_sys::Buffer;
        }
    }

    /// Ends the walk, unpinning its leaf.
    ///
    /// # Safety
    /// As for [`LeafWalk::begin`].
    pub unsafe fn end(mut self) {
        // SAFETY: per the caller.
        unsafe { self.release() };
    }
}
