//! A participant's slot in the mesh header: its state and wake token, and
//! the registration barrier built on them.

use crate::error::{Corruption, LayoutError};
use crate::sync::{fence, AtomicU32, AtomicU64, Ordering};

/// Where a participant is in a query's life, as its slot records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParticipantState {
    /// Not registered (yet): peers must not send to it.
    Absent,
    /// Registered with a wake token; peers may send to it and notify it.
    Ready,
    /// Finished its part of the query.
    Done,
    /// Left without finishing (error, cancellation, exit).
    Failed,
}

impl ParticipantState {
    const ABSENT: u32 = 0;
    const READY: u32 = 1;
    const DONE: u32 = 2;
    const FAILED: u32 = 3;

    fn encode(self) -> u32 {
        match self {
            ParticipantState::Absent => Self::ABSENT,
            ParticipantState::Ready => Self::READY,
            ParticipantState::Done => Self::DONE,
            ParticipantState::Failed => Self::FAILED,
        }
    }

    fn decode(word: u32) -> Result<ParticipantState, Corruption> {
        Ok(match word {
            Self::ABSENT => ParticipantState::Absent,
            Self::READY => ParticipantState::Ready,
            Self::DONE => ParticipantState::Done,
            Self::FAILED => ParticipantState::Failed,
            _ => return Err(Corruption::State),
        })
    }
}

/// One participant's slot; each participant writes only its own, and slots
/// are a block (128 bytes) apart.
#[repr(C, align(128))]
pub struct ParticipantSlot {
    /// A [`ParticipantState`] encoding. READY is stored (Release) after the
    /// wake token, and followed by a SeqCst fence (the barrier).
    state: AtomicU32,
    _reserved: AtomicU32,
    /// Opaque to weft-core; the platform's way to wake this participant (in
    /// Postgres, its PGPROC number).
    wake_token: AtomicU64,
}

#[cfg(not(loom))]
mod layout_checks {
    use super::*;
    use core::mem::{offset_of, size_of};
    use static_assertions::const_assert_eq;

    const_assert_eq!(size_of::<ParticipantSlot>(), super::super::layout::SLOT_LEN);
    const_assert_eq!(offset_of!(ParticipantSlot, wake_token), 8);

    // SAFETY: repr(C), atomics only.
    unsafe impl crate::region::SharedBlock for ParticipantSlot {}
}

impl ParticipantSlot {
    /// An empty slot in ordinary memory, for loom models.
    #[cfg(loom)]
    pub fn new() -> ParticipantSlot {
        ParticipantSlot {
            state: AtomicU32::new(ParticipantState::ABSENT),
            _reserved: AtomicU32::new(0),
            wake_token: AtomicU64::new(0),
        }
    }

    /// Resets to Absent; only while no participant uses the mesh.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn initialise(&self) {
        self.state.store(ParticipantState::ABSENT, Ordering::Relaxed);
        self._reserved.store(0, Ordering::Relaxed);
        self.wake_token.store(0, Ordering::Relaxed);
    }

    /// Registers the slot's participant as Ready with `wake_token`; fails
    /// with [`LayoutError::Claimed`] unless the slot was Absent.
    ///
    /// The barrier before data flows: after registering, the caller
    /// notifies every peer that is Ready (one may be waiting for it in
    /// [`is_registered`](Self::is_registered)); a peer that registers later
    /// notifies the caller in turn. The SeqCst fence here and the one in
    /// `is_registered` make one of the two sides see the other, as in the
    /// rings' wake handshake (loom model in loom-tests/tests/registration.rs).
    pub fn register(&self, wake_token: u64) -> Result<(), LayoutError> {
        if self.state.load(Ordering::Relaxed) != ParticipantState::ABSENT {
            return Err(LayoutError::Claimed);
        }
        self.wake_token.store(wake_token, Ordering::Relaxed);
        // Release: whoever sees READY sees the token.
        self.state
            .compare_exchange(
                ParticipantState::ABSENT,
                ParticipantState::READY,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .map_err(|_| LayoutError::Claimed)?;
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// Whether the participant has registered (Ready, or already Done or
    /// Failed), for a registered caller about to wait for it. Fenced
    /// against [`register`](Self::register): if this returns `false`, the
    /// participant's registration will see the caller Ready and notify it.
    pub fn is_registered(&self) -> Result<bool, Corruption> {
        fence(Ordering::SeqCst);
        Ok(self.state()? != ParticipantState::Absent)
    }

    /// The participant's state, or [`Corruption::State`] for a word no
    /// participant writes.
    pub fn state(&self) -> Result<ParticipantState, Corruption> {
        ParticipantState::decode(self.state.load(Ordering::Acquire))
    }

    /// Records a new state (typically Done or Failed).
    pub fn set_state(&self, state: ParticipantState) {
        self.state.store(state.encode(), Ordering::Release);
    }

    /// The participant's wake token, once it has registered.
    pub fn wake_token(&self) -> Result<Option<u64>, Corruption> {
        Ok(match self.state()? {
            ParticipantState::Absent => None,
            _ => Some(self.wake_token.load(Ordering::Relaxed)),
        })
    }
}

#[cfg(loom)]
impl Default for ParticipantSlot {
    fn default() -> Self {
        Self::new()
    }
}
