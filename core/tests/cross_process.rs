//! Two OS processes map the same shared memory at different addresses and
//! pass a million frames of random sizes through one ring, fragments
//! included; the consumer checks every byte against the same generator, and
//! both sides compare checksums.
//!
//! The test binary is its own child: run with `WEFT_XPROC_PATH` set, the
//! test body becomes the consumer.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use support::{checksum, SharedFile, SplitMix, CHECKSUM_SEED};
use weft_core::{Error, MessageBuf, MessageKind, Ring, SendProgress};

const TEST_NAME: &str = "two_processes_exchange_a_million_frames";
const PATH_ENV: &str = "WEFT_XPROC_PATH";
const PARENT_ADDR_ENV: &str = "WEFT_XPROC_PARENT_ADDR";
const MESSAGES: u64 = 1_000_000;
const CAPACITY: usize = 64 << 10;
const GENERATION: u64 = 0x0dd_ba11;
const SEED: u64 = 0x5eed;

/// The n-th message of the stream: mostly small, every 997th larger than
/// a frame (so sent as fragments).
fn message(rng: &mut SplitMix, n: u64, max_payload: usize, buf: &mut Vec<u8>) {
    let len = if n.is_multiple_of(997) {
        2 * max_payload + rng.below(max_payload as u64) as usize
    } else {
        rng.below(1024) as usize
    };
    buf.resize(len, 0);
    rng.fill(buf);
}

struct VecBuf<'v>(&'v mut Vec<u8>);

impl MessageBuf for VecBuf<'_> {
    fn append(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Waits politely for the peer; the ring itself never blocks.
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

#[test]
fn two_processes_exchange_a_million_frames() {
    if let Ok(path) = std::env::var(PATH_ENV) {
        consumer_child(path.as_ref());
        return;
    }
    let mut shm = SharedFile::create(Ring::size_for(CAPACITY).unwrap());
    let path = shm.path().to_path_buf();
    let parent_addr = shm.region().as_ptr() as usize;
    let ring = Ring::init(shm.region(), CAPACITY, GENERATION).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(PATH_ENV, &path)
        .env(PARENT_ADDR_ENV, parent_addr.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn consumer process");

    let mut tx = ring.producer().unwrap();
    let mut rng = SplitMix(SEED);
    let mut buf = Vec::new();
    let mut sum = CHECKSUM_SEED;
    let mut spins = 0u32;
    for n in 0..MESSAGES {
        message(&mut rng, n, ring.max_payload(), &mut buf);
        sum = checksum(sum, &buf);
        let mut progress = SendProgress::default();
        loop {
            match tx.send_message(MessageKind::Data, &buf, &mut progress) {
                Ok(()) => break,
                Err(Error::WouldBlock) => {
                    backoff(&mut spins);
                    if spins.is_multiple_of(1 << 16) {
                        if let Some(status) = child.try_wait().unwrap() {
                            panic!("consumer process exited early: {status}");
                        }
                    }
                }
                Err(e) => panic!("send {n}: {e}"),
            }
        }
        spins = 0;
    }
    let mut progress = SendProgress::default();
    while tx.send_message(MessageKind::End, &[], &mut progress) == Err(Error::WouldBlock) {
        backoff(&mut spins);
    }
    tx.close();

    // Read to the end (closing the pipe early would fail the child's prints).
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    let report = lines
        .iter()
        .find_map(|line| line.split_once("WEFT_XPROC_RESULT ").map(|(_, r)| r.trim().to_owned()));
    let status = child.wait().unwrap();
    assert!(status.success(), "consumer process failed: {status}");
    let report = report.expect("consumer reported");
    let fields: Vec<u64> = report.split(' ').map(|f| f.parse().unwrap()).collect();
    let [messages, child_sum, child_addr] = fields[..] else {
        panic!("bad report {report}")
    };
    assert_eq!(messages, MESSAGES);
    assert_eq!(child_sum, sum, "checksums differ");
    assert_ne!(child_addr as usize, parent_addr, "mapped at the same address");
}

fn consumer_child(path: &std::path::Path) {
    let parent_addr: usize = std::env::var(PARENT_ADDR_ENV).unwrap().parse().unwrap();
    // Map it where the parent did not, to prove positions are offsets.
    let mut shm = SharedFile::open(path);
    let _occupied; // holds the parent's address, if we got it, while we map again
    if shm.region().as_ptr() as usize == parent_addr {
        _occupied = std::mem::replace(&mut shm, SharedFile::open(path));
    }
    let addr = shm.region().as_ptr() as usize;
    let ring = Ring::attach(shm.region(), GENERATION).unwrap();
    let mut rx = ring.consumer().unwrap();

    let mut rng = SplitMix(SEED);
    let mut expected = Vec::new();
    let mut got = Vec::new();
    let mut sum = CHECKSUM_SEED;
    let mut spins = 0u32;
    let mut n = 0u64;
    loop {
        match rx.read_message(&mut VecBuf(&mut got)) {
            Ok(MessageKind::Data) => {
                message(&mut rng, n, ring.max_payload(), &mut expected);
                assert!(
                    got == expected,
                    "message {n} differs ({} vs {} bytes)",
                    got.len(),
                    expected.len()
                );
                sum = checksum(sum, &got);
                got.clear();
                n += 1;
                spins = 0;
            }
            Ok(MessageKind::End) => break,
            Ok(kind) => panic!("unexpected {kind:?}"),
            Err(Error::WouldBlock) => backoff(&mut spins),
            Err(e) => panic!("read {n}: {e}"),
        }
    }
    // After End, the producer's close: a clean end of stream.
    loop {
        match rx.read() {
            Err(Error::Closed) => break,
            Err(Error::WouldBlock) => backoff(&mut spins),
            other => panic!("after End: {other:?}"),
        }
    }
    println!("WEFT_XPROC_RESULT {n} {sum} {addr}");
}
