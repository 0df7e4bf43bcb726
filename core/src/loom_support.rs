//! Rings in loom-tracked memory, for the models in `loom-tests/`.
//!
//! Loom's atomics cannot live in caller-provided bytes, so under loom a
//! ring's header is an ordinary struct of loom atomics and its data area is
//! ordinary memory shadowed by one loom cell per 8-byte word (see
//! `sync.rs`). The producer and consumer code is the real code.

use std::boxed::Box;
use std::vec::Vec;

use core::cell::UnsafeCell;
use core::ptr::NonNull;

use crate::ring::RingHeader;
use crate::sync::{Shadow, TRACK_WORD};
use crate::Ring;

/// A ring's header, data and shadow, owned; share it with `Arc`.
pub struct LoomRing {
    header: RingHeader,
    /// The data area: `capacity` bytes as 8-byte words (for alignment).
    data: Box<[UnsafeCell<u64>]>,
    shadow: Box<[loom::cell::UnsafeCell<()>]>,
    capacity: usize,
}

// SAFETY: the data words are accessed only through `Ring`, under the ring
// protocol that loom is checking; the header is atomics.
unsafe impl Send for LoomRing {}
// SAFETY: as for Send.
unsafe impl Sync for LoomRing {}

impl LoomRing {
    /// A fresh ring with `capacity` data bytes (a power of two, at least 64).
    pub fn new(capacity: usize) -> LoomRing {
        let words = capacity / TRACK_WORD;
        LoomRing {
            header: RingHeader::new_for_loom(capacity),
            data: (0..words)
                .map(|_| UnsafeCell::new(0))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
            shadow: (0..words)
                .map(|_| loom::cell::UnsafeCell::new(()))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
            capacity,
        }
    }

    /// A handle to the ring; any number may exist, but only one producer
    /// and one consumer can be claimed from them.
    pub fn ring(&self) -> Ring<'_> {
        let data = NonNull::new(self.data.as_ptr() as *mut u8).expect("non-null");
        Ring::for_loom(&self.header, data, self.capacity, Shadow(&self.shadow))
    }
}
