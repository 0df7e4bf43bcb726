//! The mesh: one region per query holding a header (participants, abort
//! flag, first error) and a ring per (exchange, sender, receiver).
//!
//! A ring per exchange, rather than one per pair of participants, means a
//! receiver reading exchange Y first can never be stuck behind frames of
//! exchange X that it will only read later.

mod error_slot;
mod layout;
mod slot;

pub use error_slot::{ErrorSlot, FirstError, ERROR_MESSAGE_MAX};
pub use layout::{MeshLayout, MAX_EXCHANGES, MAX_PARTICIPANTS};
pub use slot::{ParticipantSlot, ParticipantState};

#[cfg(not(loom))]
pub use real::Mesh;

#[cfg(not(loom))]
mod real {
    use super::layout::{ERROR_SLOT_LEN, IDENTITY_LEN, SLOT_LEN};
    use super::{ErrorSlot, FirstError, MeshLayout, ParticipantSlot, ParticipantState};
    use crate::error::{Corruption, LayoutError};
    use crate::region::{Region, SharedBlock};
    use crate::ring::{Ring, LAYOUT_VERSION};
    use crate::sync::{AtomicU32, AtomicU64, Ordering};

    /// "weftmesh", little-endian.
    const MESH_MAGIC: u64 = u64::from_le_bytes(*b"weftmesh");

    #[repr(C, align(128))]
    struct MeshIdentity {
        /// [`MESH_MAGIC`], stored last (Release) by init.
        magic: AtomicU64,
        version: AtomicU32,
        participants: AtomicU32,
        exchanges: AtomicU32,
        _reserved: AtomicU32,
        ring_capacity: AtomicU64,
        generation: AtomicU64,
        /// The layout's size, to cross-check the shape on attach.
        size: AtomicU64,
    }

    mod layout_checks {
        use super::*;
        use core::mem::{offset_of, size_of};
        use static_assertions::const_assert_eq;

        const_assert_eq!(size_of::<MeshIdentity>(), IDENTITY_LEN);
        const_assert_eq!(size_of::<ErrorSlot>(), ERROR_SLOT_LEN);
        const_assert_eq!(offset_of!(MeshIdentity, ring_capacity), 24);
        const_assert_eq!(offset_of!(MeshIdentity, size), 40);
    }

    // SAFETY: repr(C), atomics only.
    unsafe impl SharedBlock for MeshIdentity {}

    /// A handle to a query's mesh in a [`Region`]; one per process.
    ///
    /// ```
    /// use weft_core::{Mesh, MeshLayout, ParticipantState};
    /// # let mut mem = weft_core::doc_support::Mem::<{ 8 * 1024 }>::new();
    /// # let region = mem.region();
    /// let layout = MeshLayout::new(2, 1, 1024)?;
    /// let leader = Mesh::init(region, layout, 99)?;
    /// let worker = Mesh::attach(region, 99)?; // in the worker process
    /// worker.register(1, 12345)?;
    /// assert_eq!(leader.participant_state(1)?, ParticipantState::Ready);
    /// assert_eq!(leader.wake_token(1)?, Some(12345));
    ///
    /// let mut tx = leader.ring(0, 0, 1)?.producer()?; // exchange 0, 0 -> 1
    /// let mut rx = worker.ring(0, 0, 1)?.consumer()?;
    /// tx.send(b"rows")?;
    /// assert_eq!(rx.read()?.payload(), b"rows");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[derive(Clone, Copy, Debug)]
    pub struct Mesh<'a> {
        region: Region<'a>,
        layout: MeshLayout,
        generation: u64,
        errors: &'a ErrorSlot,
    }

    impl<'a> Mesh<'a> {
        /// Writes a new mesh (header and every ring) into `region`.
        /// Nothing else may use the region while this runs.
        pub fn init(region: Region<'a>, layout: MeshLayout, generation: u64) -> Result<Mesh<'a>, LayoutError> {
            region.check(layout.size())?;
            let identity: &MeshIdentity = region.shared(0)?;
            identity.magic.store(0, Ordering::Relaxed);
            let errors: &ErrorSlot = region.shared(IDENTITY_LEN)?;
            errors.initialise();
            for p in 0..layout.participants() {
                let slot: &ParticipantSlot = region.shared(layout.slot_offset(p)?)?;
                slot.initialise();
            }
            for x in 0..layout.exchanges() {
                for s in 0..layout.participants() {
                    for r in 0..layout.participants() {
                        let ring = ring_region(region, &layout, x, s, r)?;
                        Ring::init(ring, layout.ring_capacity(), generation)?;
                    }
                }
            }
            identity.version.store(LAYOUT_VERSION, Ordering::Relaxed);
            identity.participants.store(layout.participants(), Ordering::Relaxed);
            identity.exchanges.store(layout.exchanges(), Ordering::Relaxed);
            identity._reserved.store(0, Ordering::Relaxed);
            identity
                .ring_capacity
                .store(layout.ring_capacity() as u64, Ordering::Relaxed);
            identity.generation.store(generation, Ordering::Relaxed);
            identity.size.store(layout.size() as u64, Ordering::Relaxed);
            // Release: an attacher that sees the magic sees all of the above.
            identity.magic.store(MESH_MAGIC, Ordering::Release);
            Ok(Mesh {
                region,
                layout,
                generation,
                errors,
            })
        }

        /// Attaches to a mesh that [`Mesh::init`] wrote, validating its magic,
        /// version, shape, size and generation. Rings are validated as
        /// [`ring`](Self::ring) attaches them.
        pub fn attach(region: Region<'a>, generation: u64) -> Result<Mesh<'a>, LayoutError> {
            region.check(IDENTITY_LEN)?;
            let identity: &MeshIdentity = region.shared(0)?;
            if identity.magic.load(Ordering::Acquire) != MESH_MAGIC {
                return Err(LayoutError::BadMagic);
            }
            if identity.version.load(Ordering::Relaxed) != LAYOUT_VERSION {
                return Err(LayoutError::Version);
            }
            let capacity =
                usize::try_from(identity.ring_capacity.load(Ordering::Relaxed)).map_err(|_| LayoutError::Shape)?;
            let layout = MeshLayout::new(
                identity.participants.load(Ordering::Relaxed),
                identity.exchanges.load(Ordering::Relaxed),
                capacity,
            )
            .map_err(|_| LayoutError::Shape)?;
            if identity.size.load(Ordering::Relaxed) != layout.size() as u64 {
                return Err(LayoutError::Shape);
            }
            region.check(layout.size())?;
            if identity.generation.load(Ordering::Relaxed) != generation {
                return Err(LayoutError::Generation);
            }
            Ok(Mesh {
                region,
                layout,
                generation,
                errors: region.shared(IDENTITY_LEN)?,
            })
        }

        /// The mesh's layout.
        pub fn layout(&self) -> &MeshLayout {
            &self.layout
        }

        /// The generation the mesh was initialised with.
        pub fn generation(&self) -> u64 {
            self.generation
        }

        /// The ring carrying `exchange`'s rows from `sender` to `receiver`,
        /// attached and validated.
        pub fn ring(&self, exchange: u32, sender: u32, receiver: u32) -> Result<Ring<'a>, LayoutError> {
            let region = ring_region(self.region, &self.layout, exchange, sender, receiver)?;
            let ring = Ring::attach(region, self.generation)?;
            if ring.capacity() != self.layout.ring_capacity() {
                return Err(LayoutError::Shape);
            }
            Ok(ring)
        }

        /// Registers `participant` as ready, with the token peers use to wake
        /// it; see [`ParticipantSlot::register`] for the barrier this is part
        /// of. Fails with [`LayoutError::Claimed`] if the slot is not
        /// [`ParticipantState::Absent`].
        pub fn register(&self, participant: u32, wake_token: u64) -> Result<(), LayoutError> {
            self.slot(participant)?.register(wake_token)
        }

        /// Whether `participant` has registered, for a registered caller
        /// about to wait for it; see [`ParticipantSlot::is_registered`].
        pub fn peer_ready(&self, participant: u32) -> Result<bool, MeshError> {
            Ok(self.slot(participant)?.is_registered()?)
        }

        /// Records `participant`'s new state (typically Done or Failed).
        pub fn set_participant_state(&self, participant: u32, state: ParticipantState) -> Result<(), LayoutError> {
            self.slot(participant)?.set_state(state);
            Ok(())
        }

        /// `participant`'s state, or [`Corruption::State`] for a word no
        /// participant writes.
        pub fn participant_state(&self, participant: u32) -> Result<ParticipantState, MeshError> {
            Ok(self.slot(participant)?.state()?)
        }

        /// `participant`'s wake token, once it has registered.
        pub fn wake_token(&self, participant: u32) -> Result<Option<u64>, MeshError> {
            Ok(self.slot(participant)?.wake_token()?)
        }

        /// Fails the query: records the error if it is the first, then raises
        /// the abort flag. Returns whether this was the first error. The
        /// caller then wakes every participant so they notice.
        pub fn abort(&self, participant: u32, code: u32, message: &[u8]) -> bool {
            self.errors.record(participant, code, message)
        }

        /// Whether the query is aborting; the first error is then readable.
        pub fn is_aborted(&self) -> bool {
            self.errors.is_aborted()
        }

        /// The first error recorded, if any.
        pub fn first_error(&self) -> Option<FirstError> {
            self.errors.first_error()
        }

        fn slot(&self, participant: u32) -> Result<&'a ParticipantSlot, LayoutError> {
            self.region.shared(self.layout.slot_offset(participant)?)
        }
    }

    fn ring_region<'a>(
        region: Region<'a>,
        layout: &MeshLayout,
        exchange: u32,
        sender: u32,
        receiver: u32,
    ) -> Result<Region<'a>, LayoutError> {
        let offset = layout.ring_offset(exchange, sender, receiver)?;
        region
            .subregion(offset, layout.ring_stride())
            .ok_or(LayoutError::TooSmall)
    }

    /// An error reading a participant slot.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum MeshError {
        /// Bad index.
        Layout(LayoutError),
        /// The slot holds a value no participant writes.
        Corrupt(Corruption),
    }

    impl From<Corruption> for MeshError {
        fn from(c: Corruption) -> Self {
            MeshError::Corrupt(c)
        }
    }

    impl From<LayoutError> for MeshError {
        fn from(e: LayoutError) -> Self {
            MeshError::Layout(e)
        }
    }

    impl core::fmt::Display for MeshError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                MeshError::Layout(e) => e.fmt(f),
                MeshError::Corrupt(c) => write!(f, "mesh shared memory is corrupt: {c}"),
            }
        }
    }

    impl core::error::Error for MeshError {}

    // Region sizes are checked against the layout; keep the constant honest.
    const _: () = assert!(IDENTITY_LEN + ERROR_SLOT_LEN == 384 && SLOT_LEN == 128);
}

#[cfg(not(loom))]
pub use real::MeshError;
