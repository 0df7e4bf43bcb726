//! The mesh-wide abort flag and first-error slot: the first participant to
//! fail records why, exactly once, and every participant can read it.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Longest error message the slot keeps, in bytes; longer ones are cut.
pub const ERROR_MESSAGE_MAX: usize = 232;
const MESSAGE_WORDS: usize = ERROR_MESSAGE_MAX / 8;

/// Encoding of `state`: EMPTY -> WRITING (one CAS winner) -> WRITTEN.
mod state {
    pub(super) const EMPTY: u32 = 0;
    pub(super) const WRITING: u32 = 1;
    pub(super) const WRITTEN: u32 = 2;
}

/// The abort flag and first-error record, 256 bytes of a mesh's header.
///
/// Everything is atomic, message included (as `u64` words), so that a
/// reader racing a faulty writer reads garbage at worst, never a torn value
/// in the Rust memory model's sense.
#[repr(C, align(128))]
pub struct ErrorSlot {
    /// 1 once the winner's record is WRITTEN (stored after it, Release):
    /// seeing the flag means the record is readable.
    aborted: AtomicU32,
    /// `state::EMPTY`, `WRITING` or `WRITTEN`; only the CAS winner moves it
    /// past EMPTY.
    state: AtomicU32,
    participant: AtomicU32,
    code: AtomicU32,
    /// Message length in bytes, at most [`ERROR_MESSAGE_MAX`].
    len: AtomicU32,
    _reserved: AtomicU32,
    /// Message bytes, little-endian in 8-byte words.
    message: [AtomicU64; MESSAGE_WORDS],
}

#[cfg(not(loom))]
mod layout_checks {
    use super::*;
    use core::mem::{offset_of, size_of};
    use static_assertions::const_assert_eq;

    const_assert_eq!(size_of::<ErrorSlot>(), 256);
    const_assert_eq!(offset_of!(ErrorSlot, message), 24);
    const_assert_eq!(ERROR_MESSAGE_MAX % 8, 0);

    // SAFETY: repr(C), atomics only.
    unsafe impl crate::region::SharedBlock for ErrorSlot {}
}

/// A participant's failure as recorded in the mesh: who, a numeric code of
/// the caller's choosing, and the (possibly cut) message.
///
/// ```
/// # let mut mem = weft_core::doc_support::Mem::<8192>::new();
/// # let mesh = mem.mesh(2, 0, 1024);
/// assert!(mesh.abort(1, 42, b"division by zero"));
/// assert!(!mesh.abort(0, 7, b"too late: not the first"));
/// let first = mesh.first_error().unwrap();
/// assert_eq!((first.participant, first.code), (1, 42));
/// assert_eq!(first.message(), b"division by zero");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstError {
    /// The participant that failed first.
    pub participant: u32,
    /// The code it gave.
    pub code: u32,
    len: usize,
    bytes: [u8; ERROR_MESSAGE_MAX],
}

impl FirstError {
    /// The message bytes (UTF-8 if the writer wrote UTF-8, though a cut may
    /// fall inside a character).
    pub fn message(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl ErrorSlot {
    /// An empty slot in ordinary memory, for loom models.
    #[cfg(loom)]
    pub fn new() -> ErrorSlot {
        ErrorSlot {
            aborted: AtomicU32::new(0),
            state: AtomicU32::new(state::EMPTY),
            participant: AtomicU32::new(0),
            code: AtomicU32::new(0),
            len: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
            message: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Resets to empty; only while no participant uses the mesh.
    #[cfg(not(loom))]
    pub(crate) fn initialise(&self) {
        self.aborted.store(0, Ordering::Relaxed);
        self.state.store(state::EMPTY, Ordering::Relaxed);
        self.participant.store(0, Ordering::Relaxed);
        self.code.store(0, Ordering::Relaxed);
        self.len.store(0, Ordering::Relaxed);
        self._reserved.store(0, Ordering::Relaxed);
        for word in &self.message {
            word.store(0, Ordering::Relaxed);
        }
    }

    /// Records the error if no other was recorded first, then raises the
    /// abort flag. Returns whether this call won. Messages longer than
    /// [`ERROR_MESSAGE_MAX`] are cut.
    pub fn record(&self, participant: u32, code: u32, message: &[u8]) -> bool {
        // Acquire/Relaxed suffice: the winner's writes are published by the
        // Release stores below, and a loser writes nothing.
        if self
            .state
            .compare_exchange(state::EMPTY, state::WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let message = &message[..message.len().min(ERROR_MESSAGE_MAX)];
        self.participant.store(participant, Ordering::Relaxed);
        self.code.store(code, Ordering::Relaxed);
        self.len.store(message.len() as u32, Ordering::Relaxed);
        for (word, chunk) in self.message.iter().zip(message.chunks(8)) {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        // Release: a reader that Acquire-loads WRITTEN (or the abort flag)
        // sees every field above.
        self.state.store(state::WRITTEN, Ordering::Release);
        self.aborted.store(1, Ordering::Release);
        true
    }

    /// Whether some participant has recorded an error (and so the query is
    /// aborting). When true, [`first_error`](Self::first_error) returns it.
    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire) != 0
    }

    /// The recorded error, once completely written.
    pub fn first_error(&self) -> Option<FirstError> {
        if self.state.load(Ordering::Acquire) != state::WRITTEN {
            return None;
        }
        // Untrusted: a bad length is cut to the maximum, never trusted.
        let len = (self.len.load(Ordering::Relaxed) as usize).min(ERROR_MESSAGE_MAX);
        let mut bytes = [0u8; ERROR_MESSAGE_MAX];
        for (chunk, word) in bytes.chunks_mut(8).zip(&self.message) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        Some(FirstError {
            participant: self.participant.load(Ordering::Relaxed),
            code: self.code.load(Ordering::Relaxed),
            len,
            bytes,
        })
    }
}

#[cfg(loom)]
impl Default for ErrorSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for ErrorSlot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ErrorSlot")
            .field("aborted", &self.is_aborted())
            .field("first_error", &self.first_error())
            .finish()
    }
}
