//! `make demo` (until the SQL layer exists): a query's mesh in action.
//!
//! Three participants (threads standing in for Postgres processes) share one
//! mesh region and push data all-to-all through one exchange, self-loops
//! included, sleeping when they cannot progress and waking each other
//! through the rings' wake handshake (thread park/unpark standing in for
//! Postgres latches). Then one participant fails and the others read its
//! error from the mesh. Prints per-edge throughput and wakeup counts.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Barrier, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use support::HeapMem;
use weft_core::{Armed, Consumer, Error, Mesh, MeshLayout, MessageKind, ParticipantState, Producer, SendProgress};

const PARTICIPANTS: u32 = 3;
const RING: usize = 1 << 20;
const MESSAGE: usize = 64 << 10;
const PER_EDGE: usize = 256 << 20;
const GENERATION: u64 = 42;

/// What one participant saw.
struct Report {
    me: u32,
    received: Vec<usize>,
    seconds: f64,
    sleeps: u32,
}

fn main() {
    let layout = MeshLayout::new(PARTICIPANTS, 1, RING).expect("layout");
    let mem = Arc::new(HeapMem::new(layout.size()));
    Mesh::init(mem.region(), layout, GENERATION).expect("init mesh");
    println!(
        "weft-core mesh: {PARTICIPANTS} participants, {} rings of {} KiB, region {:.1} MiB",
        layout.ring_count(),
        RING >> 10,
        layout.size() as f64 / (1 << 20) as f64
    );
    println!(
        "each participant sends {} MiB to every participant (itself included)\n",
        PER_EDGE >> 20
    );

    let threads: Arc<OnceLock<Vec<Thread>>> = Arc::new(OnceLock::new());
    let start = Arc::new(Barrier::new(PARTICIPANTS as usize + 1));
    let handles: Vec<_> = (0..PARTICIPANTS)
        .map(|me| {
            let (mem, threads, start) = (mem.clone(), threads.clone(), start.clone());
            thread::spawn(move || participant(me, &mem, &threads, &start))
        })
        .collect();
    threads
        .set(handles.iter().map(|h| h.thread().clone()).collect())
        .expect("set once");
    start.wait();
    let reports: Vec<Report> = handles.into_iter().map(|h| h.join().expect("participant")).collect();

    println!(
        "{:>8} {:>8} {:>10} {:>8} {:>8}",
        "sender", "receiver", "MiB", "GB/s", "sleeps"
    );
    for r in &reports {
        for (sender, bytes) in r.received.iter().enumerate() {
            println!(
                "{:>8} {:>8} {:>10} {:>8.2} {:>8}",
                sender,
                r.me,
                bytes >> 20,
                *bytes as f64 / r.seconds / 1e9,
                r.sleeps
            );
        }
    }

    // A failure: participant 2 aborts the query; everyone reads why.
    let mesh = Mesh::attach(mem.region(), GENERATION).expect("attach");
    assert!(mesh.abort(2, 22012, b"division by zero"));
    assert!(!mesh.abort(0, 1, b"a later error loses"));
    let first = mesh.first_error().expect("recorded");
    println!(
        "\nabort: participant {} failed first (code {}): {}",
        first.participant,
        first.code,
        String::from_utf8_lossy(first.message())
    );
}

fn participant(me: u32, mem: &HeapMem, threads: &OnceLock<Vec<Thread>>, start: &Barrier) -> Report {
    let mesh = Mesh::attach(mem.region(), GENERATION).expect("attach");
    mesh.register(me, me as u64).expect("register");
    start.wait();
    let peers = threads.get().expect("threads known");
    let wake = |p: usize| peers[p].unpark();

    let mut out: Vec<Producer<'_>> = (0..PARTICIPANTS)
        .map(|r| mesh.ring(0, me, r).and_then(|ring| ring.producer()).expect("producer"))
        .collect();
    let mut inp: Vec<Consumer<'_>> = (0..PARTICIPANTS)
        .map(|s| mesh.ring(0, s, me).and_then(|ring| ring.consumer()).expect("consumer"))
        .collect();
    let payload = vec![me as u8; MESSAGE];
    let mut sent = vec![0usize; out.len()];
    let mut ended = vec![false; out.len()];
    let mut received = vec![0usize; inp.len()];
    let mut done = vec![false; inp.len()];
    let mut sleeps = 0;
    let begin = Instant::now();

    while done.iter().chain(&ended).any(|finished| !finished) {
        let mut progressed = false;
        for (r, tx) in out.iter_mut().enumerate() {
            if ended[r] {
                continue;
            }
            let result = if sent[r] < PER_EDGE {
                tx.send(&payload).map(|()| sent[r] += MESSAGE)
            } else {
                tx.send_message(MessageKind::End, &[], &mut SendProgress::default())
                    .map(|()| ended[r] = true)
            };
            match result {
                Ok(()) => progressed = true,
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("participant {me} sending to {r}: {e}"),
            }
            if tx.peer_waiting() {
                wake(r);
            }
        }
        for (s, rx) in inp.iter_mut().enumerate() {
            while !done[s] {
                match rx.read() {
                    Ok(frame) => {
                        match frame.kind() {
                            MessageKind::Data => received[s] += frame.payload().len(),
                            _ => done[s] = true,
                        }
                        frame.release();
                        progressed = true;
                    }
                    Err(Error::WouldBlock) => break,
                    Err(e) => panic!("participant {me} receiving from {s}: {e}"),
                }
            }
            if rx.peer_waiting() {
                wake(s);
            }
        }
        if !progressed {
            // Arm every blocked edge; sleep only if none changed meanwhile.
            let mut retry = false;
            for (r, tx) in out.iter_mut().enumerate() {
                retry |= !ended[r] && tx.arm_wakeup().expect("arm") == Armed::Retry;
            }
            for (s, rx) in inp.iter_mut().enumerate() {
                retry |= !done[s] && rx.arm_wakeup().expect("arm") == Armed::Retry;
            }
            if !retry {
                sleeps += 1;
                // Bounded, as the runtime's park will be: a safety net only.
                thread::park_timeout(Duration::from_millis(100));
            }
        }
    }
    let seconds = begin.elapsed().as_secs_f64();
    mesh.set_participant_state(me, ParticipantState::Done).expect("state");
    Report {
        me,
        received,
        seconds,
        sleeps,
    }
}
