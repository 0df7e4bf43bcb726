//! weft's errors, in Postgres's terms.
//!
//! [`Error`] is what any part of the extension fails with: an error
//! Postgres itself raises for the same failure (its SQLSTATE and its
//! words), a failure of weft's own, or a value weft cannot carry exactly,
//! which hands the query back to the stock plan (the Custom Scan keeps it:
//! [`crate::hook::scan`]).
//!
//! A failure inside a participant's plan reaches the others through the
//! mesh's first-error slot. The SQLSTATE (or the hand-back) travels there
//! as the slot's code, a [`CodedError`] inside DataFusion's error, and
//! comes back out of [`RuntimeError::code`]: nothing is parsed out of a
//! message, except the words of DataFusion's own errors where Postgres
//! raises a different error for the same query ([`FOREIGN_ERRORS`], the
//! one place such text is matched).

use std::fmt;

use datafusion::error::DataFusionError;
use pgrx::PgSqlErrorCode;
use weft_runtime::{CodedError, RuntimeError};

/// The mesh code of a hand-back: the first code the runtime leaves to
/// weft. A SQLSTATE's code is its packed form, which for any error class
/// is at least 64 ([`packed`]), so the two never meet.
const HAND_BACK_CODE: u32 = CodedError::FIRST_CODE;

/// Errors DataFusion raises in its own words where Postgres raises one of
/// its own for the same query: DataFusion's text, and Postgres's SQLSTATE
/// and message.
const FOREIGN_ERRORS: &[(&str, &str, &str)] = &[(
    "Scalar subquery returned more than one row",
    "21000",
    "more than one row returned by a subquery used as an expression",
)];

/// A failure of the extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// An error Postgres raises for the same failure: its SQLSTATE (as
    /// Postgres packs it) and its message, raised as they are.
    Postgres {
        /// The SQLSTATE, packed (`MAKE_SQLSTATE`).
        sqlstate: i32,
        /// Postgres's message.
        message: String,
    },
    /// A failure of weft's own (a value it cannot read, a plan it cannot
    /// run): raised as `feature_not_supported`, with where it happened.
    Weft(String),
    /// A value weft cannot carry exactly, met before any row was
    /// returned: the stock plan answers instead. The reason is shown by
    /// EXPLAIN ANALYZE.
    HandBack(String),
}

impl Error {
    /// Postgres's error `sqlstate` (five characters) with its `message`.
    pub fn postgres(sqlstate: &str, message: impl Into<String>) -> Error {
        Error::Postgres {
            sqlstate: packed(sqlstate.as_bytes()),
            message: message.into(),
        }
    }

    /// The same failure, its message prefixed with where it happened
    /// (Postgres's own errors keep their words).
    pub fn context(self, place: impl fmt::Display) -> Error {
        match self {
            Error::Weft(message) => Error::Weft(format!("{place}: {message}")),
            Error::HandBack(reason) => Error::HandBack(format!("{place}: {reason}")),
            postgres => postgres,
        }
    }

    /// The failure as DataFusion's error inside a plan, its code kept for
    /// the other participants.
    pub fn into_datafusion(self) -> DataFusionError {
        match self {
            Error::Weft(message) => DataFusionError::Execution(message),
            Error::Postgres { sqlstate, message } => {
                DataFusionError::External(Box::new(CodedError::new(code_of(sqlstate), message)))
            }
            Error::HandBack(reason) => DataFusionError::External(Box::new(CodedError::new(HAND_BACK_CODE, reason))),
        }
    }

    /// What a participant's failure means: the code it carries (a
    /// SQLSTATE, or a hand-back), else Postgres's error for DataFusion's
    /// words, else weft's own. An abort's message is the one its
    /// participant recorded.
    pub fn from_runtime(failure: &RuntimeError) -> Error {
        let message = match failure {
            RuntimeError::Aborted { message, .. } => message.clone(),
            other => other.to_string(),
        };
        match failure.code() {
            Some(code) if code >= HAND_BACK_CODE => Error::from_code(code, message),
            _ => Error::foreign(&message),
        }
    }

    /// A DataFusion error (of planning, or of a participant's run) in
    /// Postgres's terms, as [`Error::from_runtime`].
    pub fn from_datafusion(failure: &DataFusionError) -> Error {
        if let DataFusionError::External(inner) = failure.find_root() {
            if let Some(coded) = inner.downcast_ref::<CodedError>() {
                return Error::from_code(coded.code, coded.message.clone());
            }
            if let Some(runtime) = inner.downcast_ref::<RuntimeError>() {
                return Error::from_runtime(runtime);
            }
        }
        Error::foreign(&failure.to_string())
    }

    /// The failure an embedder's code (at least [`HAND_BACK_CODE`]) stands
    /// for.
    fn from_code(code: u32, message: String) -> Error {
        if code == HAND_BACK_CODE {
            Error::HandBack(message)
        } else {
            Error::Postgres {
                sqlstate: code as i32,
                message,
            }
        }
    }

    /// Text of DataFusion's or weft's: Postgres's error where Postgres
    /// raises one of its own for the same query, else weft's.
    fn foreign(message: &str) -> Error {
        match FOREIGN_ERRORS.iter().find(|(theirs, _, _)| message.contains(theirs)) {
            Some(&(_, sqlstate, own)) => Error::postgres(sqlstate, own),
            None => Error::Weft(message.to_string()),
        }
    }

    /// Raises the failure as this backend's ERROR; `what` names weft's
    /// part that met a failure of its own ("weft", "weft.query").
    pub fn raise(self, what: &str) -> ! {
        let (code, message) = match self {
            Error::Postgres { sqlstate, message } => (PgSqlErrorCode::from(sqlstate), message),
            Error::Weft(message) | Error::HandBack(message) => (
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("{what}: {message}"),
            ),
        };
        pgrx::ereport!(ERROR, code, message);
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Postgres { message, .. } | Error::Weft(message) | Error::HandBack(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error::Weft(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::Weft(message.to_string())
    }
}

/// Raises `message` as weft's ERROR from `what`, or as Postgres's error
/// where Postgres raises one of its own for the same failure.
pub fn report(what: &str, message: &str) -> ! {
    Error::foreign(message).raise(what)
}

/// The mesh code of a packed SQLSTATE: the packed value itself, which is
/// past the hand-back's for every error class.
fn code_of(sqlstate: i32) -> u32 {
    let internal = PgSqlErrorCode::ERRCODE_INTERNAL_ERROR as i32;
    let code = u32::try_from(sqlstate).unwrap_or(internal as u32);
    if code > HAND_BACK_CODE {
        code
    } else {
        internal as u32
    }
}

/// A five-character SQLSTATE as Postgres packs it (`MAKE_SQLSTATE`: six
/// bits a character, from '0'). The class's second character lands at
/// bit 6, so every class but the success class `00` packs to 64 or more.
fn packed(sqlstate: &[u8]) -> i32 {
    sqlstate.iter().enumerate().fold(0i32, |acc, (i, &b)| {
        acc + ((i32::from(b.wrapping_sub(b'0')) & 0x3F) << (6 * i))
    })
}
