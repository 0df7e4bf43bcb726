//! Running one participant on this backend, with Postgres's interrupts
//! held while the runtime runs.
//!
//! Postgres raises a cancel or termination as an ERROR (a longjmp) from
//! CHECK_FOR_INTERRUPTS, which must never happen inside tokio frames. So
//! interrupts are held for the whole run; the platform reports pending
//! ones to the runtime ([`crate::exec::platform::PgPlatform`]), which aborts the
//! query and unwinds; then interrupts are resumed and Postgres raises its
//! own error, outside every tokio frame.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use pgrx::pg_sys;
use weft_runtime::{Config, Metrics, Participant, RuntimeError};

use crate::exec::parallel::Part;
use crate::exec::platform::PgPlatform;

/// Postgres's HOLD_INTERRUPTS until dropped. Drop restores the count it
/// found rather than decrementing: a Postgres ERROR resets the count to
/// zero, and a decrement after that would wrap it and disable interrupts
/// for good.
struct HeldInterrupts(u32);

impl HeldInterrupts {
    fn hold() -> HeldInterrupts {
        // SAFETY: a plain global of this backend, used on its thread.
        unsafe {
            let before = pg_sys::InterruptHoldoffCount;
            pg_sys::InterruptHoldoffCount = before + 1;
            HeldInterrupts(before)
        }
    }
}

impl Drop for HeldInterrupts {
    fn drop(&mut self) {
        // SAFETY: as in `hold`.
        unsafe { pg_sys::InterruptHoldoffCount = self.0 };
    }
}

/// Runs `body` as `part`'s participant; the leader passes its workers'
/// handles (to notice one dying). Afterwards interrupts are processed, so
/// a cancel, statement timeout or termination raises Postgres's own error
/// from here; otherwise the outcome is returned, with the participant's
/// edge metrics.
pub fn run<T, F, Fut>(
    part: &Part,
    workers: Vec<*mut pg_sys::BackgroundWorkerHandle>,
    body: F,
) -> Result<(T, Metrics), RuntimeError>
where
    F: FnOnce(Arc<Participant>) -> Fut,
    Fut: Future<Output = Result<T, RuntimeError>>,
{
    let platform = Arc::new(PgPlatform::new(part.mesh, workers));
    let participant = Participant::new(part.mesh, part.id, platform, Config::default());
    let outcome = {
        let _held = HeldInterrupts::hold();
        // A Rust panic unwinds out of the runtime (tokio propagates a
        // panicking root future; the runtime and its tasks are dropped on
        // the way) and stops here, as an error.
        // Long row-by-row computations inside a poll ask whether to stop:
        // the mesh says whether the query was aborted elsewhere.
        let mesh = part.mesh;
        let run = || crate::pgcall::with_stop_check(move || mesh.is_aborted(), || participant.run(body));
        catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|panic| {
            let message = crate::pgcall::panic_message(panic.as_ref());
            part.mesh.abort(part.id, weft_runtime::FAILURE_CODE, message.as_bytes());
            Err(RuntimeError::Runtime(format!(
                "participant {} panicked: {message}",
                part.id
            )))
        })
    };
    // This participant's own Postgres error, if it met one, is the one it
    // raises, before any interrupt (a worker's error reaching the leader)
    // could raise another and leave it to a later query.
    crate::pgcall::rethrow_pending();
    pgrx::check_for_interrupts!();
    outcome
}
