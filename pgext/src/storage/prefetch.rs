//! Bringing pages and tuples into the CPU's cache before a walk reads
//! them. A heap scan is bound by memory latency: each tuple's first touch
//! is a cache miss, and walking them one by one waits for each in turn.
//! These prefetches (they read nothing, so they are never wrong, only at
//! worst wasted) let the misses overlap: a tuple ten ahead of the walk
//! ([`prefetch_tuple`]), a page's tuple area at once ([`prefetch_page`]),
//! and the page expected next, a few lines per tuple walked
//! ([`Lookahead`]).

use pgrx::pg_sys;

use crate::storage::deform::{page, page_tuple};

/// How many tuples ahead of the one walked [`prefetch_tuple`] is asked for.
///
/// [`prefetch_page`] alone leaves the first touch of each tuple a cache
/// miss waited for (the load of `t_infomask2`): a burst of 128 prefetches
/// is more than the CPU keeps in flight. Asking for each tuple while the
/// tenth before it is walked keeps a few misses in flight all the time,
/// which most helps a scan that tests one attribute of each tuple. Any
/// distance from 6 to 10 serves alike (measured: see benches/README.md,
/// 'lineitem scan rates'); the second cache line matters as much as the
/// first (the attributes after a 24-byte header).
pub const PREFETCH_AHEAD: usize = 10;

/// Asks the CPU to bring the first two cache lines of the tuple at line
/// pointer `offset` of the page in `buffer` into its cache (the header and
/// the attributes after it, most of what a walk reads).
///
/// # Safety
/// As for [`page_tuple`].
#[inline(always)]
pub unsafe fn prefetch_tuple(buffer: pg_sys::Buffer, offset: u16) {
    // SAFETY: per the caller.
    let (tuple, _) = unsafe { page_tuple(buffer, offset) };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: addresses in or just past the tuple, inside the page's
    // buffer or the next (a prefetch never faults, reads nothing).
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(tuple.cast());
        _mm_prefetch::<_MM_HINT_T0>(tuple.cast::<i8>().wrapping_add(64));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = tuple;
}

/// Asks the CPU to bring the tuples of the page in `buffer` into its cache
/// at once (from the page's end down to `pd_upper`, where tuple data
/// starts).
///
/// The scan is bound by memory latency: walking a page's tuples one by one
/// takes a cache miss per tuple, each waited for in turn. Prefetching the
/// whole tuple area lets those misses overlap. It still helps beside
/// [`prefetch_tuple`], for the page's first tuples, which are walked
/// before their tuple prefetches could arrive.
///
/// # Safety
/// `buffer` is pinned.
pub unsafe fn prefetch_page(buffer: pg_sys::Buffer) {
    const LINE: usize = 64;
    // SAFETY: per the caller; pd_upper is within the page (a corrupt value
    // only prefetches less, prefetching never faults).
    let (page, upper) = unsafe {
        let page = page(buffer);
        (
            page,
            usize::from((*page.cast::<pg_sys::PageHeaderData>()).pd_upper) & !(LINE - 1),
        )
    };
    #[cfg(target_arch = "x86_64")]
    // From the page's end down: the walk reads the tuples in line pointer
    // order, and Postgres fills a page from its end, so the first tuple
    // read is the last one in memory.
    for at in (upper..pg_sys::BLCKSZ as usize).step_by(LINE).rev() {
        // SAFETY: an address inside the page; a prefetch reads nothing.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(page.add(at).cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (page, upper);
}

/// Asks the CPU to bring all of page `page` (any block of the buffer
/// pool, pinned or not: nothing is read) into its cache.
///
/// For a page about to be read all over in an order the hardware cannot
/// guess, such as a btree leaf's binary searches ([`crate::storage::btree`]):
/// prefetched a page ahead, its cache misses overlap with each other and
/// with the work in between instead of being waited for one by one.
pub fn prefetch_block(page: *const u8) {
    prefetch_lines(page, 0, pg_sys::BLCKSZ as usize / 64);
}

/// Asks the CPU to bring `lines` cache lines of page `page` from byte
/// `at` on into its cache (any block of the buffer pool; nothing is
/// read, and an `at` past the page only prefetches the next).
pub fn prefetch_lines(page: *const u8, at: usize, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in 0..lines {
        // SAFETY: a prefetch reads nothing and never faults.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                page.wrapping_add(at + 64 * line).cast(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (page, at, lines);
}

/// The page a walk expects to read after the current one, brought into
/// the cache a few lines per tuple walked, so that its misses overlap the
/// walk of the page before it instead of stalling the walk of its own.
///
/// [`prefetch_page`]'s burst at the start of a page asks for more lines
/// than the CPU keeps in flight, and [`prefetch_tuple`] only runs ten
/// tuples ahead: each page's first tuples and its line pointers (read by
/// `heapgetpage`) still wait for memory. Asking for the next page a few
/// lines per tuple of the current one spreads its misses over the walk
/// instead; in a model of the walk (`scripts/prefetch-model.c`) as in the
/// scan itself, it helps most the scans that read least of each tuple.
///
/// The next page is the next block's buffer, as
/// [`crate::storage::buffer::guess_next`] or, failing
/// it, [`pg_sys::PrefetchBuffer`] finds it in the buffer pool (the block
/// after the current one: a parallel block scan hands out runs of
/// consecutive blocks); [`crate::storage::page::read_page`] pins that same buffer
/// when the walk gets there, if it still holds the block. The buffer
/// is not pinned, so by the time the walk gets there it may hold another
/// page: the prefetch is then wasted, never wrong (a prefetch reads
/// nothing). A block not in the pool makes `PrefetchBuffer` advise the
/// kernel instead (a system call), so after one such block the next
/// [`Lookahead::SKIP_AFTER_MISS`] are not looked up.
#[derive(Default)]
pub struct Lookahead {
    /// The next page's first byte; None when there is no next page to ask
    /// for.
    page: Option<*const u8>,
    /// The lines of it asked for so far (in [`Lookahead::step`]'s order).
    asked: usize,
    /// Lines to ask for per tuple walked: the page's lines spread over the
    /// current page's tuples.
    per_tuple: usize,
    /// Pages left to read before the next lookup (after a miss).
    skip: u32,
    /// Pages left to look up without guessing (after wrong guesses).
    no_guess: u32,
    /// Wrong guesses since the last right one.
    wrong: u32,
    /// The block last looked up and the buffer that held it then, for
    /// [`crate::storage::page::read_page`] to pin without a second lookup.
    found: Option<(pg_sys::BlockNumber, pg_sys::Buffer)>,
}

impl Lookahead {
    /// Pages not looked up after one not found in the buffer pool.
    pub const SKIP_AFTER_MISS: u32 = 32;
    /// The most pages looked up without guessing
    /// ([`crate::storage::buffer::guess_next`]) after wrong guesses:
    /// a pool not filled in table order pays for a wrong guess (a few
    /// cache misses) on one page in 17 at most. Fewer after the first
    /// few: a scan jumping to its next run of blocks, or a block a
    /// parallel scan's other process read between two of its own, makes
    /// a wrong guess among right ones. (With 16 after every wrong guess,
    /// a scan of a table read by two processes, whose guesses go wrong
    /// now and then, would look up a large share of its pages: measured,
    /// see benches/README.md, 'lineitem scan rates'.)
    pub const NO_GUESS_AFTER_WRONG: u32 = 16;
    /// Cache lines in a page.
    const LINES: usize = pg_sys::BLCKSZ as usize / 64;
    /// Lines at the page's start asked for first: the page header and the
    /// line pointers of up to 226 tuples.
    const HEAD_LINES: usize = 4;

    /// Looks up `block` of `rel`, the block expected after the current
    /// page (in `current`), whose `tuples` visible tuples are about to be
    /// walked.
    ///
    /// # Safety
    /// `rel` is an open relation and `block` one of its blocks, on the
    /// backend thread, inside [`crate::pgcall::call`] (the lookup may raise
    /// an ERROR, for another session's temporary table); `current` is a
    /// buffer number.
    pub unsafe fn aim(
        &mut self,
        rel: pg_sys::Relation,
        block: pg_sys::BlockNumber,
        tuples: usize,
        current: pg_sys::Buffer,
    ) {
        self.page = None;
        self.found = None;
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        let guessed = if self.no_guess > 0 {
            self.no_guess -= 1;
            None
        } else {
            // SAFETY: per the caller.
            let guessed = unsafe { crate::storage::buffer::guess_next(rel, block, current) };
            if guessed.is_some() {
                self.wrong = 0;
            } else {
                // 0, 1, 3, 7, then 16 pages without guessing.
                self.wrong = (self.wrong + 1).min(5);
                self.no_guess = match self.wrong {
                    5 => Self::NO_GUESS_AFTER_WRONG,
                    n => (1 << (n - 1)) - 1,
                };
            }
            guessed
        };
        let buffer = match guessed {
            Some(buffer) => buffer,
            None => {
                // SAFETY: per the caller.
                let found = unsafe { pg_sys::PrefetchBuffer(rel, pg_sys::ForkNumber::MAIN_FORKNUM, block) };
                if found.recent_buffer == pg_sys::InvalidBuffer as pg_sys::Buffer {
                    self.skip = Self::SKIP_AFTER_MISS;
                    return;
                }
                found.recent_buffer
            }
        };
        // SAFETY: a valid buffer number (shared or local); only the
        // address is computed, nothing is read.
        self.page = Some(unsafe { page(buffer) });
        self.found = Some((block, buffer));
        self.asked = 0;
        self.per_tuple = Self::LINES.div_ceil(tuples.max(1));
    }

    /// The buffer that held `block` when it was looked up, if it was the
    /// block looked up last; `InvalidBuffer` otherwise.
    pub fn recent(&self, block: pg_sys::BlockNumber) -> pg_sys::Buffer {
        match self.found {
            Some((found, buffer)) if found == block => buffer,
            _ => pg_sys::InvalidBuffer as pg_sys::Buffer,
        }
    }

    /// Asks for the next few lines of the next page; called once per tuple
    /// of the current one.
    #[inline(always)]
    pub fn step(&mut self) {
        let Some(page) = self.page else { return };
        let until = (self.asked + self.per_tuple).min(Self::LINES);
        for k in self.asked..until {
            let line = if k < Self::HEAD_LINES {
                k
            } else {
                // From the page's end down, the order the walk reads
                // tuples in (Postgres fills a page from its end).
                Self::LINES - 1 - (k - Self::HEAD_LINES)
            };
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an address inside a buffer of the pool; a prefetch
            // reads nothing and never faults.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    page.wrapping_add(line * 64).cast(),
                );
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (page, line);
        }
        self.asked = until;
        if until == Self::LINES {
            self.page = None;
        }
    }
}
