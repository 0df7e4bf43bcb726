//! Queries handed back to Postgres while they run: weft found a value it
//! cannot carry exactly (an infinite date or timestamp, a numeric NaN in
//! a `numeric(p, s)` column, text that is not UTF-8) before it returned any
//! row, so the stock plan, which the Weft scan keeps, answers instead.
//!
//! Such a failure travels between processes as text (a participant's
//! error reaches the leader through the mesh's first-error slot), so it is
//! marked in its message: [`mark`] puts the mark on, [`reason`] finds it.
//! A participant that meets one records it as the query's abort and ends
//! quietly; the leader sees the abort and runs the stock plan.

/// Ends the message of a failure the stock plan can answer instead.
const MARK: &str = " [weft: hand back to Postgres]";

/// `message`, marked as a failure the stock plan answers instead.
pub fn mark(message: impl std::fmt::Display) -> String {
    format!("{message}{MARK}")
}

/// The reason to hand the query back, if `message` carries the mark: the
/// message without it.
pub fn reason(message: &str) -> Option<&str> {
    message.find(MARK).map(|at| &message[..at])
}
