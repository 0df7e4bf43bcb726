//! Memory for tests (and, through `#[path]`, the benches): aligned heap
//! regions, and files in /dev/shm that several processes map.

#![allow(dead_code)] // each test binary uses a different part

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use weft_core::{Region, REGION_ALIGN};

/// Zeroed heap memory aligned for weft structures.
pub struct HeapMem {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: plain memory; what is shared through it is weft-core's business.
unsafe impl Send for HeapMem {}
// SAFETY: as for Send.
unsafe impl Sync for HeapMem {}

impl HeapMem {
    pub fn new(len: usize) -> HeapMem {
        let layout = Layout::from_size_align(len.max(1), REGION_ALIGN).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("out of memory");
        HeapMem { ptr, layout }
    }

    pub fn region(&self) -> Region<'_> {
        // SAFETY: the allocation lives as long as the borrow of self, and
        // tests touch it only through weft-core (or deliberately, through
        // `poke`, to corrupt it while no other thread uses it).
        unsafe { Region::new(self.ptr, self.layout.size()) }
    }

    /// Overwrites bytes at `offset`, to corrupt the memory on purpose.
    /// Panics if the span is outside the allocation.
    ///
    /// A raw write, not a `&mut [u8]`: handles hold shared references into
    /// this memory (to atomics, whose cells permit writes through other
    /// pointers), and a unique reference to the same bytes would alias them.
    ///
    /// # Safety
    ///
    /// No other thread may be using the memory concurrently.
    pub unsafe fn poke(&self, offset: usize, bytes: &[u8]) {
        assert!(offset
            .checked_add(bytes.len())
            .is_some_and(|end| end <= self.layout.size()));
        // SAFETY: in bounds (checked above); no concurrent access (the
        // caller's contract).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(offset), bytes.len()) }
    }

    /// Copies `len` bytes out from `offset`. Panics if out of bounds.
    ///
    /// # Safety
    ///
    /// No other thread may be writing the memory concurrently.
    pub unsafe fn peek(&self, offset: usize, len: usize) -> Vec<u8> {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.layout.size()));
        let mut out = vec![0; len];
        // SAFETY: in bounds (checked above); no concurrent writes.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), out.as_mut_ptr(), len) }
        out
    }
}

impl Drop for HeapMem {
    fn drop(&mut self) {
        // SAFETY: allocated in new() with this layout.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// A file in /dev/shm (or the temp dir where there is none) mapped shared,
/// so that another process can map the same memory at another address.
pub struct SharedFile {
    path: PathBuf,
    owner: bool,
    map: memmap2::MmapMut,
}

impl SharedFile {
    /// Creates a zero-filled file of `len` bytes and maps it.
    pub fn create(len: usize) -> SharedFile {
        let dir = Path::new("/dev/shm");
        let dir = if dir.is_dir() {
            dir.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let (file, path) = tempfile::Builder::new()
            .prefix("weft-test-")
            .tempfile_in(dir)
            .expect("create shared file")
            .keep()
            .expect("keep shared file");
        file.set_len(len as u64).expect("size shared file");
        SharedFile {
            path,
            owner: true,
            map: Self::map(&file),
        }
    }

    /// Maps a file that another process created.
    pub fn open(path: &Path) -> SharedFile {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open shared file");
        SharedFile {
            path: path.to_path_buf(),
            owner: false,
            map: Self::map(&file),
        }
    }

    fn map(file: &File) -> memmap2::MmapMut {
        // SAFETY: the file is private to the test's processes, which access
        // the mapping only through weft-core, and nobody truncates it.
        unsafe { memmap2::MmapMut::map_mut(file) }.expect("map shared file")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn region(&mut self) -> Region<'_> {
        let len = self.map.len();
        // SAFETY: the mapping (page-aligned, so 128-aligned) lives as long as
        // the borrow of self and is used only through weft-core.
        unsafe { Region::new(NonNull::new(self.map.as_mut_ptr()).expect("mapped"), len) }
    }
}

impl Drop for SharedFile {
    fn drop(&mut self) {
        if self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A small, fast, deterministic generator (SplitMix64), so that two
/// processes can produce the same "random" frames from one seed.
#[derive(Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), near enough for tests.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fills `buf` with pseudo-random bytes, 8 at a time.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// FNV-1a over bytes, folded into a running checksum.
pub fn checksum(mut acc: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        acc ^= b as u64;
        acc = acc.wrapping_mul(0x0000_0100_0000_01b3);
    }
    acc
}

pub const CHECKSUM_SEED: u64 = 0xcbf2_9ce4_8422_2325;
