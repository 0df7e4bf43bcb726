//! Arrow record batch streams over an edge: [`BatchSender`] and
//! [`BatchReceiver`].
//!
//! The wire format is the Arrow IPC stream format (arrow-ipc's
//! `StreamEncoder` and `StreamDecoder`): the schema once, dictionaries when
//! they first appear or change, record batches. Each ring message carries
//! what one `encode` call produced (the schema before the first batch, the
//! batch's dictionaries, the batch), so one message always decodes to
//! exactly one batch. End of stream and errors are the ring's own `End`
//! and `Error` frames, not IPC markers.
//!
//! Copies: arrow-ipc's encoder hands out the batch's own buffers (no copy
//! for uncompressed data), which are written straight into the ring's
//! reserved frame: one copy. A batch larger than a frame is first joined
//! (a second copy) and sent as fragments. The receiver copies each message
//! out into an aligned buffer (see `Inbox`), which the decoded arrays then
//! share.

use std::panic::{catch_unwind, AssertUnwindSafe};

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamEncoder;
use arrow_schema::SchemaRef;
use weft_core::MessageKind;

use crate::endpoint::{Inbox, Outbox};
use crate::error::RuntimeError;

/// Sends record batches of one schema through an [`Outbox`].
pub struct BatchSender {
    out: Outbox,
    encoder: StreamEncoder,
    /// Reused to join a message too large for one frame.
    joined: Vec<u8>,
}

impl std::fmt::Debug for BatchSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSender")
            .field("out", &self.out)
            .finish_non_exhaustive()
    }
}

impl BatchSender {
    /// A sender of batches of `schema` through `out`.
    pub fn new(out: Outbox, schema: &SchemaRef) -> Result<BatchSender, RuntimeError> {
        Ok(BatchSender {
            out,
            encoder: StreamEncoder::try_new(schema)?,
            joined: Vec::new(),
        })
    }

    /// Sends one batch (zero-row batches included).
    pub async fn send(&mut self, batch: &RecordBatch) -> Result<(), RuntimeError> {
        let buffers = self.encoder.encode(batch)?;
        let len: usize = buffers.iter().map(Buffer::len).sum();
        if len <= self.out.max_frame() {
            self.out
                .send_with(len, |frame| {
                    let mut at = 0;
                    for buffer in &buffers {
                        frame[at..at + buffer.len()].copy_from_slice(buffer);
                        at += buffer.len();
                    }
                    at
                })
                .await?;
        } else {
            self.joined.clear();
            for buffer in &buffers {
                self.joined.extend_from_slice(buffer);
            }
            self.out.send(MessageKind::Data, &self.joined).await?;
        }
        self.out.count_batch(batch.num_rows());
        Ok(())
    }

    /// Ends the stream cleanly.
    pub async fn finish(self) -> Result<(), RuntimeError> {
        self.out.finish().await
    }

    /// Ends the stream with an error its receiver will report.
    pub async fn fail(self, message: &str) -> Result<(), RuntimeError> {
        self.out.fail(message).await
    }
}

/// Receives the record batches a [`BatchSender`] sent.
pub struct BatchReceiver {
    inbox: Inbox,
    decoder: StreamDecoder,
}

impl std::fmt::Debug for BatchReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchReceiver")
            .field("inbox", &self.inbox)
            .finish_non_exhaustive()
    }
}

impl BatchReceiver {
    /// A receiver of the batches arriving in `inbox`.
    pub fn new(inbox: Inbox) -> BatchReceiver {
        BatchReceiver {
            inbox,
            decoder: StreamDecoder::new(),
        }
    }

    /// The next batch, or `None` at the end of the stream. A message that
    /// does not decode to exactly one batch is an error.
    pub async fn next(&mut self) -> Result<Option<RecordBatch>, RuntimeError> {
        let Some(mut message) = self.inbox.recv().await? else {
            return Ok(None);
        };
        // The bytes come from another process: arrow-ipc validates what it
        // reads and returns errors, and should it panic on some input we
        // have not thought of, that is caught here and becomes an error too
        // (the decoder is not used again after an error: the stream is over).
        let decoded = catch_unwind(AssertUnwindSafe(|| self.decoder.decode(&mut message)))
            .map_err(|_| RuntimeError::Arrow("the IPC decoder panicked on a corrupt message".into()))?;
        let batch = decoded?;
        match batch {
            Some(batch) if message.is_empty() => {
                self.inbox.count_batch(batch.num_rows());
                Ok(Some(batch))
            }
            Some(_) => Err(RuntimeError::Arrow(format!(
                "{} bytes left over after a batch from participant {}",
                message.len(),
                self.inbox.edge().sender
            ))),
            None => Err(RuntimeError::Arrow(format!(
                "a message from participant {} held no complete batch",
                self.inbox.edge().sender
            ))),
        }
    }
}
