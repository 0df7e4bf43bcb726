//! The consumer side: zero-copy frames, message reassembly, close.

use super::{Armed, End, Ring};
use crate::error::{Corruption, Error};
use crate::frame::{frame_size, FrameHeader, MessageKind, StoredKind, FRAME_ALIGN, FRAME_HEADER_LEN};
use crate::sync::{Access, Ordering};

/// The reading end of a [`Ring`]; at most one exists per ring.
///
/// Dropping it closes the ring; the producer then gets [`Error::Closed`]
/// and can stop early (a `LIMIT` that has its rows).
pub struct Consumer<'a> {
    ring: Ring<'a>,
    /// Our position: every byte before it has been read and released
    /// (padding counts). Equal to `read_pos` in shared memory between calls.
    read: u64,
    /// The producer's `write_pos` when we last loaded it; `read <=
    /// write_seen <= write_pos` always.
    write_seen: u64,
    /// Our side: closed, waiting flag armed.
    end: End,
    /// Kind of the fragmented message whose fragments we are part-way
    /// through (set and cleared by `Frame::release`), if any: its next
    /// frame must be of the same kind.
    assembling: Option<MessageKind>,
}

impl core::fmt::Debug for Consumer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Consumer")
            .field("read", &self.read)
            .field("write_seen", &self.write_seen)
            .field("end", &self.end)
            .field("assembling", &self.assembling)
            .finish()
    }
}

/// Where [`Consumer::read_message`] puts a message's bytes.
///
/// weft-core allocates nothing, so the caller provides the storage:
/// [`SliceBuf`] over a fixed buffer here, a growable buffer in std code.
pub trait MessageBuf {
    /// Appends `bytes`, or returns [`Error::TooLarge`] (holding nothing new)
    /// if they do not fit. A bound here is what keeps a corrupt or hostile
    /// peer from making the reader buffer without limit.
    fn append(&mut self, bytes: &[u8]) -> Result<(), Error>;
}

/// A [`MessageBuf`] over a caller's fixed slice.
///
/// ```
/// use weft_core::{MessageBuf, SliceBuf};
/// let mut storage = [0u8; 4];
/// let mut buf = SliceBuf::new(&mut storage);
/// buf.append(b"ab").unwrap();
/// assert!(buf.append(b"cde").is_err());
/// assert_eq!(buf.filled(), b"ab");
/// ```
#[derive(Debug)]
pub struct SliceBuf<'b> {
    buf: &'b mut [u8],
    /// Bytes of `buf` filled; `len <= buf.len()`.
    len: usize,
}

impl<'b> SliceBuf<'b> {
    /// An empty buffer over `buf`.
    pub fn new(buf: &'b mut [u8]) -> SliceBuf<'b> {
        SliceBuf { buf, len: 0 }
    }

    /// The bytes appended so far.
    pub fn filled(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Forgets the bytes appended, keeping the storage.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl MessageBuf for SliceBuf<'_> {
    fn append(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let end = self.len.checked_add(bytes.len()).ok_or(Error::TooLarge)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(Error::TooLarge)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

impl<'a> Consumer<'a> {
    pub(super) fn new(ring: Ring<'a>, read: u64, write: u64) -> Consumer<'a> {
        Consumer {
            ring,
            read,
            write_seen: write,
            end: End::default(),
            assembling: None,
        }
    }

    /// The ring this consumer reads.
    pub fn ring(&self) -> &Ring<'a> {
        &self.ring
    }

    /// Bytes released so far, frame headers and padding included: with
    /// [`Producer::written`](crate::Producer::written), the bytes in flight.
    pub fn consumed(&self) -> u64 {
        self.read
    }

    /// Borrows the next frame in place. It stays in the ring until
    /// [`Frame::release`]; dropping the frame without releasing it leaves it
    /// to be read again.
    ///
    /// Returns [`Error::WouldBlock`] if no frame is published yet,
    /// [`Error::Closed`] once the producer closed and every frame it
    /// committed has been read (or once this side closed), and
    /// [`Error::Corrupt`] if shared memory breaks the protocol.
    ///
    /// ```
    /// # let mut mem = weft_core::doc_support::Mem::<{ 512 + 1024 }>::new();
    /// # let ring = mem.ring();
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// tx.send(b"one")?;
    /// let frame = rx.read()?;
    /// assert_eq!(frame.payload(), b"one");
    /// frame.release();
    /// assert_eq!(rx.read().unwrap_err(), weft_core::Error::WouldBlock);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn read(&mut self) -> Result<Frame<'_, 'a>, Error> {
        self.end.disarm(&self.ring.header.control.consumer_waiting);
        if self.end.closed {
            return Err(Error::Closed);
        }
        loop {
            if self.read == self.write_seen {
                self.refresh()?;
            }
            let index = self.ring.index(self.read);
            let to_end = self.ring.capacity - index;
            // Bytes published and not yet read: a positive multiple of 8.
            let available = self.write_seen - self.read;
            let header = match self.read_header(index) {
                Ok(header) => header,
                Err(corruption) => return Err(Error::Corrupt(corruption)),
            };
            match header.kind {
                StoredKind::Padding => {
                    if header.len as usize != to_end - FRAME_HEADER_LEN || to_end as u64 > available {
                        return Err(Corruption::Padding.into());
                    }
                    // Published at once, so that `read_pos` equals our
                    // position whenever we are between calls.
                    self.read += to_end as u64;
                    self.ring.header.consumer.read_pos.store(self.read, Ordering::Release);
                }
                StoredKind::Message(kind) => {
                    if self.assembling.is_some_and(|k| k != kind) {
                        return Err(Corruption::Fragment.into());
                    }
                    let len = header.len as usize;
                    if len > self.ring.max_payload() {
                        return Err(Corruption::FrameLength.into());
                    }
                    let size = frame_size(len);
                    if size > to_end || size as u64 > available {
                        return Err(Corruption::FrameLength.into());
                    }
                    let payload_at = index + FRAME_HEADER_LEN;
                    let access = self.ring.shadow.read(index, size);
                    return Ok(Frame {
                        consumer: self,
                        payload_at,
                        len,
                        size,
                        kind,
                        more: header.more,
                        _access: access,
                    });
                }
            }
        }
    }

    /// Reads one whole message into `buf`, reassembling fragments, and
    /// returns its kind. Each frame is released as soon as it is copied.
    ///
    /// Resumable: on [`Error::WouldBlock`] part of a fragmented message may
    /// be in `buf` already. Call again with the same `buf` to continue.
    /// [`Error::TooLarge`] means `buf` cannot hold the message (the frame
    /// that did not fit stays in the ring).
    pub fn read_message(&mut self, buf: &mut dyn MessageBuf) -> Result<MessageKind, Error> {
        loop {
            let frame = self.read()?;
            let (kind, more) = (frame.kind(), frame.more);
            buf.append(frame.payload())?;
            frame.release();
            if !more {
                return Ok(kind);
            }
        }
    }

    /// After releasing, whether the producer waits to be woken; `true`
    /// means notify it. See [`Producer::peer_waiting`](crate::Producer::peer_waiting).
    pub fn peer_waiting(&mut self) -> bool {
        Ring::check_flag(&self.ring.header.control.producer_waiting)
    }

    /// Prepares to sleep until a frame arrives: sets our waiting flag, then
    /// re-checks. [`Armed::Retry`] means a frame (or the close) is there
    /// now; [`Armed::Sleep`] means the producer will see the flag and notify
    /// us when it next publishes or closes.
    pub fn arm_wakeup(&mut self) -> Result<Armed, Error> {
        if self.read != self.write_seen {
            return Ok(Armed::Retry);
        }
        let own_waiting = &self.ring.header.control.consumer_waiting;
        self.end.arm(own_waiting);
        let moved = match self.refresh() {
            Err(Error::WouldBlock) => false,
            Ok(()) | Err(Error::Closed) => true,
            Err(e) => return Err(e),
        };
        Ok(self.end.settle(own_waiting, moved))
    }

    /// Closes the ring from this side: the producer's next operations see
    /// [`Error::Closed`]. Returns `true` if the producer must be notified.
    /// Closing twice does nothing and returns `false`.
    pub fn close(&mut self) -> bool {
        let ctl = &self.ring.header.control;
        self.end.close(&ctl.consumer_state, &ctl.producer_waiting)
    }

    /// Loads the producer's position; `Ok` if there is something to read,
    /// else `WouldBlock` or, once the producer closed, `Closed`.
    fn refresh(&mut self) -> Result<(), Error> {
        let header = self.ring.header;
        self.write_seen = self.load_write()?;
        if self.write_seen != self.read {
            return Ok(());
        }
        if !Ring::is_closed(header.control.producer_state.load(Ordering::Acquire))? {
            return Err(Error::WouldBlock);
        }
        // The producer stores its last position before its close (both
        // Release), so having seen the close we see that position now.
        self.write_seen = self.load_write()?;
        if self.write_seen == self.read {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Loads `write_pos` (Acquire: the producer's frame writes happen-before
    /// our reads of them) and checks it against what we know.
    fn load_write(&self) -> Result<u64, Error> {
        let write = self.ring.header.producer.write_pos.load(Ordering::Acquire);
        let ok = write >= self.write_seen
            && write - self.read <= self.ring.capacity as u64
            && write.is_multiple_of(FRAME_ALIGN as u64);
        if ok {
            Ok(write)
        } else {
            Err(Corruption::Position.into())
        }
    }

    /// Copies out and decodes the frame header at `index`; the copy is
    /// validated, never the shared bytes, which a faulty peer could change
    /// under us.
    ///
    /// One 8-byte load, decoded in registers: a header copied through a byte
    /// array is spilled and reloaded at another width, which stalls the
    /// consumer on store forwarding.
    #[inline]
    fn read_header(&self, index: usize) -> Result<FrameHeader, Corruption> {
        let _access = self.ring.shadow.read(index, FRAME_HEADER_LEN);
        // SAFETY: index is on the frame grid inside the data area, and the
        // 8 bytes are published (read < write_seen), so the producer no
        // longer writes them. Unaligned read: no alignment is assumed of the
        // caller's memory beyond what attach checked.
        let word = unsafe { core::ptr::read_unaligned(self.ring.data.as_ptr().add(index).cast::<u64>()) };
        FrameHeader::decode(u64::from_le(word))
    }
}

impl Drop for Consumer<'_> {
    fn drop(&mut self) {
        // As for the producer: explicit close() tells the caller whom to wake.
        self.close();
    }
}

/// A frame borrowed in place from the ring by [`Consumer::read`].
pub struct Frame<'c, 'a> {
    consumer: &'c mut Consumer<'a>,
    /// Index of the payload in the data area.
    payload_at: usize,
    len: usize,
    /// Bytes the frame occupies (header and padded payload).
    size: usize,
    kind: MessageKind,
    more: bool,
    /// Under loom, keeps the frame's bytes marked as being read.
    _access: Access,
}

impl Frame<'_, '_> {
    /// What the frame carries.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// Whether this is a fragment that more fragments of the same message
    /// follow. [`Consumer::read_message`] handles these for you.
    pub fn is_partial(&self) -> bool {
        self.more
    }

    /// The payload, in place in shared memory.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        // SAFETY: payload_at + len lies inside the data area (checked in
        // read), the bytes are published, and the producer will not write
        // them again before we release them.
        unsafe { core::slice::from_raw_parts(self.consumer.ring.data.as_ptr().add(self.payload_at), self.len) }
    }

    /// Consumes the frame, giving its space back to the producer.
    #[inline]
    pub fn release(self) {
        let Frame {
            consumer,
            size,
            kind,
            more,
            _access,
            ..
        } = self;
        // Under loom, end the tracked read before the producer may rewrite.
        _access.end();
        consumer.assembling = more.then_some(kind);
        consumer.read += size as u64;
        // Release: our reads of the frame happen-before the producer's
        // reuse of its bytes after it Acquire-loads this position.
        consumer
            .ring
            .header
            .consumer
            .read_pos
            .store(consumer.read, Ordering::Release);
    }
}

impl core::fmt::Debug for Frame<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Frame")
            .field("kind", &self.kind)
            .field("len", &self.len)
            .field("more", &self.more)
            .finish()
    }
}
