//! The one place that swaps the real atomics and memory for loom's.
//!
//! Protocol code (`ring`, `mesh::error_slot`) imports atomics and the data
//! area's access tracking from here only, so that the code loom checks is the
//! code that ships. Under `--cfg loom`:
//!
//! - atomics and fences are loom's, so loom explores every interleaving and
//!   every value a relaxed load may legally return;
//! - every access to the ring's data area is announced to a loom
//!   `UnsafeCell<()>` per 8-byte word, and the announcement stays live for as
//!   long as the access does (a write grant, a borrowed frame). Loom then
//!   panics if a producer's write and a consumer's read of the same bytes are
//!   not ordered by happens-before: exactly the bug a missing Release/Acquire
//!   would cause.
//!
//! In the real build the tracking types are zero-sized and compile to nothing.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

pub(crate) use tracking::{Access, Shadow};

/// Granularity of loom's access tracking: one tracked cell per frame word.
#[cfg(loom)]
pub(crate) const TRACK_WORD: usize = crate::frame::FRAME_ALIGN;

#[cfg(not(loom))]
mod tracking {
    /// Nothing to track outside loom.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Shadow<'a>(core::marker::PhantomData<&'a ()>);

    /// A live access to part of the data area; nothing outside loom.
    #[derive(Debug, Default)]
    pub(crate) struct Access;

    impl<'a> Shadow<'a> {
        pub(crate) const NONE: Shadow<'a> = Shadow(core::marker::PhantomData);

        #[inline(always)]
        pub(crate) fn write(&self, _offset: usize, _len: usize) -> Access {
            Access
        }

        #[inline(always)]
        pub(crate) fn read(&self, _offset: usize, _len: usize) -> Access {
            Access
        }
    }

    impl Access {
        #[inline(always)]
        pub(crate) fn join(&mut self, _other: Access) {}

        /// Ends the access (under loom, before publishing).
        #[inline(always)]
        pub(crate) fn end(self) {}
    }
}

#[cfg(loom)]
mod tracking {
    extern crate std;

    use loom::cell::{ConstPtr, MutPtr, UnsafeCell};
    use std::vec::Vec;

    use super::TRACK_WORD;

    /// One loom cell per [`TRACK_WORD`] bytes of the data area.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Shadow<'a>(pub(crate) &'a [UnsafeCell<()>]);

    /// Guards that keep an access to some words live until dropped.
    #[derive(Default)]
    pub(crate) struct Access {
        writes: Vec<MutPtr<()>>,
        reads: Vec<ConstPtr<()>>,
    }

    impl core::fmt::Debug for Access {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("Access")
                .field("writes", &self.writes.len())
                .field("reads", &self.reads.len())
                .finish()
        }
    }

    fn words(offset: usize, len: usize) -> core::ops::Range<usize> {
        offset / TRACK_WORD..(offset + len).div_ceil(TRACK_WORD)
    }

    impl Shadow<'_> {
        pub(crate) fn write(&self, offset: usize, len: usize) -> Access {
            let writes = words(offset, len).map(|w| self.0[w].get_mut()).collect();
            Access {
                writes,
                reads: Vec::new(),
            }
        }

        pub(crate) fn read(&self, offset: usize, len: usize) -> Access {
            let reads = words(offset, len).map(|w| self.0[w].get()).collect();
            Access {
                writes: Vec::new(),
                reads,
            }
        }
    }

    impl Access {
        pub(crate) fn join(&mut self, other: Access) {
            self.writes.extend(other.writes);
            self.reads.extend(other.reads);
        }

        pub(crate) fn end(self) {
            drop(self);
        }
    }
}
