//! (f) loom model of the registration barrier (weft-core's
//! `ParticipantSlot`): two participants register and each waits until the
//! other has, sleeping on its latch; whoever registers second wakes the
//! other. A lost wakeup leaves one asleep forever, which loom reports as a
//! deadlock.
//!
//! Weakened: the SeqCst fence removed from `ParticipantSlot::register` ->
//! loom: "deadlock; threads = [(Id(0), Blocked), (Id(1), Terminated)]"
//! (each read the other's slot as still Absent: one slept, and the other,
//! seeing it Absent too, woke nobody). Removing the fence from
//! `is_registered` instead passes: a caller that registered on the same
//! thread already has `register`'s fence before its check. The second fence
//! stays for callers that check from elsewhere; it costs one fence per
//! query and peer.

#![cfg(loom)]

mod common;

use std::sync::Arc;

use common::Latch;
use loom::thread;
use weft_core::{ParticipantSlot, ParticipantState};

struct Mesh {
    slots: [ParticipantSlot; 2],
    latches: [Latch; 2],
}

/// Participant `me`'s start: register, wake registered peers, then wait
/// until the other one has registered.
fn start(mesh: &Mesh, me: usize) {
    let other = 1 - me;
    mesh.slots[me].register(me as u64).unwrap();
    if mesh.slots[other].state().unwrap() != ParticipantState::Absent {
        mesh.latches[other].set();
    }
    while !mesh.slots[other].is_registered().unwrap() {
        mesh.latches[me].wait();
    }
}

#[test]
fn registration_barrier_loses_no_wakeup() {
    loom::model(|| {
        let mesh = Arc::new(Mesh {
            slots: [ParticipantSlot::new(), ParticipantSlot::new()],
            latches: [Latch::default(), Latch::default()],
        });
        let peer = {
            let mesh = mesh.clone();
            thread::spawn(move || start(&mesh, 1))
        };
        start(&mesh, 0);
        peer.join().unwrap();
        assert_eq!(mesh.slots[1].wake_token().unwrap(), Some(1));
    });
}
