//! (d) loom model of the mesh's first-error slot: among concurrent writers
//! exactly one wins, and a concurrent reader sees nothing or the winner's
//! whole record, never a mix.

#![cfg(loom)]

use std::sync::Arc;

use loom::thread;
use weft_core::ErrorSlot;

fn message(participant: u32) -> Vec<u8> {
    // Longer than one 8-byte word, so a torn read would show.
    format!("participant {participant} failed: disk full").into_bytes()
}

/// Weakened: the Release stores of WRITTEN and of the abort flag in
/// `ErrorSlot::record` made Relaxed -> loom found the reader seeing WRITTEN
/// with the record's fields not yet visible (`left: 0` for the code,
/// `right: 100`).
#[test]
fn one_writer_wins_and_readers_see_it_whole() {
    loom::model(|| {
        let slot = Arc::new(ErrorSlot::new());
        let writers: Vec<_> = (1..=2u32)
            .map(|p| {
                let slot = slot.clone();
                thread::spawn(move || slot.record(p, 100 + p, &message(p)))
            })
            .collect();
        // The reader races the writers.
        if slot.is_aborted() {
            let e = slot.first_error().expect("aborted implies a readable error");
            assert_eq!(e.message(), message(e.participant));
        }
        if let Some(e) = slot.first_error() {
            assert_eq!(e.code, 100 + e.participant);
            assert_eq!(e.message(), message(e.participant));
        }
        let wins: Vec<bool> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(wins.iter().filter(|&&w| w).count(), 1, "exactly one winner: {wins:?}");
        let e = slot.first_error().unwrap();
        assert!(wins[e.participant as usize - 1]);
        assert!(slot.is_aborted());
    });
}
