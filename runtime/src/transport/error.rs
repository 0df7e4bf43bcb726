//! [`RuntimeError`]: why a participant's exchange work stopped.

use std::fmt;

use weft_core::{FirstError, LayoutError};

/// Why an endpoint operation, or a participant's whole run, failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeError {
    /// The query was aborted; this is the first error any participant
    /// recorded in the mesh.
    Aborted {
        /// Who failed first.
        participant: u32,
        /// Its error code.
        code: u32,
        /// Its message (cut to the mesh's slot).
        message: String,
    },
    /// A sender sent an error frame instead of finishing its stream.
    Remote {
        /// The sender.
        participant: u32,
        /// Its message.
        message: String,
    },
    /// A sender's ring closed without an end-of-stream frame: the sender
    /// went away mid-stream.
    SenderVanished {
        /// The exchange.
        exchange: u32,
        /// The sender that vanished.
        participant: u32,
    },
    /// The receiver closed its end (it needs no more rows, as under a
    /// `LIMIT`): stop producing. Not a failure of the query.
    ReceiverClosed,
    /// Shared memory broke the ring protocol, or a message was too large.
    Transport(weft_core::Error),
    /// The mesh could not be attached or indexed.
    Layout(LayoutError),
    /// Arrow could not encode or decode a message.
    Arrow(String),
    /// The runtime itself could not be built.
    Runtime(String),
    /// The query failed in this participant (a DataFusion error: bad data,
    /// a failing source, a resource limit).
    Query(String),
}

impl RuntimeError {
    /// The mesh's first error as a `RuntimeError`.
    pub fn aborted(first: &FirstError) -> RuntimeError {
        RuntimeError::Aborted {
            participant: first.participant,
            code: first.code,
            message: String::from_utf8_lossy(first.message()).into_owned(),
        }
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Aborted {
                participant, message, ..
            } => write!(f, "query aborted by participant {participant}: {message}"),
            RuntimeError::Remote { participant, message } => write!(f, "participant {participant} failed: {message}"),
            RuntimeError::SenderVanished { exchange, participant } => write!(
                f,
                "participant {participant} stopped sending on exchange {exchange} without ending its stream"
            ),
            RuntimeError::ReceiverClosed => f.write_str("the receiver closed the exchange"),
            RuntimeError::Transport(e) => write!(f, "exchange transport: {e}"),
            RuntimeError::Layout(e) => write!(f, "exchange mesh: {e}"),
            RuntimeError::Arrow(e) => write!(f, "exchange encoding: {e}"),
            RuntimeError::Runtime(e) => write!(f, "participant runtime: {e}"),
            RuntimeError::Query(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for RuntimeError {}

impl From<LayoutError> for RuntimeError {
    fn from(e: LayoutError) -> Self {
        RuntimeError::Layout(e)
    }
}

impl From<weft_core::MeshError> for RuntimeError {
    fn from(e: weft_core::MeshError) -> Self {
        match e {
            weft_core::MeshError::Layout(e) => RuntimeError::Layout(e),
            weft_core::MeshError::Corrupt(c) => RuntimeError::Transport(weft_core::Error::Corrupt(c)),
        }
    }
}

impl From<arrow_schema::ArrowError> for RuntimeError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        RuntimeError::Arrow(e.to_string())
    }
}

/// DataFusion errors that carry a `RuntimeError` (an exchange's, wrapped by
/// the operators above it) give it back, so that an abort stays an abort;
/// any other is a query error with DataFusion's message.
impl From<datafusion::error::DataFusionError> for RuntimeError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError;
        match e.find_root() {
            DataFusionError::External(inner) => match inner.downcast_ref::<RuntimeError>() {
                Some(runtime) => runtime.clone(),
                None => RuntimeError::Query(e.to_string()),
            },
            _ => RuntimeError::Query(e.to_string()),
        }
    }
}
