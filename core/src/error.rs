//! What ring, mesh and layout operations can report.

use core::fmt;

/// The outcome of a ring operation that did not succeed.
///
/// Nothing in weft-core blocks: an operation that cannot make progress now
/// returns [`Error::WouldBlock`], and the caller decides how to wait (see
/// [`Producer::arm_wakeup`](crate::Producer::arm_wakeup)).
///
/// ```
/// use weft_core::Error;
/// assert!(Error::WouldBlock.is_would_block());
/// assert!(!Error::Closed.is_would_block());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Not now: the ring is full (producer) or empty (consumer).
    WouldBlock,
    /// The other side closed the ring (or this side did). For a consumer this
    /// is returned only once every frame committed before the close has been
    /// read, so a clean stream is `End` followed by `Closed`; `Closed`
    /// without a preceding [`MessageKind::End`](crate::MessageKind::End)
    /// means the producer went away mid-stream.
    Closed,
    /// The payload can never fit: larger than the ring's largest frame, or
    /// larger than the buffer offered to hold a reassembled message.
    TooLarge,
    /// Shared memory holds something this protocol never writes. The ring
    /// must not be used further.
    Corrupt(Corruption),
}

impl Error {
    /// Whether this is [`Error::WouldBlock`].
    pub fn is_would_block(&self) -> bool {
        matches!(self, Error::WouldBlock)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::WouldBlock => f.write_str("ring operation would block"),
            Error::Closed => f.write_str("ring closed"),
            Error::TooLarge => f.write_str("message too large for the ring or buffer"),
            Error::Corrupt(what) => write!(f, "ring shared memory is corrupt: {what}"),
        }
    }
}

impl core::error::Error for Error {}

impl From<Corruption> for Error {
    fn from(c: Corruption) -> Self {
        Error::Corrupt(c)
    }
}

/// Which check a corrupt ring failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The peer's position went backwards, past this side's, or off the
    /// frame grid.
    Position,
    /// A frame header with a bad mark, kind or flags.
    FrameHeader,
    /// A frame longer than the ring allows or than the bytes published.
    FrameLength,
    /// A padding frame that does not end exactly at the end of the data area.
    Padding,
    /// A fragment of one kind continued by a fragment of another.
    Fragment,
    /// A state word holding a value no side ever writes.
    State,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Corruption::Position => "peer position out of range",
            Corruption::FrameHeader => "invalid frame header",
            Corruption::FrameLength => "frame length out of range",
            Corruption::Padding => "invalid padding frame",
            Corruption::Fragment => "fragment kind changed within a message",
            Corruption::State => "invalid state word",
        })
    }
}

/// Why a ring or mesh could not be laid out, initialised or attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Ring capacity not a power of two within
    /// [`MIN_CAPACITY`](crate::MIN_CAPACITY)..=[`MAX_CAPACITY`](crate::MAX_CAPACITY).
    Capacity,
    /// Participant count outside 1..=[`MAX_PARTICIPANTS`](crate::MAX_PARTICIPANTS).
    Participants,
    /// Exchange count above [`MAX_EXCHANGES`](crate::MAX_EXCHANGES).
    Exchanges,
    /// The sizes overflow the address space.
    Overflow,
    /// The region is smaller than the layout needs.
    TooSmall,
    /// The region does not start on a 128-byte boundary.
    Misaligned,
    /// The region does not start with the expected magic number: not
    /// initialised, or not a weft ring or mesh.
    BadMagic,
    /// Written by a different layout version of weft.
    Version,
    /// The stored shape (capacity, participants, exchanges, size) differs
    /// from what the attacher expects or is itself invalid.
    Shape,
    /// Left over from another query: the generation differs.
    Generation,
    /// The producer or consumer side of the ring is already taken.
    Claimed,
    /// An index (exchange, participant) out of range.
    Index,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayoutError::Capacity => "ring capacity must be a power of two within bounds",
            LayoutError::Participants => "participant count out of range",
            LayoutError::Exchanges => "exchange count out of range",
            LayoutError::Overflow => "layout size overflows",
            LayoutError::TooSmall => "shared memory region too small for the layout",
            LayoutError::Misaligned => "shared memory region not 128-byte aligned",
            LayoutError::BadMagic => "shared memory region is not an initialised weft structure",
            LayoutError::Version => "shared memory written by another weft layout version",
            LayoutError::Shape => "shared memory layout does not match",
            LayoutError::Generation => "shared memory belongs to another generation",
            LayoutError::Claimed => "ring side already claimed",
            LayoutError::Index => "index out of range",
        })
    }
}

impl core::error::Error for LayoutError {}
