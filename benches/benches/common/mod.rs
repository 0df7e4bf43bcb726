//! The transports under test and the loops that drive them, shared by the
//! `ring` (criterion) and `ring_ratios` (side-by-side table) benches.
//!
//! Every transport moves the same frames the same way: the producer copies
//! each frame from a source buffer into the transport, the consumer copies
//! it out into a destination buffer, and whoever finds the transport full or
//! empty waits with [`wait_for`]. Each frame carries its sequence number in
//! its first 8 bytes, which the consumer checks, so a transport that lost,
//! duplicated or reordered a frame fails the bench instead of looking fast.

pub mod peer;

use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{TryRecvError, TrySendError};
use crossbeam_queue::ArrayQueue;
use weft_core::{Error, Ring};

use crate::support::{HeapMem, SplitMix};

/// Bytes of every transport's buffer: the weft ring's data area, rtrb's byte
/// ring, the fixed-size queues' slots, and memcpy's destination.
pub const RING_BYTES: usize = 4 << 20;

/// Frame sizes benchmarked, in payload bytes.
pub const FRAME_SIZES: [usize; 3] = [64, 4 << 10, 64 << 10];

/// Generation of the rings the benches create.
const GENERATION: u64 = 0x0062_656e_6368;

/// Spins before [`wait_for`] starts yielding the CPU.
const SPINS_BEFORE_YIELD: u32 = 256;

/// `"64B"`, `"4KiB"`, `"64KiB"`: frame sizes as benchmark names.
pub fn size_label(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => format!("{b}B"),
    }
}

/// Retries `attempt` until it returns `Some`: spinning at first, then
/// yielding the CPU. Every transport waits through this one function.
pub fn wait_for<T>(mut attempt: impl FnMut() -> Option<T>) -> T {
    let mut spins = 0;
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        if spins < SPINS_BEFORE_YIELD {
            spins += 1;
            std::hint::spin_loop();
        } else {
            thread::yield_now();
        }
    }
}

/// A frame-sized source buffer of pseudo-random bytes.
pub fn source(frame: usize) -> Vec<u8> {
    let mut buf = vec![0; frame];
    SplitMix(frame as u64).fill(&mut buf);
    buf
}

/// Writes the sequence number `seq` into the first 8 bytes of `frame`.
#[inline]
pub fn stamp(frame: &mut [u8], seq: u64) {
    frame[..8].copy_from_slice(&seq.to_le_bytes());
}

/// Checks that `frame` is frame number `seq`.
#[inline]
pub fn check(frame: &[u8], seq: u64) {
    let got = u64::from_le_bytes(frame[..8].try_into().expect("8 bytes"));
    assert_eq!(got, seq, "frame out of sequence");
}

/// The producing end of a transport.
pub trait Sender: Send {
    /// Copies `frame` into the transport, waiting for room.
    fn send(&mut self, frame: &[u8]);
}

/// The consuming end of a transport.
pub trait Receiver: Send {
    /// Copies the next frame into `frame` (which has its exact length),
    /// waiting for one.
    fn recv(&mut self, frame: &mut [u8]);
}

/// One benchmark subject: moves `frames` frames and says how long it took,
/// excluding any thread or process start-up.
pub trait Run {
    /// Moves `frames` frames of the subject's frame size.
    fn run(&mut self, frames: u64) -> Duration;
}

/// A named subject, as listed by [`with_transports`].
pub struct Entry<'a> {
    /// Short name, used as the criterion function name and table row.
    pub name: &'static str,
    /// What it measures.
    pub run: Box<dyn Run + 'a>,
}

/// Builds every subject for one frame size, warms each (so that the first
/// timed run does not pay for page faults), and hands them to `f`.
pub fn with_transports<T>(frame: usize, f: impl FnOnce(&mut [Entry<'_>]) -> T) -> T {
    let heap = HeapMem::new(Ring::size_for(RING_BYTES).expect("ring size"));
    let ring = Ring::init(heap.region(), RING_BYTES, GENERATION).expect("init ring");
    thread::scope(|s| {
        let weft = Pair::spawn(
            s,
            frame,
            WeftTx(ring.producer().expect("producer")),
            WeftRx(ring.consumer().expect("consumer")),
        );
        let (rtrb_tx, rtrb_rx) = rtrb::RingBuffer::new(RING_BYTES);
        let rtrb = Pair::spawn(s, frame, RtrbTx(rtrb_tx), RtrbRx(rtrb_rx));
        let (queue, channel) = match frame {
            64 => fixed::<64>(s),
            4096 => fixed::<4096>(s),
            65536 => fixed::<65536>(s),
            _ => panic!("no fixed-size transports for {frame}-byte frames"),
        };
        let memcpy = Alone::new(frame, CopySink::new(RING_BYTES));

        peer::with_peer(frame, peer::Kind::Process, |xproc| {
            peer::with_peer(frame, peer::Kind::Thread, |xthread| {
                let mut entries = vec![
                    Entry::new("weft", weft),
                    Entry::new("rtrb", rtrb),
                    Entry::new("array_queue", queue),
                    Entry::new("channel", channel),
                    Entry::new("memcpy", memcpy),
                    Entry::new("weft_xproc", xproc),
                    Entry::new("weft_xthread_shm", xthread),
                ];
                let warm_up = (2 * RING_BYTES / frame) as u64;
                for entry in &mut entries {
                    entry.run.run(warm_up);
                }
                f(&mut entries)
            })
        })
    })
}

impl<'a> Entry<'a> {
    fn new(name: &'static str, run: impl Run + 'a) -> Entry<'a> {
        Entry {
            name,
            run: Box::new(run),
        }
    }
}

impl<R: Run + ?Sized> Run for &mut R {
    fn run(&mut self, frames: u64) -> Duration {
        (**self).run(frames)
    }
}

impl<R: Run + ?Sized> Run for Box<R> {
    fn run(&mut self, frames: u64) -> Duration {
        (**self).run(frames)
    }
}

/// A producer (the calling thread) and a consumer thread that lives as
/// long as the pair and serves one run after another.
///
/// A run: the consumer is told how many frames to expect and answers that
/// it is ready (both untimed, through std channels); the clock then runs
/// from the producer's first frame to the consumer's last.
struct Pair<S> {
    tx: S,
    src: Vec<u8>,
    runs: mpsc::Sender<u64>,
    ready: mpsc::Receiver<()>,
    done: mpsc::Receiver<Instant>,
}

impl<S: Sender> Pair<S> {
    fn spawn<'scope, R: Receiver + 'scope>(
        scope: &'scope thread::Scope<'scope, '_>,
        frame: usize,
        tx: S,
        mut rx: R,
    ) -> Self {
        let (runs, run_rx) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        scope.spawn(move || {
            let mut dst = vec![0; frame];
            // Ends when the pair is dropped.
            while let Ok(frames) = run_rx.recv() {
                ready_tx.send(()).expect("producer gone");
                receive(&mut rx, &mut dst, frames);
                done_tx.send(Instant::now()).expect("producer gone");
            }
        });
        Pair {
            tx,
            src: source(frame),
            runs,
            ready,
            done,
        }
    }
}

impl<S: Sender> Run for Pair<S> {
    fn run(&mut self, frames: u64) -> Duration {
        self.runs.send(frames).expect("consumer thread gone");
        self.ready.recv().expect("consumer thread gone");
        let start = Instant::now();
        send(&mut self.tx, &mut self.src, frames);
        self.done.recv().expect("consumer thread panicked") - start
    }
}

/// Sends `frames` copies of `src`, each stamped with its sequence number.
pub fn send(tx: &mut impl Sender, src: &mut [u8], frames: u64) {
    for seq in 0..frames {
        stamp(src, seq);
        tx.send(src);
    }
}

/// Receives `frames` frames into `dst`, checking their sequence numbers.
pub fn receive(rx: &mut impl Receiver, dst: &mut [u8], frames: u64) {
    for seq in 0..frames {
        rx.recv(dst);
        check(dst, seq);
    }
}

/// A single thread feeding a [`Sender`] that needs no consumer (memcpy).
struct Alone<S> {
    sink: S,
    src: Vec<u8>,
}

impl<S: Sender> Alone<S> {
    fn new(frame: usize, sink: S) -> Self {
        Alone {
            sink,
            src: source(frame),
        }
    }
}

impl<S: Sender> Run for Alone<S> {
    fn run(&mut self, frames: u64) -> Duration {
        let start = Instant::now();
        send(&mut self.sink, &mut self.src, frames);
        start.elapsed()
    }
}

/// The baseline: frames copied into a 4 MiB buffer, cyclically, by one
/// thread. The lower bound of any transport's work is this copy, twice.
struct CopySink {
    buf: Vec<u8>,
    at: usize,
}

impl CopySink {
    fn new(len: usize) -> Self {
        CopySink {
            buf: vec![0; len],
            at: 0,
        }
    }
}

impl Sender for CopySink {
    fn send(&mut self, frame: &[u8]) {
        if self.at + frame.len() > self.buf.len() {
            self.at = 0;
        }
        let dst = &mut self.buf[self.at..self.at + frame.len()];
        dst.copy_from_slice(frame);
        std::hint::black_box(dst);
        self.at += frame.len();
    }
}

/// weft's producer: one [`Producer::send`](weft_core::Producer::send) (reserve,
/// copy, commit) per frame.
pub struct WeftTx<'a>(pub weft_core::Producer<'a>);

/// weft's consumer: read in place, copy out, release.
pub struct WeftRx<'a>(pub weft_core::Consumer<'a>);

impl Sender for WeftTx<'_> {
    fn send(&mut self, frame: &[u8]) {
        wait_for(|| match self.0.send(frame) {
            Ok(()) => Some(()),
            Err(Error::WouldBlock) => None,
            Err(e) => panic!("weft send failed: {e}"),
        })
    }
}

impl Receiver for WeftRx<'_> {
    fn recv(&mut self, frame: &mut [u8]) {
        wait_for(|| match self.0.read() {
            Ok(read) => {
                frame.copy_from_slice(read.payload());
                read.release();
                Some(())
            }
            Err(Error::WouldBlock) => None,
            Err(e) => panic!("weft read failed: {e}"),
        })
    }
}

/// rtrb as a byte ring: a frame is a chunk of its length.
struct RtrbTx(rtrb::Producer<u8>);
struct RtrbRx(rtrb::Consumer<u8>);

impl Sender for RtrbTx {
    fn send(&mut self, frame: &[u8]) {
        wait_for(|| {
            let Ok(mut chunk) = self.0.write_chunk_uninit(frame.len()) else {
                assert!(!self.0.is_abandoned(), "rtrb consumer gone");
                return None;
            };
            let (first, second) = chunk.as_mut_slices();
            let (head, tail) = frame.split_at(first.len());
            first.write_copy_of_slice(head);
            second.write_copy_of_slice(tail);
            // SAFETY: the two slices, `frame.len()` slots in all, were both
            // written just above.
            unsafe { chunk.commit_all() };
            Some(())
        })
    }
}

impl Receiver for RtrbRx {
    fn recv(&mut self, frame: &mut [u8]) {
        wait_for(|| {
            let Ok(chunk) = self.0.read_chunk(frame.len()) else {
                assert!(!self.0.is_abandoned(), "rtrb producer gone");
                return None;
            };
            let (first, second) = chunk.as_slices();
            let (head, tail) = frame.split_at_mut(first.len());
            head.copy_from_slice(first);
            tail.copy_from_slice(second);
            chunk.commit_all();
            Some(())
        })
    }
}

/// Fixed-size items, by value: crossbeam's `ArrayQueue` and bounded channel
/// of `[u8; N]`, `RING_BYTES / N` items each.
fn fixed<'scope, const N: usize>(scope: &'scope thread::Scope<'scope, '_>) -> (Box<dyn Run>, Box<dyn Run>) {
    let slots = RING_BYTES / N;
    let queue = Arc::new(ArrayQueue::<[u8; N]>::new(slots));
    let (tx, rx) = crossbeam_channel::bounded::<[u8; N]>(slots);
    (
        Box::new(Pair::spawn(scope, N, QueueTx(queue.clone()), QueueRx(queue))),
        Box::new(Pair::spawn(scope, N, ChannelTx(tx), ChannelRx(rx))),
    )
}

struct QueueTx<const N: usize>(Arc<ArrayQueue<[u8; N]>>);
struct QueueRx<const N: usize>(Arc<ArrayQueue<[u8; N]>>);
struct ChannelTx<const N: usize>(crossbeam_channel::Sender<[u8; N]>);
struct ChannelRx<const N: usize>(crossbeam_channel::Receiver<[u8; N]>);

/// Copies `frame` into an item and offers it to `try_push` (which hands it
/// back when full) until accepted.
fn push_item<const N: usize>(frame: &[u8], mut try_push: impl FnMut([u8; N]) -> Result<(), [u8; N]>) {
    let mut pending = Some(<[u8; N]>::try_from(frame).expect("frame of the item's size"));
    wait_for(|| match try_push(pending.take()?) {
        Ok(()) => Some(()),
        Err(item) => {
            pending = Some(item);
            None
        }
    })
}

impl<const N: usize> Sender for QueueTx<N> {
    fn send(&mut self, frame: &[u8]) {
        push_item(frame, |item| {
            // The consumer thread holds the only other reference.
            assert!(Arc::strong_count(&self.0) > 1, "queue consumer gone");
            self.0.push(item)
        })
    }
}

impl<const N: usize> Receiver for QueueRx<N> {
    fn recv(&mut self, frame: &mut [u8]) {
        let item = wait_for(|| {
            let item = self.0.pop();
            assert!(item.is_some() || Arc::strong_count(&self.0) > 1, "queue producer gone");
            item
        });
        frame.copy_from_slice(&item);
    }
}

impl<const N: usize> Sender for ChannelTx<N> {
    fn send(&mut self, frame: &[u8]) {
        push_item(frame, |item| match self.0.try_send(item) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(item)) => Err(item),
            Err(TrySendError::Disconnected(_)) => panic!("channel receiver gone"),
        })
    }
}

impl<const N: usize> Receiver for ChannelRx<N> {
    fn recv(&mut self, frame: &mut [u8]) {
        let item = wait_for(|| match self.0.try_recv() {
            Ok(item) => Some(item),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => panic!("channel sender gone"),
        });
        frame.copy_from_slice(&item);
    }
}
