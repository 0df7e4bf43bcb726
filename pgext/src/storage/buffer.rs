//! Finding a block's buffer without the buffer mapping table: a guess
//! from where a neighbouring block sits (a relation read in order lands in
//! consecutive buffers), checked by the buffer's tag before any use. The
//! mapping table's lookup is a shared hash probe whose cache misses a scan
//! pays per page; a right guess costs one header read.

use pgrx::pg_sys;

/// The buffer to try first for `block` when buffer `near` holds
/// `near_block` of the same relation: as far from `near` as the blocks
/// are apart, which is where a relation read in order into free buffers
/// put it. `InvalidBuffer` (0) when that is no shared buffer (or `near`
/// is none). Only a hint: [`crate::storage::page::pin`] checks the buffer's tag before using it.
pub fn near(near: pg_sys::Buffer, near_block: pg_sys::BlockNumber, block: pg_sys::BlockNumber) -> pg_sys::Buffer {
    if near <= 0 {
        return pg_sys::InvalidBuffer as pg_sys::Buffer;
    }
    // SAFETY: the pool's size, fixed at startup.
    let buffers = i64::from(unsafe { pg_sys::NBuffers });
    let guess = i64::from(near) + i64::from(block) - i64::from(near_block);
    if (1..=buffers).contains(&guess) {
        guess as pg_sys::Buffer
    } else {
        pg_sys::InvalidBuffer as pg_sys::Buffer
    }
}

/// The shared buffer among the few after `current` that seems to hold
/// `block` of `rel`: a table read in order into free buffers has its
/// consecutive blocks in nearby buffers (its first read, or pg_prewarm:
/// the next buffer; read by a parallel scan of P processes, each taking
/// the next free buffer in turn, mostly within P of it), and checking the
/// guesses' tags spares the lookup in the buffer mapping table, a shared
/// hash table whose every probe misses the cache.
///
/// [`GUESS_WINDOW`] buffers are tried: after a parallel scan of lineitem
/// by the leader and one worker, the next block sits nearly always within
/// three buffers on (pg_buffercache; measured: see benches/README.md,
/// 'lineitem scan rates'). The descriptors are consecutive cache lines,
/// so the later tries cost little once the first has missed. The tags are read without the
/// buffer header's lock, so the answer is a hint: [`crate::storage::page::read_page`]
/// checks it again, under the lock, before pinning the buffer.
///
/// # Safety
/// `rel` is an open relation, on the backend thread; `current` is a
/// buffer number.
pub unsafe fn guess_next(
    rel: pg_sys::Relation,
    block: pg_sys::BlockNumber,
    current: pg_sys::Buffer,
) -> Option<pg_sys::Buffer> {
    use std::sync::atomic::{AtomicI32, AtomicU32, Ordering::Relaxed};
    // SAFETY: per the caller; the relcache entry's node and the size of
    // the pool, fixed at startup.
    let (node, buffers) = unsafe { ((*rel).rd_node, pg_sys::NBuffers) };
    // Local buffers (temporary tables) are this backend's own: no guess.
    if current <= 0 {
        return None;
    }
    // Buffer `b`'s descriptor is the shared array's entry b - 1.
    (current..buffers.min(current.saturating_add(GUESS_WINDOW))).find_map(|index| {
        // SAFETY: `index` < NBuffers, so its descriptor is in the shared
        // array; its tag's fields are 32-bit words that other processes
        // rewrite under the header's lock, read here atomically (a torn
        // tag only makes a wrong guess, which read_page rejects).
        let matches = unsafe {
            let tag = std::ptr::addr_of!((*pg_sys::BufferDescriptors.add(index as usize)).bufferdesc.tag);
            let word = |field: *const u32| AtomicU32::from_ptr(field.cast_mut()).load(Relaxed);
            word(std::ptr::addr_of!((*tag).blockNum)) == block
                && word(std::ptr::addr_of!((*tag).rnode.relNode).cast()) == node.relNode.to_u32()
                && word(std::ptr::addr_of!((*tag).rnode.dbNode).cast()) == node.dbNode.to_u32()
                && word(std::ptr::addr_of!((*tag).rnode.spcNode).cast()) == node.spcNode.to_u32()
                && AtomicI32::from_ptr(std::ptr::addr_of!((*tag).forkNum).cast_mut()).load(Relaxed)
                    == pg_sys::ForkNumber::MAIN_FORKNUM
        };
        matches.then_some(index + 1)
    })
}

/// How many buffers after the current one [`guess_next`] tries.
const GUESS_WINDOW: pg_sys::Buffer = 4;

/// The buffer to pin `block` of `rel` through when buffer `near` holds
/// `near_block` of it: for the block after it, one of the few after
/// `near` whose tag says so ([`guess_next`]: a table read by a parallel
/// scan has the next block a few buffers on), else [`near`]'s; what
/// [`crate::storage::page::pin`] tries before a lookup in the buffer mapping table.
///
/// # Safety
/// `rel` is an open relation, on the backend thread.
pub unsafe fn near_in(
    rel: pg_sys::Relation,
    near_buffer: pg_sys::Buffer,
    near_block: pg_sys::BlockNumber,
    block: pg_sys::BlockNumber,
) -> pg_sys::Buffer {
    if near_buffer > 0 && near_block.checked_add(1) == Some(block) {
        // SAFETY: per the caller.
        unsafe { guess_next(rel, block, near_buffer) }.unwrap_or(pg_sys::InvalidBuffer as pg_sys::Buffer)
    } else {
        near(near_buffer, near_block, block)
    }
}
