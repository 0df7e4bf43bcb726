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
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::ByteViewType;
use arrow_array::{ArrayRef, GenericByteViewArray, RecordBatch, RecordBatchOptions};
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamEncoder;
use arrow_schema::{DataType, SchemaRef};
use weft_core::MessageKind;

use crate::transport::endpoint::{Inbox, Outbox};
use crate::transport::error::RuntimeError;

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
    ///
    /// View columns (`Utf8View`, `BinaryView`) that reference much less of
    /// their data buffers than they hold are compacted first; see
    /// [`compact_views`].
    pub async fn send(&mut self, batch: &RecordBatch) -> Result<(), RuntimeError> {
        let compacted = compact_views(batch)?;
        let batch = compacted.as_ref().unwrap_or(batch);
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

/// Data buffers a view column may hold beyond what its views reference
/// before it is compacted for sending: a little slack is cheaper to send
/// than to copy away.
const VIEW_SLACK: usize = 32 << 10;

/// `batch` with its top-level view columns compacted (`gc`) where their
/// data buffers are more than twice what their views reference, or `None`
/// if none needs it.
///
/// Arrow IPC writes a view column's data buffers whole, and operators that
/// select rows (take, filter, a join's output, a partitioner's pieces)
/// keep every buffer of their input: each 8192-row batch of a joined
/// `c_name` column, for instance, references all of the build side's
/// strings. Sent as they are, such batches cost megabytes each to encode
/// and copy, and each arrives with its own copy of all those strings
/// (TPC-H Q18 would move several times the bytes it needs, and its next
/// join build a table of all those copies). In one process the buffers
/// are shared, so only the exchange has to care.
fn compact_views(batch: &RecordBatch) -> Result<Option<RecordBatch>, RuntimeError> {
    let mut columns: Option<Vec<ArrayRef>> = None;
    for (i, column) in batch.columns().iter().enumerate() {
        let compacted = match column.data_type() {
            DataType::Utf8View => compact_view(column.as_string_view()),
            DataType::BinaryView => compact_view(column.as_binary_view()),
            _ => None,
        };
        if let Some(compacted) = compacted {
            columns.get_or_insert_with(|| batch.columns().to_vec())[i] = compacted;
        }
    }
    let Some(columns) = columns else {
        return Ok(None);
    };
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(Some(RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &options,
    )?))
}

/// `array` compacted, if it is wasteful (see [`compact_views`]).
fn compact_view<T: ByteViewType + ?Sized>(array: &GenericByteViewArray<T>) -> Option<ArrayRef> {
    let held: usize = array.data_buffers().iter().map(Buffer::len).sum();
    let used = array.total_buffer_bytes_used();
    (held > 2 * used + VIEW_SLACK).then(|| Arc::new(array.gc()) as ArrayRef)
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
        let mut batch = decode(&mut self.decoder, &mut message)?;
        if batch.is_none() && message.is_empty() {
            // arrow-ipc's StreamDecoder reads a message body only while it
            // has input left, so a record batch whose body is empty (no
            // rows of fixed-width columns, or rows of no columns) ends our
            // message still pending. Any further input completes it
            // without being read; input that is read instead means the
            // message really was incomplete.
            let mut probe = Buffer::from(EMPTY_BODY_PROBE);
            batch = decode(&mut self.decoder, &mut probe)?.filter(|_| probe.len() == EMPTY_BODY_PROBE.len());
        }
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

/// What [`BatchReceiver::next`] feeds the decoder to complete a batch
/// with an empty body; a batch that needs it never reads it.
const EMPTY_BODY_PROBE: &[u8] = &[0; 8];

/// The next batch `decoder` decodes from `message`. The bytes come from
/// another process: arrow-ipc validates what it reads and returns errors,
/// and should it panic on some input we have not thought of, that is
/// caught here and becomes an error too (the decoder is not used again
/// after an error: the stream is over).
fn decode(decoder: &mut StreamDecoder, message: &mut Buffer) -> Result<Option<RecordBatch>, RuntimeError> {
    catch_unwind(AssertUnwindSafe(|| decoder.decode(message)))
        .map_err(|_| RuntimeError::Arrow("the IPC decoder panicked on a corrupt message".into()))?
        .map_err(RuntimeError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::StringViewArray;
    use arrow_schema::{Field, Schema};

    fn batch_of(column: StringViewArray) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8View, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(column)]).unwrap()
    }

    /// A few rows taken from a large view column keep all its buffers;
    /// compacted, they keep only their own strings, and the same values.
    #[test]
    fn views_selected_from_a_large_column_are_compacted() {
        let long = |i: usize| format!("a string longer than twelve bytes, number {i}");
        let big = StringViewArray::from_iter_values((0..10_000).map(long));
        let few = batch_of(big.slice(100, 10));
        let compacted = compact_views(&few).unwrap().expect("wasteful column compacted");
        let column = compacted.column(0).as_string_view();
        let held: usize = column.data_buffers().iter().map(Buffer::len).sum();
        assert!(held < VIEW_SLACK, "{held} bytes held");
        assert_eq!(column, few.column(0).as_string_view());
        assert_eq!(compacted.num_rows(), 10);
    }

    /// A column that uses most of its buffers is sent as it is.
    #[test]
    fn compact_views_are_left_alone() {
        let column = StringViewArray::from_iter_values((0..1000).map(|i| format!("another long string, {i}")));
        assert!(compact_views(&batch_of(column)).unwrap().is_none());
        let inline = StringViewArray::from_iter_values(["short"; 100]);
        assert!(compact_views(&batch_of(inline.slice(0, 1))).unwrap().is_none());
    }
}
