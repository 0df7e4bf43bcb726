//! loom models of the frame ring: FIFO delivery across the wrap, closes
//! racing the other side, the wake handshake, and fragment reassembly.
//!
//! Every model runs the real producer and consumer code over a 64-byte ring
//! (largest payload 24 bytes), where a few frames wrap and pad.
//!
//! "Weakened" notes record the change tried in weft-core to check that the
//! model can fail, and what loom reported (at LOOM_MAX_PREEMPTIONS=4).
//! `loom-tests/weaken.py` makes each change, runs the model and restores the
//! file, so the claims can be re-checked after any change to the protocol.

#![cfg(loom)]

mod common;

use std::sync::Arc;

use common::{next_frame, payload, retry, Latch, VecBuf};
use loom::thread;
use weft_core::loom_support::LoomRing;
use weft_core::{Armed, Error, MessageKind, SendProgress};

const CAPACITY: usize = 64;

/// (a) Frames arrive complete and in order, through a wrap with padding:
/// 32 + 16 bytes, then a 24-byte frame that does not fit before the end, so
/// the producer pads 16 bytes and waits for the first frame's space.
///
/// Weakened: `write_pos` stored Relaxed in `Grant::commit_len` -> loom:
/// "Causality violation: Concurrent read and write accesses" (the consumer
/// read frame bytes not ordered after the producer wrote them). `read_pos`
/// stored Relaxed in `Frame::release` -> "Causality violation: Concurrent
/// read and write accesses to `UnsafeCell`" (the producer rewrote bytes
/// after the wrap while the consumer's read was not ordered before).
#[test]
fn fifo_across_wrap_and_padding() {
    loom::model(|| {
        let mem = Arc::new(LoomRing::new(CAPACITY));
        let sizes = [24usize, 8, 16];
        let producer = {
            let mem = mem.clone();
            thread::spawn(move || {
                let mut tx = mem.ring().producer().unwrap();
                for (i, &len) in sizes.iter().enumerate() {
                    retry(|| tx.send(&payload(i, len))).unwrap();
                }
            })
        };
        let mut rx = mem.ring().consumer().unwrap();
        for (i, &len) in sizes.iter().enumerate() {
            assert_eq!(next_frame(&mut rx), Ok(payload(i, len)));
        }
        producer.join().unwrap();
    });
}

/// (b1) A producer that commits then closes, racing a consumer: every
/// committed frame is delivered, then Closed (never Closed first).
///
/// Weakened: the close stored Relaxed in `Ring::close_side` -> loom found
/// the consumer seeing CLOSED, reloading a stale `write_pos` and returning
/// Closed with the second frame unread (`left: Err(Closed)`, `right:
/// Ok([31, 32, ..])`). The consumer's load of the producer state made
/// Relaxed (in `Consumer::refresh`) -> the same failure.
#[test]
fn producer_close_delivers_everything_first() {
    loom::model(|| {
        let mem = Arc::new(LoomRing::new(CAPACITY));
        let producer = {
            let mem = mem.clone();
            thread::spawn(move || {
                let mut tx = mem.ring().producer().unwrap();
                tx.send(&payload(0, 16)).unwrap();
                tx.send(&payload(1, 8)).unwrap();
                tx.close();
            })
        };
        let mut rx = mem.ring().consumer().unwrap();
        assert_eq!(next_frame(&mut rx), Ok(payload(0, 16)));
        assert_eq!(next_frame(&mut rx), Ok(payload(1, 8)));
        assert_eq!(next_frame(&mut rx), Err(Error::Closed));
        producer.join().unwrap();
    });
}

/// (b2) A consumer that closes early makes the producer see Closed, even
/// while the producer waits for space.
///
/// Weakened: the producer's `refresh` not checking the consumer's state ->
/// loom gave up on the producer's endless retry (its branch limit, in
/// `loom/src/rt/path.rs`): the producer would wait forever.
#[test]
fn consumer_close_stops_the_producer() {
    loom::model(|| {
        let mem = Arc::new(LoomRing::new(CAPACITY));
        let producer = {
            let mem = mem.clone();
            thread::spawn(move || {
                let mut tx = mem.ring().producer().unwrap();
                let mut i = 0;
                // 32-byte frames: two fill the ring; a third must wait, and
                // the wait ends in Closed.
                loop {
                    match retry(|| tx.send(&payload(i, 24))) {
                        Ok(()) => i += 1,
                        Err(Error::Closed) => break,
                        Err(e) => panic!("{e}"),
                    }
                    assert!(i <= 3, "sent into a closed ring");
                }
            })
        };
        let mut rx = mem.ring().consumer().unwrap();
        assert_eq!(next_frame(&mut rx), Ok(payload(0, 24)));
        rx.close();
        producer.join().unwrap();
    });
}

/// (c) The wake handshake: both sides sleep on a latch when they cannot
/// proceed, and wake the other only when `peer_waiting` says so. A lost
/// wakeup leaves both asleep, which loom reports as a deadlock.
///
/// Weakened: the SeqCst fence removed from `Ring::arm_flag` -> loom:
/// "deadlock; threads = [(Id(0), Blocked), (Id(1), Blocked)]" (a sleeper's
/// re-check read a stale position while the publisher read its flag still
/// clear). The fence removed from `Ring::check_flag` instead -> the same.
///
/// Why each flag has one writer: a design where the waker clears the
/// sleeper's flag (a swap), so that a sleeper is notified exactly once,
/// cannot be checked. Loom reports a deadlock in it (with unbounded
/// preemptions): the producer's final check reads its own earlier swap
/// instead of the consumer's newer flag. C++'s total modification order
/// forbids that execution, but loom's (partial) one allows it. Flags with
/// one writer each loom verifies, and they need no such argument.
#[test]
fn wake_handshake_loses_no_wakeup() {
    loom::model(|| {
        let mem = Arc::new(LoomRing::new(CAPACITY));
        let wake_producer = Arc::new(Latch::default());
        let wake_consumer = Arc::new(Latch::default());
        const FRAMES: usize = 3;
        let producer = {
            let (mem, wake_producer, wake_consumer) = (mem.clone(), wake_producer.clone(), wake_consumer.clone());
            thread::spawn(move || {
                let mut tx = mem.ring().producer().unwrap();
                for i in 0..FRAMES {
                    loop {
                        match tx.send(&payload(i, 24)) {
                            Ok(()) => break,
                            Err(Error::WouldBlock) => {
                                if tx.arm_wakeup().unwrap() == Armed::Sleep {
                                    wake_producer.wait();
                                }
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    if tx.peer_waiting() {
                        wake_consumer.set();
                    }
                }
                if tx.close() {
                    wake_consumer.set();
                }
            })
        };
        let mut rx = mem.ring().consumer().unwrap();
        let mut got = 0;
        loop {
            match rx.read() {
                Ok(frame) => {
                    assert_eq!(frame.payload(), payload(got, 24));
                    frame.release();
                    got += 1;
                    if rx.peer_waiting() {
                        wake_producer.set();
                    }
                }
                Err(Error::WouldBlock) => {
                    if rx.arm_wakeup().unwrap() == Armed::Sleep {
                        wake_consumer.wait();
                    }
                }
                Err(Error::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, FRAMES);
        producer.join().unwrap();
    });
}

/// (e) A message longer than a frame arrives whole, fragments in order,
/// reassembled across WouldBlock, then End.
///
/// Weakened: `Frame::release` not recording the fragment state (so the
/// consumer forgets it is mid-message) was caught by the proptest first;
/// here, storing `read_pos` Relaxed in release -> loom's causality panic
/// when the producer rewrote a fragment's bytes after the wrap.
#[test]
fn fragments_reassemble_in_order() {
    loom::model(|| {
        let mem = Arc::new(LoomRing::new(CAPACITY));
        let message = payload(7, 60); // 24 + 24 + 12, or smaller fragments
        let producer = {
            let (mem, message) = (mem.clone(), message.clone());
            thread::spawn(move || {
                let mut tx = mem.ring().producer().unwrap();
                let mut progress = SendProgress::default();
                retry(|| tx.send_message(MessageKind::Data, &message, &mut progress)).unwrap();
                let mut progress = SendProgress::default();
                retry(|| tx.send_message(MessageKind::End, &[], &mut progress)).unwrap();
            })
        };
        let mut rx = mem.ring().consumer().unwrap();
        let mut got = Vec::new();
        assert_eq!(retry(|| rx.read_message(&mut VecBuf(&mut got))), Ok(MessageKind::Data));
        assert_eq!(got, message);
        got.clear();
        assert_eq!(retry(|| rx.read_message(&mut VecBuf(&mut got))), Ok(MessageKind::End));
        producer.join().unwrap();
    });
}
