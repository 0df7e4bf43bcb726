//! [`MeshLayout`]: the pure function from a query's shape to its region's
//! size and offsets.

use crate::error::LayoutError;
use crate::region::REGION_ALIGN;
use crate::ring::{check_capacity, RING_HEADER_LEN};

/// Most participants (leader and workers) a mesh can have; Postgres's own
/// ceiling on parallel workers is 1024.
pub const MAX_PARTICIPANTS: u32 = 1024;
/// Most exchanges a mesh can have.
pub const MAX_EXCHANGES: u32 = 4096;

/// Bytes of the mesh identity block.
pub(crate) const IDENTITY_LEN: usize = 128;
/// Bytes of the abort flag and first-error slot.
pub(crate) const ERROR_SLOT_LEN: usize = 256;
/// Bytes of one participant slot.
pub(crate) const SLOT_LEN: usize = 128;

/// Offsets of everything in a mesh region:
///
/// ```text
/// 0                  identity (magic, version, shape, generation)
/// 128                abort flag and first-error slot
/// 384                participant slots, 128 bytes each
/// rings_offset       rings, `ring_stride` apart, ordered by
///                    (exchange, sender, receiver), self-loops included
/// size               end
/// ```
///
/// ```
/// use weft_core::MeshLayout;
/// let layout = MeshLayout::new(3, 2, 1 << 16)?;
/// assert_eq!(layout.ring_count(), 2 * 3 * 3);
/// let a = layout.ring_offset(0, 0, 1)?;
/// let b = layout.ring_offset(0, 0, 2)?;
/// assert_eq!(b - a, layout.ring_stride());
/// assert_eq!(layout.size(), layout.ring_offset(1, 2, 2)? + layout.ring_stride());
/// # Ok::<(), weft_core::LayoutError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeshLayout {
    participants: u32,
    exchanges: u32,
    ring_capacity: usize,
    /// Ring header plus capacity, rounded up to [`REGION_ALIGN`].
    ring_stride: usize,
    rings_offset: usize,
    size: usize,
}

impl MeshLayout {
    /// The layout for `participants` (1..=[`MAX_PARTICIPANTS`]), `exchanges`
    /// (0..=[`MAX_EXCHANGES`]) and rings of `ring_capacity` data bytes (a
    /// power of two in [`MIN_CAPACITY`](crate::MIN_CAPACITY)..=[`MAX_CAPACITY`](crate::MAX_CAPACITY)).
    pub fn new(participants: u32, exchanges: u32, ring_capacity: usize) -> Result<MeshLayout, LayoutError> {
        if !(1..=MAX_PARTICIPANTS).contains(&participants) {
            return Err(LayoutError::Participants);
        }
        if exchanges > MAX_EXCHANGES {
            return Err(LayoutError::Exchanges);
        }
        check_capacity(ring_capacity)?;
        let ring_stride = (RING_HEADER_LEN + ring_capacity).next_multiple_of(REGION_ALIGN);
        let rings_offset = IDENTITY_LEN + ERROR_SLOT_LEN + participants as usize * SLOT_LEN;
        let rings = exchanges as usize * participants as usize * participants as usize;
        let size = rings
            .checked_mul(ring_stride)
            .and_then(|bytes| bytes.checked_add(rings_offset))
            .ok_or(LayoutError::Overflow)?;
        Ok(MeshLayout {
            participants,
            exchanges,
            ring_capacity,
            ring_stride,
            rings_offset,
            size,
        })
    }

    /// The layout with the largest ring capacity, a power of two between
    /// `min_capacity` and `max_capacity`, whose whole region fits in
    /// `budget` bytes; [`LayoutError::TooSmall`] if even `min_capacity`
    /// does not fit (run with fewer participants, or not at all).
    ///
    /// ```
    /// use weft_core::MeshLayout;
    /// // 3 participants, 4 exchanges, at most 4 MiB rings, in 64 MiB.
    /// let layout = MeshLayout::fit(3, 4, 64 << 20, 4 << 20, 64 << 10)?;
    /// assert_eq!(layout.ring_capacity(), 1 << 20);
    /// assert!(layout.size() <= 64 << 20);
    /// assert!(MeshLayout::fit(64, 4, 64 << 20, 4 << 20, 64 << 10).is_err());
    /// # Ok::<(), weft_core::LayoutError>(())
    /// ```
    pub fn fit(
        participants: u32,
        exchanges: u32,
        budget: usize,
        max_capacity: usize,
        min_capacity: usize,
    ) -> Result<MeshLayout, LayoutError> {
        check_capacity(max_capacity)?;
        check_capacity(min_capacity)?;
        let mut capacity = max_capacity;
        while capacity >= min_capacity {
            match MeshLayout::new(participants, exchanges, capacity) {
                Ok(layout) if layout.size <= budget => return Ok(layout),
                Ok(_) | Err(LayoutError::Overflow) => capacity /= 2,
                Err(e) => return Err(e),
            }
        }
        Err(LayoutError::TooSmall)
    }

    /// Number of participants.
    pub fn participants(&self) -> u32 {
        self.participants
    }

    /// Number of exchanges.
    pub fn exchanges(&self) -> u32 {
        self.exchanges
    }

    /// Data capacity of each ring.
    pub fn ring_capacity(&self) -> usize {
        self.ring_capacity
    }

    /// Distance between consecutive rings.
    pub fn ring_stride(&self) -> usize {
        self.ring_stride
    }

    /// Number of rings: exchanges x participants^2.
    pub fn ring_count(&self) -> usize {
        self.exchanges as usize * self.participants as usize * self.participants as usize
    }

    /// Total bytes of the region.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Offset of participant `i`'s slot.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn slot_offset(&self, participant: u32) -> Result<usize, LayoutError> {
        if participant >= self.participants {
            return Err(LayoutError::Index);
        }
        Ok(IDENTITY_LEN + ERROR_SLOT_LEN + participant as usize * SLOT_LEN)
    }

    /// Offset of the ring that carries `exchange`'s rows from `sender` to
    /// `receiver`.
    pub fn ring_offset(&self, exchange: u32, sender: u32, receiver: u32) -> Result<usize, LayoutError> {
        if exchange >= self.exchanges || sender >= self.participants || receiver >= self.participants {
            return Err(LayoutError::Index);
        }
        let p = self.participants as usize;
        let index = (exchange as usize * p + sender as usize) * p + receiver as usize;
        // Cannot overflow: index < ring_count and new() checked the total.
        Ok(self.rings_offset + index * self.ring_stride)
    }
}
