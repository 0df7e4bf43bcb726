//! [`Region`]: the caller's shared memory, and the one place raw pointers
//! into it are made.

use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::error::LayoutError;

/// Alignment every ring and mesh must start at (and that their blocks keep),
/// so that producer-written and consumer-written words never share a cache
/// line, even with adjacent-line prefetch.
pub const REGION_ALIGN: usize = 128;

/// A span of memory that weft structures live in: typically a dynamic shared
/// memory segment mapped at a different address in each process.
///
/// Rings and meshes store offsets only, never pointers, so each process makes
/// its own `Region` from its own mapping.
///
/// ```
/// use core::ptr::NonNull;
/// use weft_core::Region;
///
/// #[repr(C, align(128))]
/// struct Mem([u8; 1024]);
/// let mut mem = Mem([0; 1024]);
/// // SAFETY: `mem` outlives the region and is only used through it.
/// let region = unsafe { Region::new(NonNull::from(&mut mem).cast(), 1024) };
/// assert_eq!(region.len(), 1024);
/// assert!(region.subregion(512, 512).is_some());
/// assert!(region.subregion(513, 512).is_none());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Region<'a> {
    /// Start of the span; valid for reads and writes of `len` bytes for `'a`.
    ptr: NonNull<u8>,
    len: usize,
    _memory: PhantomData<&'a core::cell::UnsafeCell<[u8]>>,
}

// SAFETY: a Region is an address range; all access through it is either
// atomic (headers) or governed by the ring protocol, which hands each byte of
// the data area to one side at a time. Sharing the range across threads is
// what it is for.
unsafe impl Send for Region<'_> {}
// SAFETY: as for Send.
unsafe impl Sync for Region<'_> {}

impl<'a> Region<'a> {
    /// Wraps `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// For all of `'a`, the memory must stay mapped, readable and writable,
    /// and be accessed by any thread or process only through weft-core
    /// structures built on it (or not at all). The bytes may hold anything
    /// (attaching validates them) but must be initialised memory: fresh
    /// shared-memory mappings are zero-filled, which is enough.
    pub unsafe fn new(ptr: NonNull<u8>, len: usize) -> Region<'a> {
        Region {
            ptr,
            len,
            _memory: PhantomData,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is zero bytes long.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start address in this process.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The `len` bytes at `offset`, or `None` if they are not all inside.
    pub fn subregion(&self, offset: usize, len: usize) -> Option<Region<'a>> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        Some(Region {
            // SAFETY: offset <= self.len, so the result stays inside (or one
            // past the end of) the region and is non-null.
            ptr: unsafe { self.ptr.add(offset) },
            len,
            _memory: PhantomData,
        })
    }

    /// Checks that the region starts on a [`REGION_ALIGN`] boundary and holds
    /// at least `len` bytes.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn check(&self, len: usize) -> Result<(), LayoutError> {
        if !(self.ptr.as_ptr() as usize).is_multiple_of(REGION_ALIGN) {
            return Err(LayoutError::Misaligned);
        }
        if self.len < len {
            return Err(LayoutError::TooSmall);
        }
        Ok(())
    }

    /// A shared reference to the `T` at `offset`.
    #[cfg(not(loom))]
    pub(crate) fn shared<T: SharedBlock>(&self, offset: usize) -> Result<&'a T, LayoutError> {
        let sub = self
            .subregion(offset, core::mem::size_of::<T>())
            .ok_or(LayoutError::TooSmall)?;
        if !(sub.ptr.as_ptr() as usize).is_multiple_of(core::mem::align_of::<T>()) {
            return Err(LayoutError::Misaligned);
        }
        // SAFETY: in bounds and aligned (checked above); T is made of atomics
        // only (SharedBlock's contract), for which every bit pattern is valid
        // and concurrent access from other threads or processes is allowed.
        Ok(unsafe { sub.ptr.cast::<T>().as_ref() })
    }
}

/// A `#[repr(C)]` block made of atomics only, so that any bytes are a valid
/// value and any process may access it concurrently.
///
/// # Safety
///
/// Implementors must be `#[repr(C)]` (or `transparent`) structs whose fields
/// are all atomic integers, arrays of them, or other `SharedBlock`s.
#[cfg(not(loom))]
pub(crate) unsafe trait SharedBlock: Sync {}
