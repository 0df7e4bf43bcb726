//! The producer side: zero-copy grants, sends, fragments, close.

use core::ops::{Deref, DerefMut};

use super::{side, Armed, End, Ring};
use crate::error::{Corruption, Error};
use crate::frame::{frame_size, FrameHeader, MessageKind, StoredKind, FRAME_ALIGN, FRAME_HEADER_LEN};
use crate::sync::{Access, Ordering};

/// The writing end of a [`Ring`]; at most one exists per ring.
///
/// Dropping it closes the ring without an end-of-stream frame, which the
/// consumer reports as [`Error::Closed`] with no [`MessageKind::End`] before
/// it: a failure, not a clean end. Finish a stream with
/// [`send_message`](Producer::send_message)`(MessageKind::End, ..)` first.
pub struct Producer<'a> {
    ring: Ring<'a>,
    /// Our position; every byte before it is published. Only we store
    /// `write_pos`, so this copy is the truth and is never re-read.
    write: u64,
    /// The consumer's `read_pos` when we last loaded it; `read_seen <=
    /// read_pos <= write` always.
    read_seen: u64,
    /// Our side: closed, waiting flag armed.
    end: End,
    /// We saw the consumer's side closed.
    peer_closed: bool,
}

impl core::fmt::Debug for Producer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Producer")
            .field("write", &self.write)
            .field("read_seen", &self.read_seen)
            .field("end", &self.end)
            .field("peer_closed", &self.peer_closed)
            .finish()
    }
}

/// Progress of one [`Producer::send_message`], kept by the caller between
/// calls that returned [`Error::WouldBlock`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendProgress {
    sent: usize,
    done: bool,
}

impl SendProgress {
    /// Payload bytes already in the ring.
    pub fn bytes_sent(&self) -> usize {
        self.sent
    }

    /// Whether the whole message is in the ring.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

impl<'a> Producer<'a> {
    pub(super) fn new(ring: Ring<'a>, write: u64, read: u64) -> Producer<'a> {
        Producer {
            ring,
            write,
            read_seen: read,
            end: End::default(),
            peer_closed: false,
        }
    }

    /// The ring this producer writes.
    pub fn ring(&self) -> &Ring<'a> {
        &self.ring
    }

    /// Bytes published so far, frame headers and padding included.
    pub fn written(&self) -> u64 {
        self.write
    }

    /// Reserves room for one data frame of `len` payload bytes, contiguous in
    /// the ring, for the caller to fill in place. Nothing is visible to the
    /// consumer until [`Grant::commit`]; dropping the grant aborts it.
    ///
    /// Returns [`Error::TooLarge`] if `len` exceeds
    /// [`Ring::max_payload`], [`Error::WouldBlock`] if the ring lacks room
    /// now, [`Error::Closed`] once either side closed.
    ///
    /// ```
    /// # let mut mem = weft_core::doc_support::Mem::<{ 512 + 4096 }>::new();
    /// # let ring = mem.ring();
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// let mut grant = tx.reserve(64)?;
    /// let n = {
    ///     let buf: &mut [u8] = &mut grant;
    ///     buf[..3].copy_from_slice(b"abc");
    ///     3
    /// };
    /// grant.commit_len(n); // publish only the bytes written
    /// assert_eq!(rx.read()?.payload(), b"abc");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_, 'a>, Error> {
        self.reserve_frame(len, MessageKind::Data, false)
    }

    /// Sends `payload` as one data frame: all of it or, on error, none.
    #[inline]
    pub fn send(&mut self, payload: &[u8]) -> Result<(), Error> {
        let mut grant = self.reserve(payload.len())?;
        grant.copy_from_slice(payload);
        grant.commit();
        Ok(())
    }

    /// Sends a message of any length and kind, as one frame if it fits in
    /// one and as fragments otherwise, which the consumer's
    /// [`read_message`](crate::Consumer::read_message) reassembles.
    ///
    /// Resumable: on [`Error::WouldBlock`] some fragments may already be in
    /// the ring. Call again with the same `kind`, `message` and `progress`
    /// (and no other sends in between) until it returns `Ok`.
    ///
    /// ```
    /// use weft_core::{MessageKind, SendProgress};
    /// # let mut mem = weft_core::doc_support::Mem::<{ 512 + 1024 }>::new();
    /// # let ring = mem.ring();
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// let big = [7u8; 300]; // more than one frame of a 1 KiB ring, which holds 504
    /// let mut progress = SendProgress::default();
    /// tx.send_message(MessageKind::Data, &big, &mut progress)?;
    /// assert!(progress.is_done());
    /// # let mut buf = [0u8; 512];
    /// # let mut out = weft_core::SliceBuf::new(&mut buf);
    /// # assert_eq!(rx.read_message(&mut out)?, MessageKind::Data);
    /// # assert_eq!(out.filled(), &big[..]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_message(
        &mut self,
        kind: MessageKind,
        message: &[u8],
        progress: &mut SendProgress,
    ) -> Result<(), Error> {
        let max = self.ring.max_payload();
        while !progress.done {
            let remaining = message.len().saturating_sub(progress.sent);
            let want = remaining.min(max);
            let chunk = match self.room_for(want) {
                Ok(()) => want,
                // A whole message that fits in one frame goes all at once.
                Err(Error::WouldBlock) if message.len() <= max => return Err(Error::WouldBlock),
                // A fragment may be smaller than `max`, so that the consumer
                // can free space while we fill it; but not tiny, so that a
                // nearly full ring is not sliced into many headers.
                Err(Error::WouldBlock) => {
                    let fit = self.largest_fit().min(want);
                    if fit == 0 || fit < (max / 4).min(want) {
                        return Err(Error::WouldBlock);
                    }
                    fit
                }
                Err(e) => return Err(e),
            };
            let start = progress.sent.min(message.len());
            let more = start + chunk < message.len();
            let mut grant = self.reserve_frame(chunk, kind, more)?;
            grant.copy_from_slice(&message[start..start + chunk]);
            grant.commit();
            progress.sent = start + chunk;
            progress.done = !more;
        }
        Ok(())
    }

    /// After publishing, whether the consumer waits to be woken: `true`
    /// means it armed its wakeup and has not tried again since, so the
    /// caller must notify it. A busy consumer never has its flag set, so it
    /// costs no notifications.
    ///
    /// Call it after committing and before this side stops making progress
    /// (blocks, yields, or finishes): a publish followed by neither this nor
    /// another publish-and-check can leave a consumer asleep over data.
    pub fn peer_waiting(&mut self) -> bool {
        let wake = Ring::check_flag(&self.ring.header.control.consumer_waiting);
        // The fence in check_flag ordered this load too; seeing the consumer
        // gone here saves filling the ring for nobody.
        if self.ring.header.control.consumer_state.load(Ordering::Relaxed) == side::CLOSED {
            self.peer_closed = true;
        }
        wake
    }

    /// Prepares to sleep until the consumer frees space: sets our waiting
    /// flag, then re-checks. [`Armed::Retry`] means the consumer moved (or
    /// closed) since our last look, so retry instead of sleeping;
    /// [`Armed::Sleep`] means the consumer will see the flag and notify us
    /// when it next releases or closes.
    pub fn arm_wakeup(&mut self) -> Result<Armed, Error> {
        let own_waiting = &self.ring.header.control.producer_waiting;
        self.end.arm(own_waiting);
        let before = self.read_seen;
        let moved = match self.refresh() {
            Ok(()) => self.read_seen != before,
            Err(Error::Closed) => true,
            Err(e) => return Err(e),
        };
        Ok(self.end.settle(own_waiting, moved))
    }

    /// Closes the ring from this side. Frames already committed stay
    /// readable; the consumer then sees [`Error::Closed`]. Returns `true` if
    /// the consumer must be notified (see [`peer_waiting`](Self::peer_waiting)).
    /// Closing twice does nothing and returns `false`.
    pub fn close(&mut self) -> bool {
        let ctl = &self.ring.header.control;
        self.end.close(&ctl.producer_state, &ctl.consumer_waiting)
    }

    /// Whether the consumer is known to have closed.
    pub fn is_peer_closed(&self) -> bool {
        self.peer_closed
    }

    #[inline]
    fn reserve_frame(&mut self, len: usize, kind: MessageKind, more: bool) -> Result<Grant<'_, 'a>, Error> {
        let Placement { pad, header_at, size } = self.room_for_frame(len)?;
        let index = self.ring.index(self.write);
        let mut access = self.ring.shadow.write(header_at, size);
        if pad > 0 {
            access.join(self.ring.shadow.write(index, pad));
        }
        Ok(Grant {
            producer: self,
            pad,
            header_at,
            len,
            kind,
            more,
            _access: access,
        })
    }

    fn room_for(&mut self, len: usize) -> Result<(), Error> {
        self.room_for_frame(len).map(|_| ())
    }

    /// Where a frame of `len` payload bytes goes, if it fits now.
    #[inline]
    fn room_for_frame(&mut self, len: usize) -> Result<Placement, Error> {
        self.end.disarm(&self.ring.header.control.producer_waiting);
        if self.end.closed || self.peer_closed {
            return Err(Error::Closed);
        }
        if len > self.ring.max_payload() {
            return Err(Error::TooLarge);
        }
        let index = self.ring.index(self.write);
        let to_end = self.ring.capacity - index;
        let size = frame_size(len);
        // A frame never straddles the end: pad to the end and start over at
        // 0. `size <= capacity / 2` (max_payload) keeps `pad + size` below
        // the capacity, so this always fits once the consumer catches up.
        let (pad, header_at) = if size > to_end { (to_end, 0) } else { (0, index) };
        let need = (pad + size) as u64;
        if self.free() < need {
            self.refresh()?;
            if self.free() < need {
                return Err(Error::WouldBlock);
            }
        }
        Ok(Placement { pad, header_at, size })
    }

    /// Bytes free by our cached view of the consumer.
    fn free(&self) -> u64 {
        self.ring.capacity as u64 - (self.write - self.read_seen)
    }

    /// The largest payload one frame could carry now, by cached positions.
    fn largest_fit(&self) -> usize {
        let free = self.free() as usize;
        let to_end = self.ring.capacity - self.ring.index(self.write);
        let here = free.min(to_end);
        let after_padding = free.saturating_sub(to_end);
        let space = here.max(after_padding);
        space.saturating_sub(FRAME_HEADER_LEN).min(self.ring.max_payload())
    }

    /// Loads the consumer's position (Acquire: its reads of the bytes it
    /// released happened before our writes to them) and its state.
    fn refresh(&mut self) -> Result<(), Error> {
        let header = self.ring.header;
        let read = header.consumer.read_pos.load(Ordering::Acquire);
        if read < self.read_seen || read > self.write || !read.is_multiple_of(FRAME_ALIGN as u64) {
            return Err(Corruption::Position.into());
        }
        self.read_seen = read;
        if Ring::is_closed(header.control.consumer_state.load(Ordering::Acquire))? {
            self.peer_closed = true;
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Writes a frame header at `index` of the data area.
    #[inline]
    fn write_header(&self, index: usize, header: FrameHeader) {
        debug_assert!(index.is_multiple_of(FRAME_ALIGN) && index + FRAME_HEADER_LEN <= self.ring.capacity);
        let bytes = header.encode();
        // SAFETY: index is on the frame grid inside the data area (the
        // capacity is a multiple of 8), and the bytes lie in the span the
        // caller's grant holds: between our write position and the
        // consumer's read position plus capacity, which the consumer does
        // not read until we publish.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ring.data.as_ptr().add(index), FRAME_HEADER_LEN);
        }
    }
}

impl Drop for Producer<'_> {
    fn drop(&mut self) {
        // A consumer asleep on this ring is not notified here (we have no way
        // to); callers close explicitly and notify. Its bounded park timeout
        // still finds the close.
        self.close();
    }
}

/// Where a reserved frame goes.
struct Placement {
    /// Bytes of padding frame before it (0, or up to the end of the area).
    pad: usize,
    /// Index of the frame header.
    header_at: usize,
    /// Frame size: header plus padded payload.
    size: usize,
}

/// Room for one frame, reserved by [`Producer::reserve`]: dereferences to
/// its payload bytes. [`commit`](Grant::commit) publishes it; dropping it
/// publishes nothing.
pub struct Grant<'p, 'a> {
    producer: &'p mut Producer<'a>,
    /// Padding before the frame, written at commit.
    pad: usize,
    /// Index of the frame header; the payload follows it.
    header_at: usize,
    /// Payload bytes reserved.
    len: usize,
    kind: MessageKind,
    more: bool,
    /// Under loom, keeps the reserved bytes marked as being written.
    _access: Access,
}

impl Grant<'_, '_> {
    /// Publishes the whole reserved payload.
    #[inline]
    pub fn commit(self) {
        let len = self.len;
        self.commit_len(len)
    }

    /// Publishes the first `len` bytes of the payload (at most the reserved
    /// length; more is clamped to it). Useful when the final size is known
    /// only after writing, as when encoding into the grant.
    #[inline]
    pub fn commit_len(self, len: usize) {
        let len = len.min(self.len);
        let Grant {
            producer,
            pad,
            header_at,
            kind,
            more,
            _access,
            ..
        } = self;
        if pad > 0 {
            let index = producer.ring.index(producer.write);
            let padding = FrameHeader {
                len: (pad - FRAME_HEADER_LEN) as u32,
                kind: StoredKind::Padding,
                more: false,
            };
            producer.write_header(index, padding);
        }
        let frame = FrameHeader {
            // len <= max_payload < 2^29.
            len: len as u32,
            kind: StoredKind::Message(kind),
            more,
        };
        producer.write_header(header_at, frame);
        // Under loom, end the tracked write before the consumer may read.
        _access.end();
        producer.write += (pad + frame_size(len)) as u64;
        // Release: the frame bytes above happen-before any consumer that
        // Acquire-loads this position.
        producer
            .ring
            .header
            .producer
            .write_pos
            .store(producer.write, Ordering::Release);
    }

    /// Gives the room back unpublished; the same as dropping the grant.
    pub fn abort(self) {}

    fn payload_ptr(&self) -> *mut u8 {
        // SAFETY: header_at + FRAME_HEADER_LEN + len <= capacity (the frame
        // fits in the data area, checked at reserve).
        unsafe { self.producer.ring.data.as_ptr().add(self.header_at + FRAME_HEADER_LEN) }
    }
}

impl Deref for Grant<'_, '_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the payload span is inside the data area, initialised
        // (Region's contract), and ours alone until commit: the consumer
        // reads only below the published write position.
        unsafe { core::slice::from_raw_parts(self.payload_ptr(), self.len) }
    }
}

impl DerefMut for Grant<'_, '_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for deref; `&mut self` makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.payload_ptr(), self.len) }
    }
}

impl core::fmt::Debug for Grant<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Grant")
            .field("len", &self.len)
            .field("kind", &self.kind)
            .field("more", &self.more)
            .finish()
    }
}
