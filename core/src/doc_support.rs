//! Aligned memory for the crate's examples (not part of the API).

use core::ptr::NonNull;

use crate::{Mesh, MeshLayout, Region, Ring, RING_HEADER_LEN};

/// `N` bytes of zeroed, 128-byte aligned memory on the stack.
#[repr(C, align(128))]
pub struct Mem<const N: usize>([u8; N]);

impl<const N: usize> Mem<N> {
    /// Zeroed memory.
    pub fn new() -> Self {
        Mem([0; N])
    }

    /// The whole memory as a region.
    pub fn region(&mut self) -> Region<'_> {
        // SAFETY: the memory is borrowed mutably for the region's lifetime
        // and used only through it.
        unsafe { Region::new(NonNull::from(&mut self.0).cast(), N) }
    }

    /// A fresh ring filling the memory (`N - 512` must be a power of two).
    pub fn ring(&mut self) -> Ring<'_> {
        Ring::init(self.region(), N - RING_HEADER_LEN, 0).expect("doc ring")
    }

    /// A fresh mesh at the start of the memory.
    pub fn mesh(&mut self, participants: u32, exchanges: u32, capacity: usize) -> Mesh<'_> {
        let layout = MeshLayout::new(participants, exchanges, capacity).expect("doc layout");
        Mesh::init(self.region(), layout, 0).expect("doc mesh")
    }
}

impl<const N: usize> Default for Mem<N> {
    fn default() -> Self {
        Self::new()
    }
}
