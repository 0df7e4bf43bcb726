//! The mesh: its layout function, init and attach, participant slots, the
//! first-error slot, and rings that carry data between the right pairs.

mod support;

use proptest::prelude::*;
use support::HeapMem;
use weft_core::{
    LayoutError, Mesh, MeshLayout, MessageKind, ParticipantState, ERROR_MESSAGE_MAX, MAX_PARTICIPANTS, REGION_ALIGN,
    RING_HEADER_LEN,
};

proptest! {
    /// Every ring lies inside the region, aligned, after the header, and no
    /// two overlap; the size is exactly the end of the last ring.
    #[test]
    fn layout_offsets_are_disjoint_and_aligned(
        participants in 1u32..=6,
        exchanges in 0u32..=4,
        capacity_log2 in 6u32..=16,
    ) {
        let capacity = 1usize << capacity_log2;
        let layout = MeshLayout::new(participants, exchanges, capacity).unwrap();
        prop_assert!(layout.ring_stride() >= RING_HEADER_LEN + capacity);
        let mut offsets = Vec::new();
        for x in 0..exchanges {
            for s in 0..participants {
                for r in 0..participants {
                    let at = layout.ring_offset(x, s, r).unwrap();
                    prop_assert_eq!(at % REGION_ALIGN, 0);
                    prop_assert!(at + layout.ring_stride() <= layout.size());
                    offsets.push(at);
                }
            }
        }
        prop_assert_eq!(offsets.len(), layout.ring_count());
        offsets.sort_unstable();
        for pair in offsets.windows(2) {
            prop_assert!(pair[1] - pair[0] >= layout.ring_stride());
        }
        if let Some(&first) = offsets.first() {
            prop_assert!(first >= 384 + participants as usize * 128, "rings after the header");
            prop_assert_eq!(offsets.last().unwrap() + layout.ring_stride(), layout.size());
        }
        prop_assert_eq!(layout.ring_offset(exchanges, 0, 0), Err(LayoutError::Index));
        prop_assert_eq!(layout.ring_offset(0, participants, 0), Err(LayoutError::Index));
    }

    /// `fit` picks the largest capacity that fits the budget, or refuses.
    #[test]
    fn fit_respects_the_budget(
        participants in 1u32..=16,
        exchanges in 1u32..=8,
        budget in 1usize..(256 << 20),
    ) {
        match MeshLayout::fit(participants, exchanges, budget, 4 << 20, 64 << 10) {
            Ok(layout) => {
                prop_assert!(layout.size() <= budget);
                prop_assert!(layout.ring_capacity() >= 64 << 10);
                if layout.ring_capacity() < 4 << 20 {
                    let bigger = MeshLayout::new(participants, exchanges, layout.ring_capacity() * 2).unwrap();
                    prop_assert!(bigger.size() > budget, "a larger ring would have fit");
                }
            }
            Err(e) => {
                prop_assert_eq!(e, LayoutError::TooSmall);
                let smallest = MeshLayout::new(participants, exchanges, 64 << 10).unwrap();
                prop_assert!(smallest.size() > budget);
            }
        }
    }
}

#[test]
fn layout_rejects_bad_shapes() {
    assert_eq!(MeshLayout::new(0, 1, 1024), Err(LayoutError::Participants));
    assert_eq!(
        MeshLayout::new(MAX_PARTICIPANTS + 1, 1, 1024),
        Err(LayoutError::Participants)
    );
    assert_eq!(MeshLayout::new(2, 1, 1000), Err(LayoutError::Capacity));
    assert_eq!(MeshLayout::new(2, 1, 32), Err(LayoutError::Capacity));
    // 1024 participants x 4096 exchanges x 1 GiB rings overflows nothing on
    // 64-bit, but is far too large for any budget.
    let huge = MeshLayout::new(MAX_PARTICIPANTS, 4096, 1 << 30).unwrap();
    assert!(MeshLayout::fit(MAX_PARTICIPANTS, 4096, huge.size() - 1, 1 << 30, 1 << 30).is_err());
}

#[test]
fn rings_connect_the_right_participants() {
    let layout = MeshLayout::new(3, 2, 1024).unwrap();
    let mem = HeapMem::new(layout.size());
    let mesh = Mesh::init(mem.region(), layout, 9).unwrap();
    // Every ring carries a frame naming its (exchange, sender, receiver).
    for x in 0..2 {
        for s in 0..3 {
            for r in 0..3 {
                let mut tx = mesh.ring(x, s, r).unwrap().producer().unwrap();
                tx.send(&[x as u8, s as u8, r as u8]).unwrap();
            }
        }
    }
    let other = Mesh::attach(mem.region(), 9).unwrap();
    for x in 0..2 {
        for s in 0..3 {
            for r in 0..3 {
                let mut rx = other.ring(x, s, r).unwrap().consumer().unwrap();
                let frame = rx.read().unwrap();
                assert_eq!(
                    (frame.kind(), frame.payload()),
                    (MessageKind::Data, &[x as u8, s as u8, r as u8][..])
                );
            }
        }
    }
    assert_eq!(
        mesh.ring(0, 0, 0).unwrap().producer().unwrap_err(),
        LayoutError::Claimed
    );
    assert_eq!(mesh.ring(2, 0, 0).unwrap_err(), LayoutError::Index);
}

#[test]
fn attach_validates_the_header() {
    let layout = MeshLayout::new(2, 1, 1024).unwrap();
    let mem = HeapMem::new(layout.size());
    assert_eq!(Mesh::attach(mem.region(), 1).unwrap_err(), LayoutError::BadMagic);
    Mesh::init(mem.region(), layout, 1).unwrap();
    assert_eq!(Mesh::attach(mem.region(), 2).unwrap_err(), LayoutError::Generation);
    let short = mem.region().subregion(0, layout.size() - 1).unwrap();
    assert_eq!(Mesh::attach(short, 1).unwrap_err(), LayoutError::TooSmall);
    assert_eq!(Mesh::init(short, layout, 1).unwrap_err(), LayoutError::TooSmall);
    // The rings carry the mesh's generation: a stale ring is refused.
    let generation_at = layout.ring_offset(0, 1, 0).unwrap() + 24;
    // SAFETY: nothing uses the memory concurrently.
    unsafe { mem.poke(generation_at, &2u64.to_le_bytes()) };
    let mesh = Mesh::attach(mem.region(), 1).unwrap();
    assert_eq!(mesh.ring(0, 1, 0).unwrap_err(), LayoutError::Generation);
    assert!(mesh.ring(0, 0, 1).is_ok());
}

#[test]
fn participants_register_once_and_report_state() {
    let layout = MeshLayout::new(3, 0, 1024).unwrap();
    let mem = HeapMem::new(layout.size());
    let mesh = Mesh::init(mem.region(), layout, 0).unwrap();
    assert_eq!(mesh.participant_state(1).unwrap(), ParticipantState::Absent);
    assert_eq!(mesh.wake_token(1).unwrap(), None);
    mesh.register(1, 777).unwrap();
    assert_eq!(mesh.register(1, 778), Err(LayoutError::Claimed));
    assert_eq!(mesh.participant_state(1).unwrap(), ParticipantState::Ready);
    assert_eq!(mesh.wake_token(1).unwrap(), Some(777));
    mesh.set_participant_state(1, ParticipantState::Done).unwrap();
    assert_eq!(mesh.participant_state(1).unwrap(), ParticipantState::Done);
    assert_eq!(mesh.wake_token(1).unwrap(), Some(777));
    assert!(mesh.register(3, 1).is_err());
}

#[test]
fn first_error_wins_across_threads_and_is_cut_to_the_slot() {
    let layout = MeshLayout::new(8, 0, 1024).unwrap();
    let mem = HeapMem::new(layout.size());
    let mesh = Mesh::init(mem.region(), layout, 0).unwrap();
    assert!(!mesh.is_aborted());
    assert!(mesh.first_error().is_none());
    let long = "x".repeat(1000);
    let wins: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u32)
            .map(|p| {
                let mesh = Mesh::attach(mem.region(), 0).unwrap();
                let message = format!("participant {p}: {long}");
                scope.spawn(move || mesh.abort(p, p, message.as_bytes()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(wins.iter().filter(|w| **w).count(), 1);
    let first = mesh.first_error().unwrap();
    assert!(wins[first.participant as usize]);
    assert_eq!(first.code, first.participant);
    assert_eq!(first.message().len(), ERROR_MESSAGE_MAX);
    assert!(first
        .message()
        .starts_with(format!("participant {}: x", first.participant).as_bytes()));
    assert!(mesh.is_aborted());
}
