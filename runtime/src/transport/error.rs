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
    /// The query failed in this participant with an error of the
    /// embedder's, which keeps its code across processes.
    Coded(CodedError),
}

/// An embedder's error with a code of its own (pgext: the SQLSTATE), which
/// travels to every participant as it is: a participant that fails with
/// it records its code and message as the mesh's first error, and the
/// others read them back in [`RuntimeError::Aborted`], not parsed out of
/// text. Raise it from inside a plan as
/// `DataFusionError::External(Box::new(coded))`.
///
/// Codes below [`CodedError::FIRST_CODE`] are the runtime's own (see
/// [`crate::FAILURE_CODE`]); an embedder's codes start there.
///
/// ```
/// use weft_runtime::{CodedError, RuntimeError};
/// use datafusion::error::DataFusionError;
///
/// let coded = CodedError::new(CodedError::FIRST_CODE + 1, "bigint out of range");
/// let failure = RuntimeError::from(DataFusionError::External(Box::new(coded.clone())));
/// assert_eq!(failure, RuntimeError::Coded(coded));
/// assert_eq!(failure.code(), Some(CodedError::FIRST_CODE + 1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodedError {
    /// The embedder's code, at least [`CodedError::FIRST_CODE`].
    pub code: u32,
    /// The message, as the embedder would show it.
    pub message: String,
}

impl CodedError {
    /// The first code the runtime leaves to embedders.
    pub const FIRST_CODE: u32 = 16;

    /// An error with `code` (at least [`CodedError::FIRST_CODE`]).
    pub fn new(code: u32, message: impl Into<String>) -> CodedError {
        debug_assert!(code >= CodedError::FIRST_CODE, "code {code} is the runtime's");
        CodedError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for CodedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CodedError {}

impl RuntimeError {
    /// The code this failure carries: the first error's as recorded, or an
    /// embedder's [`CodedError`]'s.
    pub fn code(&self) -> Option<u32> {
        match self {
            RuntimeError::Aborted { code, .. } => Some(*code),
            RuntimeError::Coded(coded) => Some(coded.code),
            _ => None,
        }
    }

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
            RuntimeError::Coded(e) => f.write_str(&e.message),
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
/// the operators above it) give it back, so that an abort stays an abort,
/// and those that carry a [`CodedError`] keep its code; any other is a
/// query error with DataFusion's message.
impl From<datafusion::error::DataFusionError> for RuntimeError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError;
        match e.find_root() {
            DataFusionError::External(inner) => {
                if let Some(runtime) = inner.downcast_ref::<RuntimeError>() {
                    runtime.clone()
                } else if let Some(coded) = inner.downcast_ref::<CodedError>() {
                    RuntimeError::Coded(coded.clone())
                } else {
                    RuntimeError::Query(e.to_string())
                }
            }
            _ => RuntimeError::Query(e.to_string()),
        }
    }
}
