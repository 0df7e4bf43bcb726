//! Property test of the ring against a `VecDeque` oracle: random frame and
//! message sizes (over the largest frame too, for fragments), random
//! interleavings of reserve/commit/abort, sends, zero-copy reads, peeks,
//! message reads and closes, on rings small enough to wrap many times.

mod support;

use std::collections::VecDeque;

use proptest::prelude::*;
use support::HeapMem;
use weft_core::{Error, MessageBuf, MessageKind, Producer, Ring, SendProgress, FRAME_HEADER_LEN};

#[derive(Clone, Debug)]
enum Op {
    /// Reserve `len` (a fraction of max payload, or over it), fill, then
    /// commit all, commit a prefix, or abort.
    Reserve {
        len: Size,
        end: GrantEnd,
    },
    /// Send a message of any size and kind with `send_message`; if it would
    /// block, it stays pending and later producer ops continue it.
    Message {
        len: Size,
        kind: u8,
    },
    /// Read one frame in place and release it.
    ReadFrame,
    /// Read one frame, drop it unreleased, read it again: same bytes.
    Peek,
    /// Read one whole message.
    ReadMessage,
    /// The producer takes the consumer's wakeup request, as after a publish.
    TakeWakeups,
    CloseProducer,
    CloseConsumer,
}

#[derive(Clone, Copy, Debug)]
enum GrantEnd {
    Commit,
    CommitPrefix(u16),
    Abort,
}

/// A length relative to the ring: per-mille of max payload, or a multiple.
#[derive(Clone, Copy, Debug)]
enum Size {
    Permille(u16),
    Times(u8),
}

impl Size {
    fn resolve(self, max: usize) -> usize {
        match self {
            Size::Permille(p) => max * p as usize / 1000,
            Size::Times(t) => max * t as usize + 1,
        }
    }
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        6 => (0u16..=1000).prop_map(Size::Permille),
        1 => Just(Size::Permille(0)),
        1 => Just(Size::Permille(1000)),
        1 => (1u8..4).prop_map(Size::Times),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let end = prop_oneof![
        3 => Just(GrantEnd::Commit),
        1 => any::<u16>().prop_map(GrantEnd::CommitPrefix),
        1 => Just(GrantEnd::Abort),
    ];
    prop_oneof![
        6 => (size(), end).prop_map(|(len, end)| Op::Reserve { len, end }),
        4 => (size(), 1u8..=3).prop_map(|(len, kind)| Op::Message { len, kind }),
        6 => Just(Op::ReadFrame),
        1 => Just(Op::Peek),
        4 => Just(Op::ReadMessage),
        1 => Just(Op::TakeWakeups),
        1 => Just(Op::CloseProducer),
        1 => Just(Op::CloseConsumer),
    ]
}

fn kind_of(k: u8) -> MessageKind {
    match k {
        1 => MessageKind::Data,
        2 => MessageKind::End,
        _ => MessageKind::Error,
    }
}

/// A growable [`MessageBuf`] with a bound.
struct VecBuf<'v>(&'v mut Vec<u8>);

impl MessageBuf for VecBuf<'_> {
    fn append(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// What the consumer must see, and what the test knows of both sides.
struct Oracle {
    /// Messages published in full or in part, oldest first.
    queue: VecDeque<(MessageKind, Vec<u8>)>,
    /// The message `send_message` is part-way through (its bytes are the
    /// back of `queue`), with its progress.
    pending: Option<(MessageKind, Vec<u8>, SendProgress)>,
    /// Bytes of the front message the consumer has read so far.
    partial: Vec<u8>,
    next_byte: u8,
    producer_closed: bool,
    consumer_closed: bool,
}

impl Oracle {
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                self.next_byte = self.next_byte.wrapping_mul(31).wrapping_add(7);
                self.next_byte
            })
            .collect()
    }

    /// Whether the front message is in the ring completely.
    fn front_complete(&self) -> bool {
        !self.queue.is_empty() && (self.queue.len() > 1 || self.pending.is_none())
    }

    /// The consumer finished a message with these bytes and kind.
    fn complete(&mut self, kind: MessageKind) -> Result<(), TestCaseError> {
        let (want_kind, want) = self.queue.pop_front().expect("a message was read, so one was sent");
        prop_assert_eq!(kind, want_kind);
        prop_assert_eq!(&self.partial, &want);
        self.partial.clear();
        Ok(())
    }
}

fn run(capacity: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mem = HeapMem::new(Ring::size_for(capacity).unwrap());
    let ring = Ring::init(mem.region(), capacity, 5).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let max = ring.max_payload();
    let mut o = Oracle {
        queue: VecDeque::new(),
        pending: None,
        partial: Vec::new(),
        next_byte: 1,
        producer_closed: false,
        consumer_closed: false,
    };

    for op in ops {
        match op {
            Op::Reserve { len, end } => {
                if o.pending.is_some() {
                    continue_pending(&mut tx, &mut o, capacity)?;
                    continue;
                }
                let len = len.resolve(max);
                let in_flight = tx.written() - rx.consumed();
                let bytes = o.bytes(len);
                match tx.reserve(len) {
                    Ok(mut grant) => {
                        prop_assert!(len <= max && !o.producer_closed && !o.consumer_closed);
                        grant.copy_from_slice(&bytes);
                        match end {
                            GrantEnd::Commit => {
                                grant.commit();
                                o.queue.push_back((MessageKind::Data, bytes));
                            }
                            GrantEnd::CommitPrefix(n) => {
                                let n = n as usize % (len + 1);
                                grant.commit_len(n);
                                o.queue.push_back((MessageKind::Data, bytes[..n].to_vec()));
                            }
                            GrantEnd::Abort => grant.abort(),
                        }
                    }
                    Err(Error::TooLarge) => prop_assert!(len > max),
                    Err(Error::Closed) => prop_assert!(o.producer_closed || o.consumer_closed),
                    Err(Error::WouldBlock) => {
                        // Padding is shorter than a frame, so a frame fails
                        // only if two of it would not fit in what is free.
                        let frame = (FRAME_HEADER_LEN + len.next_multiple_of(8)) as u64;
                        prop_assert!(in_flight + 2 * frame > capacity as u64, "{in_flight} in flight");
                        prop_assert!(in_flight > 0, "a drained ring takes any frame up to the max");
                    }
                    Err(e) => prop_assert!(false, "reserve: {e}"),
                }
            }
            Op::Message { len, kind } => {
                if o.pending.is_none() {
                    let bytes = o.bytes(len.resolve(max));
                    let kind = kind_of(kind);
                    o.queue.push_back((kind, bytes.clone()));
                    o.pending = Some((kind, bytes, SendProgress::default()));
                }
                continue_pending(&mut tx, &mut o, capacity)?;
            }
            Op::ReadFrame => {
                let drained = tx.written() == rx.consumed();
                match rx.read() {
                    Ok(frame) => {
                        prop_assert!(!o.consumer_closed);
                        let (kind, more) = (frame.kind(), frame.is_partial());
                        o.partial.extend_from_slice(frame.payload());
                        frame.release();
                        if !more {
                            o.complete(kind)?;
                        }
                    }
                    Err(Error::WouldBlock) => prop_assert!(drained && !o.producer_closed),
                    Err(Error::Closed) => prop_assert!(o.consumer_closed || (drained && o.producer_closed)),
                    Err(e) => prop_assert!(false, "read: {e}"),
                }
            }
            Op::Peek => {
                let first = match rx.read() {
                    Ok(frame) => frame.payload().to_vec(),
                    Err(_) => continue,
                };
                let again = rx.read().map(|f| f.payload().to_vec());
                prop_assert_eq!(again, Ok(first));
            }
            Op::ReadMessage => {
                let mut buf = std::mem::take(&mut o.partial);
                let result = rx.read_message(&mut VecBuf(&mut buf));
                o.partial = buf;
                match result {
                    Ok(kind) => o.complete(kind)?,
                    Err(Error::WouldBlock) => {
                        prop_assert!(!o.front_complete(), "a whole message was there");
                        prop_assert!(tx.written() == rx.consumed());
                    }
                    Err(Error::Closed) => prop_assert!(o.consumer_closed || o.producer_closed),
                    Err(e) => prop_assert!(false, "read_message: {e}"),
                }
            }
            Op::TakeWakeups => {
                // Nobody armed a wakeup, so nobody needs waking.
                prop_assert!(!tx.peer_waiting());
                prop_assert!(!rx.peer_waiting());
            }
            Op::CloseProducer => {
                tx.close();
                o.producer_closed = true;
            }
            Op::CloseConsumer => {
                rx.close();
                o.consumer_closed = true;
                tx.peer_waiting();
                prop_assert!(tx.is_peer_closed());
                prop_assert_eq!(tx.reserve(0).map(|_| ()), Err(Error::Closed));
            }
        }
    }

    // Drain: everything committed arrives, in order, then Closed.
    if !o.consumer_closed {
        tx.close();
        let mut buf = std::mem::take(&mut o.partial);
        loop {
            match rx.read_message(&mut VecBuf(&mut buf)) {
                Ok(kind) => {
                    o.partial = std::mem::take(&mut buf);
                    o.complete(kind)?;
                }
                Err(Error::Closed) => break,
                Err(e) => prop_assert!(false, "drain: {e}"),
            }
        }
        o.partial = buf;
        // Only a message cut short by the close may remain, read in part.
        if o.pending.is_some() {
            prop_assert_eq!(o.queue.len(), 1);
            let (_, want) = &o.queue[0];
            prop_assert!(want.starts_with(&o.partial));
        } else {
            prop_assert!(o.queue.is_empty(), "{} messages lost", o.queue.len());
        }
    }
    Ok(())
}

fn continue_pending(tx: &mut Producer<'_>, o: &mut Oracle, capacity: usize) -> Result<(), TestCaseError> {
    let Some((kind, bytes, mut progress)) = o.pending.take() else {
        return Ok(());
    };
    match tx.send_message(kind, &bytes, &mut progress) {
        Ok(()) => prop_assert!(progress.is_done()),
        Err(Error::WouldBlock) => {
            prop_assert!(tx.written() > 0 || capacity == 0);
            o.pending = Some((kind, bytes, progress));
        }
        Err(Error::Closed) => {
            prop_assert!(o.producer_closed || o.consumer_closed);
            // What was sent of it stays a partial message; forget the rest.
            if progress.bytes_sent() == 0 {
                o.queue.pop_back();
            } else {
                o.pending = Some((kind, bytes, progress));
            }
        }
        Err(e) => prop_assert!(false, "send_message: {e}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn ring_matches_oracle(
        capacity in prop_oneof![Just(64usize), Just(128), Just(256), Just(1024), Just(4096)],
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        run(capacity, ops)?;
    }
}

#[test]
fn many_wraps_of_a_small_ring() {
    // Deterministic long run: 100k frames of every size through 256 bytes.
    let mem = HeapMem::new(Ring::size_for(256).unwrap());
    let ring = Ring::init(mem.region(), 256, 1).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let max = ring.max_payload();
    let mut expected = VecDeque::new();
    for i in 0..100_000usize {
        let len = i % (max + 1);
        let payload: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
        while tx.send(&payload) == Err(Error::WouldBlock) {
            let f = rx.read().unwrap();
            assert_eq!(f.payload(), expected.pop_front().unwrap());
            f.release();
        }
        expected.push_back(payload);
    }
    while let Some(want) = expected.pop_front() {
        let f = rx.read().unwrap();
        assert_eq!(f.payload(), want);
        f.release();
    }
    assert_eq!(rx.read().unwrap_err(), Error::WouldBlock);
    assert!(tx.written() > 100 * 256, "wrapped many times");
}
