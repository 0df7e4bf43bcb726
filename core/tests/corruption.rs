//! Shared memory is untrusted: whatever bytes land in a ring's header, its
//! frames or a mesh's header, every operation returns a value or an error
//! (Corrupt, or an attach error), never a panic or an out-of-bounds access.
//! Tests run with overflow checks on, so arithmetic on a bad value that is
//! not checked first fails here too.

mod support;

use proptest::prelude::*;
use support::HeapMem;
use weft_core::{
    Corruption, Error, LayoutError, Mesh, MeshLayout, MessageBuf, MessageKind, Ring, SendProgress, SliceBuf,
    RING_HEADER_LEN,
};

/// Offsets of the ring header's words (see core/src/ring/mod.rs).
const MAGIC: usize = 0;
const VERSION: usize = 8;
const CAPACITY: usize = 16;
const GENERATION: usize = 24;
const WRITE_POS: usize = 128;
const READ_POS: usize = 256;
const PRODUCER_STATE: usize = 384;

fn poke_u64(mem: &HeapMem, offset: usize, value: u64) {
    // SAFETY: no handle is in the middle of an operation (single thread).
    unsafe { mem.poke(offset, &value.to_le_bytes()) }
}

fn poke_u32(mem: &HeapMem, offset: usize, value: u32) {
    // SAFETY: as above.
    unsafe { mem.poke(offset, &value.to_le_bytes()) }
}

fn peek_u64(mem: &HeapMem, offset: usize) -> u64 {
    // SAFETY: as above.
    let bytes = unsafe { mem.peek(offset, 8) };
    u64::from_le_bytes(bytes.try_into().unwrap())
}

#[test]
fn attach_checks_identity() {
    let mem = HeapMem::new(RING_HEADER_LEN + 1024);
    let region = mem.region();
    assert_eq!(
        Ring::attach(region, 3).unwrap_err(),
        LayoutError::BadMagic,
        "zeroed memory"
    );
    Ring::init(region, 1024, 3).unwrap();
    assert_eq!(Ring::attach(region, 4).unwrap_err(), LayoutError::Generation);
    let short = region.subregion(0, RING_HEADER_LEN + 512).unwrap();
    assert_eq!(Ring::attach(short, 3).unwrap_err(), LayoutError::TooSmall);
    let shifted = region.subregion(8, RING_HEADER_LEN).unwrap();
    assert_eq!(Ring::attach(shifted, 3).unwrap_err(), LayoutError::Misaligned);

    poke_u64(&mem, CAPACITY, 1000);
    assert_eq!(Ring::attach(region, 3).unwrap_err(), LayoutError::Shape);
    poke_u64(&mem, CAPACITY, 4096);
    assert_eq!(Ring::attach(region, 3).unwrap_err(), LayoutError::TooSmall);
    poke_u64(&mem, CAPACITY, 1024);
    poke_u32(&mem, VERSION, 99);
    assert_eq!(Ring::attach(region, 3).unwrap_err(), LayoutError::Version);
    poke_u64(&mem, MAGIC, 0x1234);
    assert_eq!(Ring::attach(region, 3).unwrap_err(), LayoutError::BadMagic);
    assert_eq!(Ring::init(region, 1000, 3).unwrap_err(), LayoutError::Capacity);
    let _ = GENERATION;
}

#[test]
fn bad_positions_and_states_are_corrupt() {
    let mem = HeapMem::new(RING_HEADER_LEN + 1024);
    let ring = Ring::init(mem.region(), 1024, 0).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    assert_eq!(ring.producer().unwrap_err(), LayoutError::Claimed);

    // The producer claims more than a ring's worth is published.
    poke_u64(&mem, WRITE_POS, 4096);
    assert_eq!(rx.read().unwrap_err(), Error::Corrupt(Corruption::Position));
    // Off the frame grid.
    poke_u64(&mem, WRITE_POS, 12);
    assert_eq!(rx.read().unwrap_err(), Error::Corrupt(Corruption::Position));
    poke_u64(&mem, WRITE_POS, 0);

    // The consumer claims to have read what was never written.
    for _ in 0..100 {
        match tx.send(&[1; 100]) {
            Ok(()) => {}
            Err(Error::WouldBlock) => break,
            Err(e) => panic!("{e}"),
        }
    }
    poke_u64(&mem, READ_POS, 1 << 40);
    assert_eq!(tx.send(&[1; 100]).unwrap_err(), Error::Corrupt(Corruption::Position));

    poke_u32(&mem, PRODUCER_STATE, 77);
    let mem2 = HeapMem::new(RING_HEADER_LEN + 1024);
    let ring2 = Ring::init(mem2.region(), 1024, 0).unwrap();
    let mut rx2 = ring2.consumer().unwrap();
    poke_u32(&mem2, PRODUCER_STATE, 77);
    assert_eq!(rx2.read().unwrap_err(), Error::Corrupt(Corruption::State));
}

#[test]
fn bad_frames_are_corrupt() {
    let mem = HeapMem::new(RING_HEADER_LEN + 1024);
    let ring = Ring::init(mem.region(), 1024, 0).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    tx.send(b"hello").unwrap();
    let header = peek_u64(&mem, RING_HEADER_LEN);

    poke_u64(&mem, RING_HEADER_LEN, 0);
    assert_eq!(rx.read().unwrap_err(), Error::Corrupt(Corruption::FrameHeader));
    // Length past what was published.
    poke_u64(&mem, RING_HEADER_LEN, (header & !0xffff_ffff) | 200);
    assert_eq!(rx.read().unwrap_err(), Error::Corrupt(Corruption::FrameLength));
    // Length past the largest frame.
    poke_u64(&mem, RING_HEADER_LEN, (header & !0xffff_ffff) | 0xffff_fff0);
    assert_eq!(rx.read().unwrap_err(), Error::Corrupt(Corruption::FrameLength));
    // A padding frame that does not reach the end of the data area.
    poke_u64(&mem, RING_HEADER_LEN, (header & !0xff_ffff_ffff) | (4 << 32) | 8);
    assert_eq!(rx.read().unwrap_err(), Error::Corrupt(Corruption::Padding));

    poke_u64(&mem, RING_HEADER_LEN, header);
    assert_eq!(rx.read().unwrap().payload(), b"hello");
}

#[test]
fn a_fragment_followed_by_another_kind_is_corrupt() {
    let mem = HeapMem::new(RING_HEADER_LEN + 256);
    let ring = Ring::init(mem.region(), 256, 0).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    assert_eq!(ring.max_payload(), 120);
    tx.send(&[1; 100]).unwrap(); // 112 bytes in the ring
    let mut progress = SendProgress::default();
    // Two fragments (120 + 30); only the first fits beside the frame above.
    assert_eq!(
        tx.send_message(MessageKind::Error, &[9; 150], &mut progress),
        Err(Error::WouldBlock)
    );
    assert_eq!(progress.bytes_sent(), 120);
    // A misbehaving producer starts another message mid-message.
    tx.send(b"data").unwrap();
    rx.read().unwrap().release();
    let mut storage = [0u8; 1024];
    let mut buf = SliceBuf::new(&mut storage);
    assert_eq!(rx.read_message(&mut buf), Err(Error::Corrupt(Corruption::Fragment)));
}

/// Bytes to write into the region: (offset selector, value).
#[derive(Clone, Debug)]
enum Poke {
    /// Any byte anywhere in the ring.
    Byte(usize, u8),
    /// A whole u64 on the 8-byte grid, biased to interesting values.
    Word(usize, u64),
}

fn poke() -> impl Strategy<Value = Poke> {
    let value = prop_oneof![
        any::<u64>(),
        Just(0),
        Just(u64::MAX),
        (0u64..4096),
        (0u64..16).prop_map(|v| v << 32),
        any::<u32>().prop_map(|v| ((0x5746_0000u64 | (v as u64 & 0x1ff)) << 32) | (v as u64 >> 20)),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(o, b)| Poke::Byte(o, b)),
        (any::<usize>(), value).prop_map(|(o, v)| Poke::Word(o, v)),
    ]
}

fn apply(mem: &HeapMem, len: usize, poke: &Poke, limit: usize) {
    let limit = limit.min(len);
    // SAFETY: single-threaded; no operation is in progress.
    unsafe {
        match *poke {
            Poke::Byte(o, b) => mem.poke(o % limit, &[b]),
            Poke::Word(o, v) => mem.poke((o % (limit / 8)) * 8, &v.to_le_bytes()),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Send(u16),
    Message(u16),
    Read,
    ReadMessage,
    ArmProducer,
    ArmConsumer,
    Take,
    Attach,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<u16>().prop_map(Op::Send),
        any::<u16>().prop_map(Op::Message),
        Just(Op::Read),
        Just(Op::ReadMessage),
        Just(Op::ArmProducer),
        Just(Op::ArmConsumer),
        Just(Op::Take),
        Just(Op::Attach),
    ]
}

fn corrupt_ring(capacity: usize, traffic: u8, read: u8, pokes: Vec<Poke>, header_bias: bool, ops: Vec<Op>) {
    let len = RING_HEADER_LEN + capacity;
    let mem = HeapMem::new(len);
    let ring = Ring::init(mem.region(), capacity, 1).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let max = ring.max_payload();
    for i in 0..traffic {
        let _ = tx.send(&vec![i; (i as usize * 13) % (max + 1)]);
    }
    for _ in 0..read {
        if let Ok(f) = rx.read() {
            f.release();
        }
    }
    let limit = if header_bias { RING_HEADER_LEN + 64 } else { len };
    for p in &pokes {
        apply(&mem, len, p, limit);
    }
    let mut storage = vec![0u8; 4 * capacity];
    let mut buf = SliceBuf::new(&mut storage);
    for op in ops {
        match op {
            Op::Send(n) => {
                let _ = tx.send(&vec![7; n as usize % (max + 1)]);
            }
            Op::Message(n) => {
                let _ = tx.send_message(
                    MessageKind::Data,
                    &vec![3; n as usize % (3 * max)],
                    &mut SendProgress::default(),
                );
            }
            Op::Read => {
                if let Ok(f) = rx.read() {
                    assert!(f.payload().len() <= max);
                    f.release();
                }
            }
            Op::ReadMessage => {
                buf.clear();
                let _ = rx.read_message(&mut buf);
            }
            Op::ArmProducer => {
                let _ = tx.arm_wakeup();
            }
            Op::ArmConsumer => {
                let _ = rx.arm_wakeup();
            }
            Op::Take => {
                let _ = (tx.peer_waiting(), rx.peer_waiting());
            }
            Op::Attach => {
                if let Ok(other) = Ring::attach(mem.region(), 1) {
                    assert!(other.capacity().is_power_of_two() && RING_HEADER_LEN + other.capacity() <= len);
                    // A corrupt state word may let a side be claimed again;
                    // the claim must still be well-formed.
                    let _ = other.producer().map(|p| p.written());
                    let _ = other.consumer().map(|c| c.consumed());
                }
            }
        }
    }
}

fn corrupt_mesh(pokes: Vec<Poke>, header_only: bool) {
    let layout = MeshLayout::new(3, 2, 256).unwrap();
    let mem = HeapMem::new(layout.size());
    Mesh::init(mem.region(), layout, 11).unwrap();
    let header_len = layout.ring_offset(0, 0, 0).unwrap();
    let limit = if header_only { header_len } else { layout.size() };
    for p in &pokes {
        apply(&mem, layout.size(), p, limit);
    }
    let Ok(mesh) = Mesh::attach(mem.region(), 11) else {
        return;
    };
    let l = *mesh.layout();
    assert!(l.size() <= mem.region().len());
    for x in 0..l.exchanges() {
        for s in 0..l.participants() {
            for r in 0..l.participants() {
                if let Ok(ring) = mesh.ring(x, s, r) {
                    if let (Ok(mut tx), Ok(mut rx)) = (ring.producer(), ring.consumer()) {
                        let _ = tx.send(b"x");
                        if let Ok(f) = rx.read() {
                            f.release();
                        }
                    }
                }
            }
        }
    }
    for p in 0..l.participants() + 1 {
        let _ = mesh.participant_state(p);
        let _ = mesh.wake_token(p);
        let _ = mesh.register(p, 5);
    }
    let _ = mesh.is_aborted();
    if let Some(e) = mesh.first_error() {
        assert!(e.message().len() <= weft_core::ERROR_MESSAGE_MAX);
    }
    let _ = mesh.abort(0, 1, b"after corruption");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn corrupt_ring_never_panics(
        capacity in prop_oneof![Just(64usize), Just(256), Just(4096)],
        traffic in 0u8..40,
        read in 0u8..40,
        pokes in proptest::collection::vec(poke(), 1..6),
        header_bias in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        corrupt_ring(capacity, traffic, read, pokes, header_bias, ops);
    }

    #[test]
    fn corrupt_mesh_never_panics(
        pokes in proptest::collection::vec(poke(), 1..6),
        header_only in any::<bool>(),
    ) {
        corrupt_mesh(pokes, header_only);
    }
}

/// `MessageBuf` is object safe and usable by the test's own buffers too.
#[test]
fn message_buf_bounds_reassembly() {
    let mem = HeapMem::new(RING_HEADER_LEN + 256);
    let ring = Ring::init(mem.region(), 256, 0).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let mut progress = SendProgress::default();
    let message = [5u8; 100];
    tx.send_message(MessageKind::Data, &message, &mut progress).unwrap();
    let mut storage = [0u8; 50];
    let mut small = SliceBuf::new(&mut storage);
    assert_eq!(rx.read_message(&mut small as &mut dyn MessageBuf), Err(Error::TooLarge));
}
