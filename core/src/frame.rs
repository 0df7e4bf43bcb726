//! The 8-byte frame header and the kinds of frame.
//!
//! Every frame in a ring's data area starts at a multiple of [`FRAME_ALIGN`]
//! with an 8-byte little-endian header:
//!
//! ```text
//!  byte 0          4      5       6             8
//!  +---------------+------+-------+-------------+--------------------------+
//!  | payload len   | kind | flags | mark "WF"   | payload, padded to 8 ... |
//!  | u32           | u8   | u8    | u16         |                          |
//!  +---------------+------+-------+-------------+--------------------------+
//! ```
//!
//! The mark makes most stray or torn headers fail loudly as
//! [`Corruption::FrameHeader`] instead of being read as data. The only flag is
//! [`FLAG_MORE`]: another fragment of the same message follows.

use crate::error::Corruption;

/// Frames start at multiples of this many bytes; payloads are padded to it.
pub const FRAME_ALIGN: usize = 8;

/// Size of a frame header in bytes.
pub const FRAME_HEADER_LEN: usize = 8;

/// Upper 16 bits of the tag word of every valid header ("WF").
const MARK: u32 = 0x5746 << 16;
const MARK_MASK: u32 = 0xffff << 16;
/// Another fragment of the same message follows this frame.
pub(crate) const FLAG_MORE: u32 = 1 << 8;
const KIND_MASK: u32 = 0xff;

/// What a message means to its reader.
///
/// A message is one frame, or a run of fragment frames of the same kind.
///
/// ```
/// use weft_core::MessageKind;
/// assert_ne!(MessageKind::Data, MessageKind::End);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageKind {
    /// Application payload.
    Data = 1,
    /// The producer's explicit end of stream. A producer that closes without
    /// sending one has failed; see [`Error::Closed`](crate::Error::Closed).
    End = 2,
    /// The producer failed; the payload is its message (UTF-8 by convention).
    Error = 3,
}

/// A frame's kind as stored: a message kind, or padding to the end of the
/// data area (which readers skip and never see).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoredKind {
    Message(MessageKind),
    Padding,
}

const KIND_PADDING: u32 = 4;

/// A decoded, validated frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) len: u32,
    pub(crate) kind: StoredKind,
    pub(crate) more: bool,
}

impl FrameHeader {
    pub(crate) fn encode(self) -> [u8; FRAME_HEADER_LEN] {
        let kind = match self.kind {
            StoredKind::Message(kind) => kind as u32,
            StoredKind::Padding => KIND_PADDING,
        };
        let more = if self.more { FLAG_MORE } else { 0 };
        let tag = MARK | more | kind;
        let mut out = [0u8; FRAME_HEADER_LEN];
        out[..4].copy_from_slice(&self.len.to_le_bytes());
        out[4..].copy_from_slice(&tag.to_le_bytes());
        out
    }

    /// Decodes bytes read from shared memory; anything but a header this
    /// module could have written is [`Corruption::FrameHeader`].
    /// `word` is the header's 8 bytes read as a little-endian `u64`.
    #[inline]
    pub(crate) fn decode(word: u64) -> Result<FrameHeader, Corruption> {
        let len = word as u32;
        let tag = (word >> 32) as u32;
        if tag & MARK_MASK != MARK || tag & !(MARK_MASK | FLAG_MORE | KIND_MASK) != 0 {
            return Err(Corruption::FrameHeader);
        }
        let more = tag & FLAG_MORE != 0;
        let kind = match tag & KIND_MASK {
            1 => StoredKind::Message(MessageKind::Data),
            2 => StoredKind::Message(MessageKind::End),
            3 => StoredKind::Message(MessageKind::Error),
            KIND_PADDING if !more => StoredKind::Padding,
            _ => return Err(Corruption::FrameHeader),
        };
        Ok(FrameHeader { len, kind, more })
    }
}

/// Bytes a frame with `payload` bytes occupies: header plus padded payload.
/// `payload` is at most a ring's maximum payload, so this cannot overflow.
#[inline]
pub(crate) const fn frame_size(payload: usize) -> usize {
    FRAME_HEADER_LEN + padded(payload)
}

/// `len` rounded up to [`FRAME_ALIGN`].
#[inline]
pub(crate) const fn padded(len: usize) -> usize {
    (len + (FRAME_ALIGN - 1)) & !(FRAME_ALIGN - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for kind in [
            StoredKind::Message(MessageKind::Data),
            StoredKind::Message(MessageKind::End),
            StoredKind::Message(MessageKind::Error),
            StoredKind::Padding,
        ] {
            for more in [false, true] {
                let h = FrameHeader { len: 1234, kind, more };
                let decoded = FrameHeader::decode(u64::from_le_bytes(h.encode()));
                if kind == StoredKind::Padding && more {
                    assert_eq!(decoded, Err(Corruption::FrameHeader));
                } else {
                    assert_eq!(decoded, Ok(h));
                }
            }
        }
    }

    #[test]
    fn rejects_zeroes_and_unknown_bits() {
        assert!(FrameHeader::decode(0).is_err());
        let mut bytes = FrameHeader {
            len: 0,
            kind: StoredKind::Message(MessageKind::Data),
            more: false,
        }
        .encode();
        bytes[5] |= 0x02; // an undefined flag
        assert!(FrameHeader::decode(u64::from_le_bytes(bytes)).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(frame_size(0), 8);
        assert_eq!(frame_size(1), 16);
        assert_eq!(frame_size(8), 16);
        assert_eq!(frame_size(9), 24);
    }
}
