//! The single-producer single-consumer frame ring.
//!
//! # Algorithm
//!
//! A bounded SPSC byte queue in the style of Lamport's ring buffer with
//! cached indices (as in rtrb, Rigtorp's `SPSCQueue`, and Linux's `kfifo`),
//! carrying variable-length frames instead of fixed-size items:
//!
//! - Positions are `u64` byte counts that only grow; the index into the data
//!   area is `position & (capacity - 1)`. At 100 GB/s a `u64` lasts 5 years,
//!   so positions never wrap and `write - read` is always the bytes in use.
//! - The producer owns `write_pos`, the consumer `read_pos`. Each publishes
//!   its own with `Release` after touching the data, and loads the other's
//!   with `Acquire` only when its cached copy says the ring is full (empty).
//! - Frames are contiguous: one that would straddle the end of the data area
//!   is preceded by a padding frame to the end, and the largest frame is half
//!   the capacity, so any frame fits once the ring drains.
//!
//! # Layout in shared memory
//!
//! ```text
//! offset  block       written by        fields
//!      0  identity    initialiser       magic, layout version, capacity, generation
//!    128  producer    producer          write_pos
//!    256  consumer    consumer          read_pos
//!    384  control     both, rarely      claim/close state of each side, waiting flags
//!    512  data        producer frames   `capacity` bytes
//! ```
//!
//! The hot words (`write_pos`, `read_pos`) sit alone in their 128-byte blocks.
//! DESIGN.md puts each side's closed flag beside its position; we keep them in
//! the control block instead, next to the waiting flags, because the producer
//! reads that block after every publish anyway (the wake handshake) and so
//! learns of a consumer's close at its next frame, while reading the consumer
//! block would drag `read_pos`'s line back and forth on every frame.

mod consumer;
mod producer;

pub use consumer::{Consumer, Frame, MessageBuf, SliceBuf};
pub use producer::{Grant, Producer, SendProgress};

use core::ptr::NonNull;

use crate::error::{Corruption, LayoutError};
use crate::frame::{FRAME_ALIGN, FRAME_HEADER_LEN};
use crate::sync::{fence, AtomicU32, AtomicU64, Ordering, Shadow};

#[cfg(not(loom))]
use crate::region::Region;

/// Bytes of a ring's header, before its data area.
pub const RING_HEADER_LEN: usize = 512;
/// Smallest data area capacity in bytes.
pub const MIN_CAPACITY: usize = 64;
/// Largest data area capacity in bytes (frame lengths are `u32`).
pub const MAX_CAPACITY: usize = 1 << 30;

/// "weftring", little-endian.
const RING_MAGIC: u64 = u64::from_le_bytes(*b"weftring");
/// Bumped whenever the shared layout or protocol changes.
pub const LAYOUT_VERSION: u32 = 1;

/// Encoding of `producer_state` and `consumer_state`: a side is claimed by
/// at most one handle, then closed; it never reopens.
mod side {
    pub(super) const FREE: u32 = 0;
    pub(super) const OPEN: u32 = 1;
    pub(super) const CLOSED: u32 = 2;
}

#[repr(C, align(128))]
struct IdentityBlock {
    /// [`RING_MAGIC`] once initialisation is complete (stored last, Release).
    magic: AtomicU64,
    /// [`LAYOUT_VERSION`].
    version: AtomicU32,
    _reserved: AtomicU32,
    /// Data area size in bytes: a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
    capacity: AtomicU64,
    /// Chosen by the initialiser (for a query's mesh, unique per query) so
    /// that a ring left over from an earlier query is never attached.
    generation: AtomicU64,
}

#[repr(C, align(128))]
struct ProducerBlock {
    /// Bytes ever published. Multiple of 8; `read_pos <= write_pos <=
    /// read_pos + capacity`. Stored with Release after the frames it covers.
    write_pos: AtomicU64,
}

#[repr(C, align(128))]
struct ConsumerBlock {
    /// Bytes ever released. Multiple of 8; never passes `write_pos`. Stored
    /// with Release after the consumer's last read of the bytes it covers.
    read_pos: AtomicU64,
}

#[repr(C, align(128))]
struct ControlBlock {
    /// `side::FREE`, `OPEN` or `CLOSED`. CLOSED is stored with Release after
    /// the side's last position store.
    producer_state: AtomicU32,
    consumer_state: AtomicU32,
    /// 1 from when the producer prepares to sleep waiting for space until
    /// its next attempt after waking. Written only by the producer; the
    /// consumer only reads it (one writer per flag: nothing to race).
    producer_waiting: AtomicU32,
    /// The same for the consumer waiting for frames.
    consumer_waiting: AtomicU32,
}

/// A ring's header; lives at the start of the ring's region.
#[repr(C)]
pub(crate) struct RingHeader {
    identity: IdentityBlock,
    producer: ProducerBlock,
    consumer: ConsumerBlock,
    control: ControlBlock,
}

#[cfg(not(loom))]
mod layout_checks {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};
    use static_assertions::const_assert_eq;

    const_assert_eq!(size_of::<IdentityBlock>(), 128);
    const_assert_eq!(size_of::<ProducerBlock>(), 128);
    const_assert_eq!(size_of::<ConsumerBlock>(), 128);
    const_assert_eq!(size_of::<ControlBlock>(), 128);
    const_assert_eq!(size_of::<RingHeader>(), RING_HEADER_LEN);
    const_assert_eq!(align_of::<RingHeader>(), crate::region::REGION_ALIGN);
    const_assert_eq!(offset_of!(RingHeader, identity), 0);
    const_assert_eq!(offset_of!(RingHeader, producer), 128);
    const_assert_eq!(offset_of!(RingHeader, consumer), 256);
    const_assert_eq!(offset_of!(RingHeader, control), 384);
    const_assert_eq!(offset_of!(IdentityBlock, magic), 0);
    const_assert_eq!(offset_of!(IdentityBlock, version), 8);
    const_assert_eq!(offset_of!(IdentityBlock, capacity), 16);
    const_assert_eq!(offset_of!(IdentityBlock, generation), 24);
    const_assert_eq!(offset_of!(ControlBlock, producer_state), 0);
    const_assert_eq!(offset_of!(ControlBlock, consumer_state), 4);
    const_assert_eq!(offset_of!(ControlBlock, producer_waiting), 8);
    const_assert_eq!(offset_of!(ControlBlock, consumer_waiting), 12);
    // The data area follows the header on the frame grid and on a block.
    const_assert_eq!(RING_HEADER_LEN % crate::region::REGION_ALIGN, 0);
    const_assert_eq!(MIN_CAPACITY % FRAME_ALIGN, 0);

    // SAFETY: repr(C), atomics only.
    unsafe impl crate::region::SharedBlock for RingHeader {}
}

impl RingHeader {
    /// An initialised header in ordinary memory, for loom models.
    #[cfg(loom)]
    pub(crate) fn new_for_loom(capacity: usize) -> RingHeader {
        let header = RingHeader {
            identity: IdentityBlock {
                magic: AtomicU64::new(0),
                version: AtomicU32::new(0),
                _reserved: AtomicU32::new(0),
                capacity: AtomicU64::new(0),
                generation: AtomicU64::new(0),
            },
            producer: ProducerBlock {
                write_pos: AtomicU64::new(0),
            },
            consumer: ConsumerBlock {
                read_pos: AtomicU64::new(0),
            },
            control: ControlBlock {
                producer_state: AtomicU32::new(0),
                consumer_state: AtomicU32::new(0),
                producer_waiting: AtomicU32::new(0),
                consumer_waiting: AtomicU32::new(0),
            },
        };
        header.initialise(capacity, 0);
        header
    }

    /// Writes a fresh, empty ring's header; the magic goes last, with Release,
    /// so that an attacher that sees it sees the rest.
    fn initialise(&self, capacity: usize, generation: u64) {
        let id = &self.identity;
        id.magic.store(0, Ordering::Relaxed);
        id.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        id._reserved.store(0, Ordering::Relaxed);
        id.capacity.store(capacity as u64, Ordering::Relaxed);
        id.generation.store(generation, Ordering::Relaxed);
        self.producer.write_pos.store(0, Ordering::Relaxed);
        self.consumer.read_pos.store(0, Ordering::Relaxed);
        let ctl = &self.control;
        ctl.producer_state.store(side::FREE, Ordering::Relaxed);
        ctl.consumer_state.store(side::FREE, Ordering::Relaxed);
        ctl.producer_waiting.store(0, Ordering::Relaxed);
        ctl.consumer_waiting.store(0, Ordering::Relaxed);
        id.magic.store(RING_MAGIC, Ordering::Release);
    }
}

/// One end's private view of its own side of the ring, the same for the
/// producer and the consumer: whether it closed, and whether its waiting
/// flag is set.
#[derive(Debug, Default)]
struct End {
    closed: bool,
    /// Our waiting flag is set: we armed a wakeup and have not tried since.
    armed: bool,
}

impl End {
    /// Sets our waiting flag (see `Ring::arm_flag`).
    fn arm(&mut self, own_waiting: &AtomicU32) {
        Ring::arm_flag(own_waiting);
        self.armed = true;
    }

    /// After the re-check that follows `arm`: sleep if the peer did nothing
    /// meanwhile, otherwise clear the flag again and retry.
    fn settle(&mut self, own_waiting: &AtomicU32, peer_moved: bool) -> Armed {
        if peer_moved {
            self.disarm(own_waiting);
            Armed::Retry
        } else {
            Armed::Sleep
        }
    }

    /// Awake and trying again: the peer need not wake us any more.
    fn disarm(&mut self, own_waiting: &AtomicU32) {
        if self.armed {
            self.armed = false;
            Ring::disarm_flag(own_waiting);
        }
    }

    /// Closes our side once; `true` if the peer must be notified.
    fn close(&mut self, own_state: &AtomicU32, peer_waiting: &AtomicU32) -> bool {
        if self.closed {
            return false;
        }
        self.closed = true;
        Ring::close_side(own_state, peer_waiting)
    }
}

/// Whether a sleep may begin: the answer of
/// [`Producer::arm_wakeup`] and [`Consumer::arm_wakeup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Armed {
    /// The waiting flag is set and nothing changed since the last attempt:
    /// the caller may sleep until notified, and will be.
    Sleep,
    /// Something changed (the peer made progress or closed): retry instead
    /// of sleeping. The waiting flag has been cleared.
    Retry,
}

/// A handle to one ring in a [`Region`]; cheap to copy, one per process.
///
/// The ring is used through one [`Producer`] and one [`Consumer`], claimed
/// from any handle in any process; a second claim of a side fails.
///
/// ```
/// # use core::ptr::NonNull;
/// use weft_core::{MessageKind, Region, Ring};
/// #[repr(C, align(128))]
/// struct Mem([u8; 512 + 1024]);
/// let mut mem = Mem([0; 512 + 1024]);
/// // SAFETY: `mem` outlives the region and is only used through it.
/// let region = unsafe { Region::new(NonNull::from(&mut mem).cast(), 512 + 1024) };
///
/// let ring = Ring::init(region, 1024, 7)?;
/// let attached = Ring::attach(region, 7)?; // e.g. in another process
/// let mut tx = ring.producer()?;
/// let mut rx = attached.consumer()?;
///
/// tx.send(b"hello")?;
/// let frame = rx.read()?;
/// assert_eq!((frame.kind(), frame.payload()), (MessageKind::Data, &b"hello"[..]));
/// frame.release();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy)]
pub struct Ring<'a> {
    header: &'a RingHeader,
    /// Start of the data area: `capacity` bytes, 8-aligned.
    data: NonNull<u8>,
    /// Validated: a power of two in `MIN_CAPACITY..=MAX_CAPACITY`. Read from
    /// shared memory once, at attach, and trusted locally from then on.
    capacity: usize,
    generation: u64,
    shadow: Shadow<'a>,
}

// SAFETY: the header is atomics only. The data area is shared by design;
// which side may touch which bytes is decided by the protocol, enforced by
// the single Producer and single Consumer claimed through the header.
unsafe impl Send for Ring<'_> {}
// SAFETY: as for Send.
unsafe impl Sync for Ring<'_> {}

impl core::fmt::Debug for Ring<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Checks a ring capacity: a power of two within bounds.
pub(crate) fn check_capacity(capacity: usize) -> Result<(), LayoutError> {
    if capacity.is_power_of_two() && (MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        Ok(())
    } else {
        Err(LayoutError::Capacity)
    }
}

impl<'a> Ring<'a> {
    /// Bytes a ring with this data capacity occupies, header included.
    ///
    /// ```
    /// assert_eq!(weft_core::Ring::size_for(4096), Ok(512 + 4096));
    /// assert!(weft_core::Ring::size_for(1000).is_err());
    /// ```
    pub fn size_for(capacity: usize) -> Result<usize, LayoutError> {
        check_capacity(capacity)?;
        Ok(RING_HEADER_LEN + capacity)
    }

    /// Writes a new, empty ring at the start of `region`.
    ///
    /// Nothing else may be using the region's ring while this runs.
    #[cfg(not(loom))]
    pub fn init(region: Region<'a>, capacity: usize, generation: u64) -> Result<Ring<'a>, LayoutError> {
        region.check(Self::size_for(capacity)?)?;
        let header: &RingHeader = region.shared(0)?;
        header.initialise(capacity, generation);
        Self::from_parts(region, header, capacity, generation)
    }

    /// Attaches to a ring that [`Ring::init`] wrote, after checking its
    /// magic, layout version, capacity and generation.
    #[cfg(not(loom))]
    pub fn attach(region: Region<'a>, generation: u64) -> Result<Ring<'a>, LayoutError> {
        region.check(RING_HEADER_LEN)?;
        let header: &RingHeader = region.shared(0)?;
        let id = &header.identity;
        if id.magic.load(Ordering::Acquire) != RING_MAGIC {
            return Err(LayoutError::BadMagic);
        }
        if id.version.load(Ordering::Relaxed) != LAYOUT_VERSION {
            return Err(LayoutError::Version);
        }
        let capacity = usize::try_from(id.capacity.load(Ordering::Relaxed)).map_err(|_| LayoutError::Shape)?;
        check_capacity(capacity).map_err(|_| LayoutError::Shape)?;
        region.check(RING_HEADER_LEN + capacity)?;
        if id.generation.load(Ordering::Relaxed) != generation {
            return Err(LayoutError::Generation);
        }
        Self::from_parts(region, header, capacity, generation)
    }

    #[cfg(not(loom))]
    fn from_parts(
        region: Region<'a>,
        header: &'a RingHeader,
        capacity: usize,
        generation: u64,
    ) -> Result<Ring<'a>, LayoutError> {
        let data = region
            .subregion(RING_HEADER_LEN, capacity)
            .ok_or(LayoutError::TooSmall)?;
        Ok(Ring {
            header,
            // SAFETY: a subregion's pointer is non-null (it is inside `region`).
            data: unsafe { NonNull::new_unchecked(data.as_ptr()) },
            capacity,
            generation,
            shadow: Shadow::NONE,
        })
    }

    /// A ring over loom-tracked memory (see `crate::loom_support`).
    #[cfg(loom)]
    pub(crate) fn for_loom(header: &'a RingHeader, data: NonNull<u8>, capacity: usize, shadow: Shadow<'a>) -> Ring<'a> {
        check_capacity(capacity).expect("loom ring capacity");
        Ring {
            header,
            data,
            capacity,
            generation: 0,
            shadow,
        }
    }

    /// Data area size in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The generation the ring was initialised with.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The largest payload one frame can carry: half the capacity less the
    /// frame header. Longer messages are sent as fragments
    /// ([`Producer::send_message`]).
    pub fn max_payload(&self) -> usize {
        self.capacity / 2 - FRAME_HEADER_LEN
    }

    /// Claims the producer side. Fails with [`LayoutError::Claimed`] if it
    /// was claimed before, by any process, and with [`LayoutError::Shape`] if
    /// the positions in shared memory are inconsistent.
    pub fn producer(&self) -> Result<Producer<'a>, LayoutError> {
        self.claim(&self.header.control.producer_state)?;
        let (read, write) = self.load_positions()?;
        Ok(Producer::new(*self, write, read))
    }

    /// Claims the consumer side; see [`Ring::producer`].
    pub fn consumer(&self) -> Result<Consumer<'a>, LayoutError> {
        self.claim(&self.header.control.consumer_state)?;
        let (read, write) = self.load_positions()?;
        Ok(Consumer::new(*self, read, write))
    }

    fn claim(&self, state: &AtomicU32) -> Result<(), LayoutError> {
        state
            .compare_exchange(side::FREE, side::OPEN, Ordering::AcqRel, Ordering::Relaxed)
            .map(|_| ())
            .map_err(|_| LayoutError::Claimed)
    }

    fn load_positions(&self) -> Result<(u64, u64), LayoutError> {
        let read = self.header.consumer.read_pos.load(Ordering::Acquire);
        let write = self.header.producer.write_pos.load(Ordering::Acquire);
        let grid = FRAME_ALIGN as u64;
        if !read.is_multiple_of(grid)
            || !write.is_multiple_of(grid)
            || write < read
            || write - read > self.capacity as u64
        {
            return Err(LayoutError::Shape);
        }
        Ok((read, write))
    }

    /// Index into the data area of a position.
    #[inline]
    fn index(&self, pos: u64) -> usize {
        // Truncation is the point: capacity is a power of two <= 2^30.
        (pos as usize) & (self.capacity - 1)
    }

    /// Validates a side-state word read from shared memory; `Ok(true)` if
    /// that side has closed.
    fn is_closed(state: u32) -> Result<bool, Corruption> {
        match state {
            side::FREE | side::OPEN => Ok(false),
            side::CLOSED => Ok(true),
            _ => Err(Corruption::State),
        }
    }

    /// Marks a side closed (Release: after all its position stores), then
    /// takes the peer's waiting flag: `true` if the peer must be notified.
    fn close_side(state: &AtomicU32, peer_waiting: &AtomicU32) -> bool {
        state.store(side::CLOSED, Ordering::Release);
        Self::check_flag(peer_waiting)
    }

    /// The publishing half of the wake handshake; see
    /// [`Producer::peer_waiting`].
    fn check_flag(peer_waiting: &AtomicU32) -> bool {
        // Pairs with the fence in `arm_flag`: of the two SeqCst fences, one
        // comes first in the single total order. If ours does, the sleeper's
        // re-check after its fence sees our publish; if theirs does, our load
        // below sees their flag. Either way the sleeper does not sleep
        // through our publish. (Release alone cannot do this: it orders our
        // earlier stores, not this later load.)
        fence(Ordering::SeqCst);
        // Only read, never cleared here: a flag with one writer cannot be
        // lost to a race between its owner re-arming and a peer clearing.
        // A peer still asleep is told again at each publish, which the
        // platform's notify absorbs (Postgres's SetLatch returns at once on
        // a latch already set).
        peer_waiting.load(Ordering::Relaxed) != 0
    }

    /// The sleeping half of the wake handshake: sets our waiting flag, then
    /// fences so that the caller's re-check of the peer's position cannot be
    /// satisfied before the flag is visible. See `check_flag`.
    fn arm_flag(own_waiting: &AtomicU32) {
        own_waiting.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Clears our waiting flag once we are awake and trying again, so that
    /// a busy side costs its peer no notifications.
    fn disarm_flag(own_waiting: &AtomicU32) {
        own_waiting.store(0, Ordering::Relaxed);
    }
}
