//! weft with a long-lived consumer ("peer") in another process, or in a
//! thread of this one over the same kind of memory, to tell the cost of
//! crossing processes apart from everything else.
//!
//! The bench binary re-executes itself with [`PEER_ENV`] naming a file in
//! /dev/shm; the child maps it and runs [`serve`]. The file holds three
//! rings: the 4 MiB data ring (parent to peer), a command ring (parent to
//! peer) and an acknowledgement ring (peer to parent).
//!
//! A timed run is: command "receive N frames" (untimed), the peer answers
//! READY (untimed: it may have been asleep), then the clock runs from the
//! first data frame sent until the peer's DONE arrives. The peer is started
//! once and serves many runs, so its start-up is never timed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use weft_core::{Consumer, Error, Producer, Region, Ring};

use super::{receive, send, source, wait_for, Run, WeftRx, WeftTx, GENERATION, RING_BYTES};
use crate::support::SharedFile;

/// Set in the child's environment to the path of the shared file.
pub const PEER_ENV: &str = "WEFT_BENCH_PEER";

/// Capacity of the command and acknowledgement rings.
const CONTROL_CAPACITY: usize = 4096;

/// Acknowledgements.
const READY: u64 = 1;
const DONE: u64 = 2;

/// An idle peer polls for commands this long before it starts sleeping.
const IDLE_SPIN: Duration = Duration::from_millis(2);
/// Sleep between polls of an idle peer, so that it leaves the CPU to the
/// other benchmarks while it waits (2 cores).
const IDLE_SLEEP: Duration = Duration::from_millis(1);

/// Where the peer runs.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A child process mapping the same /dev/shm file.
    Process,
    /// A thread of this process, over the same /dev/shm mapping.
    Thread,
}

/// The parent's side: producer of the data and command rings, consumer of
/// the acknowledgements.
pub struct Peer<'a> {
    data: WeftTx<'a>,
    commands: Producer<'a>,
    acks: Consumer<'a>,
    frame: usize,
    src: Vec<u8>,
}

impl Run for Peer<'_> {
    fn run(&mut self, frames: u64) -> Duration {
        assert!(frames > 0, "a run moves at least one frame");
        post(&mut self.commands, [frames, self.frame as u64]);
        expect_ack(&mut self.acks, READY);
        let start = Instant::now();
        send(&mut self.data, &mut self.src, frames);
        expect_ack(&mut self.acks, DONE);
        start.elapsed()
    }
}

/// If this process was started as a peer, serves until told to quit and
/// returns `true`; otherwise returns `false` at once.
pub fn serve_if_peer() -> bool {
    let Some(path) = std::env::var_os(PEER_ENV) else {
        return false;
    };
    let mut file = SharedFile::open(Path::new(&path));
    serve(file.region());
    true
}

/// Starts a peer of `kind` for `frame`-byte frames, hands it to `f`, then
/// stops it.
pub fn with_peer<T>(frame: usize, kind: Kind, f: impl FnOnce(&mut Peer<'_>) -> T) -> T {
    let len = Ring::size_for(RING_BYTES).expect("ring size") + 2 * control_len();
    let mut file = SharedFile::create(len);
    let path = file.path().to_path_buf();
    let region = file.region();
    let [data, commands, acks] = split(region);
    let data = Ring::init(data, RING_BYTES, GENERATION).expect("init data ring");
    let commands = Ring::init(commands, CONTROL_CAPACITY, GENERATION).expect("init command ring");
    let acks = Ring::init(acks, CONTROL_CAPACITY, GENERATION).expect("init ack ring");
    let peer = Peer {
        data: WeftTx(data.producer().expect("data producer")),
        commands: commands.producer().expect("command producer"),
        acks: acks.consumer().expect("ack consumer"),
        frame,
        src: source(frame),
    };
    // Either way `peer` is dropped (closing its rings, which stops the
    // server) before we wait for the server, also when `f` panics.
    match kind {
        Kind::Process => {
            let mut child = Command::new(std::env::current_exe().expect("own executable"))
                .env(PEER_ENV, &path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("start peer process");
            let out = run_and_quit(peer, f);
            let status = child.wait().expect("wait for peer process");
            assert!(status.success(), "peer process failed: {status}");
            out
        }
        Kind::Thread => thread::scope(move |s| {
            let server = s.spawn(move || serve(region));
            let out = run_and_quit(peer, f);
            server.join().expect("peer thread panicked");
            out
        }),
    }
}

fn run_and_quit<T>(mut peer: Peer<'_>, f: impl FnOnce(&mut Peer<'_>) -> T) -> T {
    let out = f(&mut peer);
    post(&mut peer.commands, [0, 0]);
    out
}

/// The peer: attaches to the rings in `region` and serves runs until a
/// command of 0 frames (or the parent's close).
pub fn serve(region: Region<'_>) {
    let [data, commands, acks] = split(region);
    let attach = |region, what| Ring::attach(region, GENERATION).unwrap_or_else(|e| panic!("attach {what}: {e}"));
    let mut rx = WeftRx(attach(data, "data ring").consumer().expect("data consumer"));
    let mut commands = attach(commands, "command ring").consumer().expect("command consumer");
    let mut acks = attach(acks, "ack ring").producer().expect("ack producer");
    let mut dst = Vec::new();
    loop {
        let Some([frames, frame]) = take(&mut commands, Patience::Idle) else {
            return; // the parent went away
        };
        if frames == 0 {
            return;
        }
        dst.resize(frame as usize, 0);
        post(&mut acks, [READY]);
        receive(&mut rx, &mut dst, frames);
        post(&mut acks, [DONE]);
    }
}

/// Waits like [`wait_for`] for a short while, then sleeps between attempts.
fn idle_wait<T>(mut attempt: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        if start.elapsed() < IDLE_SPIN {
            thread::yield_now();
        } else {
            thread::sleep(IDLE_SLEEP);
        }
    }
}

/// Bytes of a control ring, header included.
fn control_len() -> usize {
    Ring::size_for(CONTROL_CAPACITY).expect("control ring size")
}

/// The data, command and acknowledgement rings' regions.
fn split(region: Region<'_>) -> [Region<'_>; 3] {
    let data_len = Ring::size_for(RING_BYTES).expect("ring size");
    let part = |offset, len| region.subregion(offset, len).expect("region holds the rings");
    [
        part(0, data_len),
        part(data_len, control_len()),
        part(data_len + control_len(), control_len()),
    ]
}

/// Sends a small message of `N` words.
fn post<const N: usize>(tx: &mut Producer<'_>, words: [u64; N]) {
    let mut bytes = [0u8; 64];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    let payload = &bytes[..8 * N];
    wait_for(|| match tx.send(payload) {
        Ok(()) => Some(()),
        Err(Error::WouldBlock) => None,
        Err(e) => panic!("control send failed: {e}"),
    })
}

/// How to wait for a control message.
#[derive(Clone, Copy)]
enum Patience {
    /// As the transports wait ([`wait_for`]): the parent, and timed waits.
    Busy,
    /// [`idle_wait`]: the peer between runs.
    Idle,
}

/// Receives a small message of `N` words; `None` once the sender closed.
fn take<const N: usize>(rx: &mut Consumer<'_>, patience: Patience) -> Option<[u64; N]> {
    let attempt = || match rx.read() {
        Ok(frame) => {
            let payload = frame.payload();
            assert_eq!(payload.len(), 8 * N, "control message length");
            let words = std::array::from_fn(|i| u64::from_le_bytes(payload[8 * i..8 * i + 8].try_into().expect("8")));
            frame.release();
            Some(Some(words))
        }
        Err(Error::WouldBlock) => None,
        Err(Error::Closed) => Some(None),
        Err(e) => panic!("control read failed: {e}"),
    };
    match patience {
        Patience::Busy => wait_for(attempt),
        Patience::Idle => idle_wait(attempt),
    }
}

fn expect_ack(acks: &mut Consumer<'_>, want: u64) {
    match take::<1>(acks, Patience::Busy) {
        Some([got]) => assert_eq!(got, want, "unexpected acknowledgement"),
        None => panic!("peer closed its acknowledgement ring (did it panic?)"),
    }
}
