//! Async endpoints over one ring: [`Outbox`] writes messages to a peer,
//! [`Inbox`] reads them. Bytes only; Arrow streams sit on top (`stream.rs`).

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use arrow_buffer::{Buffer, MutableBuffer};
use weft_core::{Armed, Consumer, Error as RingError, MessageBuf, MessageKind, Producer, SendProgress};

use crate::transport::error::RuntimeError;
use crate::transport::metrics::{Edge, EdgeStats};
use crate::transport::participant::{lock, Participant};

/// What [`poll_ring`] needs of a ring end: the handshake, and who is on the
/// other side.
trait RingEnd {
    fn arm_wakeup(&mut self) -> Result<Armed, RingError>;
    fn peer_waiting(&mut self) -> bool;
}

impl RingEnd for Producer<'static> {
    fn arm_wakeup(&mut self) -> Result<Armed, RingError> {
        Producer::arm_wakeup(self)
    }
    fn peer_waiting(&mut self) -> bool {
        Producer::peer_waiting(self)
    }
}

impl RingEnd for Consumer<'static> {
    fn arm_wakeup(&mut self) -> Result<Armed, RingError> {
        Consumer::arm_wakeup(self)
    }
    fn peer_waiting(&mut self) -> bool {
        Consumer::peer_waiting(self)
    }
}

/// Polls a non-blocking ring operation: whatever the outcome, wakes the
/// peer if it sleeps (a blocked operation may have moved part of a
/// message); on `WouldBlock` also registers the task's waker and arms the ring's
/// wakeup, retrying if the ring changed meanwhile. The query's abort wins
/// over everything. Time spent between the first `WouldBlock` and success
/// goes to `stalled`.
fn poll_ring<E: RingEnd, T>(
    cx: &mut Context<'_>,
    node: &Participant,
    peer: u32,
    end: &mut E,
    stalled_since: &mut Option<Instant>,
    stats: &mut EdgeStats,
    mut op: impl FnMut(&mut E) -> Result<T, RingError>,
) -> Poll<Result<T, RingError>> {
    if node.mesh().is_aborted() {
        // The caller turns this into the mesh's first error.
        return Poll::Ready(Err(RingError::Closed));
    }
    loop {
        match op(end) {
            Err(RingError::WouldBlock) => {
                stalled_since.get_or_insert_with(Instant::now);
                // A fragmented message makes progress before it blocks: the
                // producer published some fragments, or the consumer
                // released some. A peer asleep waiting for exactly that
                // must be told now, or both sides sleep until the park
                // timeout, once per large batch.
                if end.peer_waiting() {
                    node.notify(peer);
                }
                node.idle.wait_on(cx.waker());
                match end.arm_wakeup() {
                    Ok(Armed::Sleep) => return Poll::Pending,
                    Ok(Armed::Retry) => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            result => {
                if let Some(since) = stalled_since.take() {
                    stats.stalled += since.elapsed();
                }
                if end.peer_waiting() {
                    node.notify(peer);
                }
                return Poll::Ready(result);
            }
        }
    }
}

/// The sending end of one edge.
///
/// Finish with [`finish`](Outbox::finish) (end of stream) or
/// [`fail`](Outbox::fail); dropping an unfinished outbox closes the ring
/// without an end, which its receiver reports as
/// [`RuntimeError::SenderVanished`].
pub struct Outbox {
    node: Arc<Participant>,
    edge: Edge,
    tx: Producer<'static>,
    stats: EdgeStats,
    /// Messages sent since this task last yielded.
    since_yield: u32,
    finished: bool,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("edge", &self.edge)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// Opens participant `node`'s outgoing ring of `exchange` to `receiver`,
    /// once `receiver` has registered in the mesh (the barrier before data
    /// flows: it must be able to be woken).
    pub async fn open(node: &Arc<Participant>, exchange: u32, receiver: u32) -> Result<Outbox, RuntimeError> {
        let edge = Edge {
            exchange,
            sender: node.id(),
            receiver,
        };
        let tx = node.mesh().ring(exchange, edge.sender, receiver)?.producer()?;
        poll_fn(|cx| {
            node.check_abort()?;
            if node.mesh().peer_ready(receiver)? {
                return Poll::Ready(Ok::<_, RuntimeError>(()));
            }
            // The receiver notifies us when it registers (Mesh::register).
            node.idle.wait_on(cx.waker());
            Poll::Pending
        })
        .await?;
        Ok(Outbox {
            node: node.clone(),
            edge,
            tx,
            stats: EdgeStats::default(),
            since_yield: 0,
            finished: false,
        })
    }

    /// The edge this outbox writes.
    pub fn edge(&self) -> Edge {
        self.edge
    }

    /// Sends one message of any length (fragmented if longer than a frame).
    ///
    /// Every [`Config::yield_every`](crate::Config::yield_every) messages
    /// the task yields to the others of its participant. The receiver of a
    /// self-loop is another task of the same `LocalSet`, the only one that
    /// can drain the ring: a sender that kept the thread while the ring was
    /// full would deadlock the participant. Ours returns `Pending` on a full
    /// ring, so the danger is milder but real: a sender that keeps finding
    /// room runs until the ring is full before its receiver gets a turn, so
    /// the ring fills and drains in bursts instead of flowing, and with
    /// several exchanges one busy sender starves the rest.
    pub async fn send(&mut self, kind: MessageKind, message: &[u8]) -> Result<(), RuntimeError> {
        let mut progress = SendProgress::default();
        self.op(|tx| tx.send_message(kind, message, &mut progress)).await?;
        self.sent(message.len()).await;
        Ok(())
    }

    /// Sends one frame of at most `len` bytes, written in place by `fill`,
    /// which returns how many bytes it wrote. `len` must fit in one frame
    /// ([`Outbox::max_frame`]); this is the zero-copy path.
    pub async fn send_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<usize, RuntimeError> {
        let mut fill = Some(fill);
        let written = self
            .op(|tx| {
                let mut grant = tx.reserve(len)?;
                let fill = fill.take().expect("fill runs once: after it the op succeeds");
                let written = fill(&mut grant).min(len);
                grant.commit_len(written);
                Ok(written)
            })
            .await?;
        self.sent(written).await;
        Ok(written)
    }

    /// The largest message [`send_with`](Self::send_with) can take.
    pub fn max_frame(&self) -> usize {
        self.tx.ring().max_payload()
    }

    /// Ends the stream cleanly: an end-of-stream frame, then close.
    pub async fn finish(mut self) -> Result<(), RuntimeError> {
        let mut progress = SendProgress::default();
        self.op(|tx| tx.send_message(MessageKind::End, &[], &mut progress))
            .await?;
        self.finished = true;
        self.close();
        Ok(())
    }

    /// Ends the stream with an error its receiver will report.
    pub async fn fail(mut self, message: &str) -> Result<(), RuntimeError> {
        let mut progress = SendProgress::default();
        let result = self
            .op(|tx| tx.send_message(MessageKind::Error, message.as_bytes(), &mut progress))
            .await;
        self.finished = true;
        self.close();
        result
    }

    /// Accounting for a batch of rows sent as the last message.
    pub(crate) fn count_batch(&mut self, rows: usize) {
        self.stats.batches += 1;
        self.stats.rows += rows as u64;
    }

    async fn op<T>(
        &mut self,
        mut op: impl FnMut(&mut Producer<'static>) -> Result<T, RingError>,
    ) -> Result<T, RuntimeError> {
        let mut stalled_since = None;
        let Outbox {
            node, edge, tx, stats, ..
        } = self;
        let result = poll_fn(|cx| poll_ring(cx, node, edge.receiver, tx, &mut stalled_since, stats, &mut op)).await;
        result.map_err(|e| self.error(e))
    }

    fn error(&self, e: RingError) -> RuntimeError {
        if let Err(aborted) = self.node.check_abort() {
            return aborted;
        }
        match e {
            RingError::Closed => RuntimeError::ReceiverClosed,
            other => RuntimeError::Transport(other),
        }
    }

    async fn sent(&mut self, bytes: usize) {
        self.stats.messages += 1;
        self.stats.bytes += bytes as u64;
        self.since_yield += 1;
        if self.since_yield >= self.node.config.yield_every {
            self.since_yield = 0;
            tokio::task::yield_now().await;
        }
    }

    fn close(&mut self) {
        if self.tx.close() {
            self.node.notify(self.edge.receiver);
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.close();
        let mut metrics = lock(&self.node.metrics);
        metrics.sent.entry(self.edge).or_default().add(&self.stats);
    }
}

/// A message's bytes as received: an owned, 64-byte aligned buffer, so
/// that Arrow can use it in place and the ring space is already free.
///
/// Copying out (rather than decoding in place in the ring) is deliberate:
/// operators that hold batches, like a hash join's build side or a sort,
/// would otherwise pin ring space until they finish, and the sender, unable
/// to write, would never let them finish.
struct Assembly {
    buf: MutableBuffer,
    limit: usize,
}

impl MessageBuf for Assembly {
    fn append(&mut self, bytes: &[u8]) -> Result<(), RingError> {
        if self.buf.len() + bytes.len() > self.limit {
            return Err(RingError::TooLarge);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

/// The receiving end of one edge.
///
/// Dropping it closes the ring: its sender's next operations fail with
/// [`RuntimeError::ReceiverClosed`], so producers stop early when a
/// consumer (say, under a `LIMIT`) needs no more.
pub struct Inbox {
    node: Arc<Participant>,
    edge: Edge,
    rx: Consumer<'static>,
    stats: EdgeStats,
    assembly: Assembly,
    ended: bool,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("edge", &self.edge)
            .finish_non_exhaustive()
    }
}

impl Inbox {
    /// Opens participant `node`'s incoming ring of `exchange` from `sender`.
    pub fn open(node: &Arc<Participant>, exchange: u32, sender: u32) -> Result<Inbox, RuntimeError> {
        let edge = Edge {
            exchange,
            sender,
            receiver: node.id(),
        };
        let rx = node.mesh().ring(exchange, sender, edge.receiver)?.consumer()?;
        Ok(Inbox {
            node: node.clone(),
            edge,
            rx,
            stats: EdgeStats::default(),
            assembly: Assembly {
                buf: MutableBuffer::new(0),
                limit: node.config.max_message,
            },
            ended: false,
        })
    }

    /// The edge this inbox reads.
    pub fn edge(&self) -> Edge {
        self.edge
    }

    /// The next data message, or `None` once the sender has ended its
    /// stream. A sender's error frame, or a sender gone without an end,
    /// is an error.
    pub async fn recv(&mut self) -> Result<Option<Buffer>, RuntimeError> {
        if self.ended {
            return Ok(None);
        }
        let mut stalled_since = None;
        let Inbox {
            node,
            edge,
            rx,
            stats,
            assembly,
            ..
        } = self;
        let result = poll_fn(|cx| {
            poll_ring(cx, node, edge.sender, rx, &mut stalled_since, stats, |rx| {
                rx.read_message(assembly)
            })
        })
        .await;
        let bytes = Buffer::from(std::mem::replace(&mut self.assembly.buf, MutableBuffer::new(0)));
        match result {
            Ok(MessageKind::Data) => {
                self.stats.messages += 1;
                self.stats.bytes += bytes.len() as u64;
                Ok(Some(bytes))
            }
            Ok(MessageKind::End) => {
                self.ended = true;
                Ok(None)
            }
            Ok(MessageKind::Error) => Err(RuntimeError::Remote {
                participant: self.edge.sender,
                message: String::from_utf8_lossy(&bytes).into_owned(),
            }),
            // A sender that stops once the query is complete (the leader
            // has its whole result) loses nothing anyone needs.
            Err(RingError::Closed) if self.node.query_complete() => {
                self.ended = true;
                Ok(None)
            }
            Err(e) => Err(self.error(e)),
        }
    }

    /// Accounting for a batch of rows decoded from the last message.
    pub(crate) fn count_batch(&mut self, rows: usize) {
        self.stats.batches += 1;
        self.stats.rows += rows as u64;
    }

    fn error(&self, e: RingError) -> RuntimeError {
        if let Err(aborted) = self.node.check_abort() {
            return aborted;
        }
        match e {
            RingError::Closed => RuntimeError::SenderVanished {
                exchange: self.edge.exchange,
                participant: self.edge.sender,
            },
            other => RuntimeError::Transport(other),
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        if self.rx.close() {
            self.node.notify(self.edge.sender);
        }
        let mut metrics = lock(&self.node.metrics);
        metrics.received.entry(self.edge).or_default().add(&self.stats);
    }
}
