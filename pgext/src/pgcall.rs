//! Calling Postgres from inside the runtime.
//!
//! A heap scan runs inside DataFusion's streams, inside tokio frames, on
//! the backend's own thread. pgrx turns a Postgres ERROR raised by a
//! (guarded) `pg_sys` call into a Rust panic carrying the error report,
//! having already flushed Postgres's error state. [`call`] catches that
//! panic where the call is made, keeps the report for later, and returns
//! an ordinary error, which ends the query through the mesh like any
//! other failure. Once the runtime is torn down, [`rethrow_pending`]
//! raises the kept report as this backend's ERROR (with its SQLSTATE),
//! and the transaction abort releases whatever the failed call held
//! (buffer pins, locks, memory), as Postgres always does.
//!
//! A report is kept per thread and only the first one: later ones are
//! usually consequences of it.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use datafusion::common::DataFusionError;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::{CaughtError, ErrorReportWithLevel};

thread_local! {
    /// The first Postgres error caught on this thread and not yet raised.
    static PENDING: RefCell<Option<CaughtError>> = const { RefCell::new(None) };
    /// Whether the query this thread runs has been aborted elsewhere (a
    /// peer failed, the leader was cancelled): set for a participant's run
    /// ([`with_stop_check`]).
    static ABORTED: RefCell<Option<Box<dyn Fn() -> bool>>> = const { RefCell::new(None) };
}

/// Whether Postgres wants this backend to stop the statement now: a
/// cancel, statement timeout or termination is pending (interrupts are
/// held while the runtime runs, so nothing raises it yet).
pub fn cancel_or_die_pending() -> bool {
    use std::ptr::{addr_of, read_volatile};
    // SAFETY: signal handlers set these `volatile sig_atomic_t` flags;
    // volatile reads on the backend thread are how Postgres reads them.
    unsafe {
        read_volatile(addr_of!(pg_sys::QueryCancelPending)) != 0 || read_volatile(addr_of!(pg_sys::ProcDiePending)) != 0
    }
}

/// Runs `f` with `aborted` telling [`should_stop`] whether the query was
/// aborted elsewhere.
pub fn with_stop_check<R>(aborted: impl Fn() -> bool + 'static, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Box<dyn Fn() -> bool>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            ABORTED.with(|check| *check.borrow_mut() = previous);
        }
    }
    let _restore = Restore(ABORTED.with(|check| check.borrow_mut().replace(Box::new(aborted))));
    f()
}

/// Whether a long computation calling Postgres row by row (the function
/// bridge, collated comparisons) should stop now: the statement is being
/// cancelled or the backend terminated, or the query was aborted
/// elsewhere. The runtime notices these between DataFusion's polls, but
/// one poll can compute a large batch (a nested loop join's output, say)
/// for seconds: such loops ask every few hundred rows and end with
/// [`stopped`].
pub fn should_stop() -> bool {
    cancel_or_die_pending() || ABORTED.with(|check| check.borrow().as_ref().is_some_and(|aborted| aborted()))
}

/// The error a computation that [`should_stop`] ends with: the runtime
/// then unwinds, and the query's real error (the cancel, the peer's
/// failure) is what the client sees.
pub fn stopped() -> DataFusionError {
    DataFusionError::Execution("weft: the query is stopping (cancelled, or aborted elsewhere)".into())
}

/// Runs `f`, which calls Postgres, turning a Postgres ERROR (or a panic)
/// into a DataFusion error whose message is Postgres's. `what` names the
/// work for panics.
pub fn call<T>(what: &str, f: impl FnOnce() -> Result<T, DataFusionError>) -> Result<T, DataFusionError> {
    // SAFETY: plain globals of this backend, read on its thread.
    let (context, interrupts, cancels) = unsafe {
        (
            pg_sys::CurrentMemoryContext,
            pg_sys::InterruptHoldoffCount,
            pg_sys::QueryCancelHoldoffCount,
        )
    };
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            // The error left us in whatever context the failed call had
            // switched to; later allocations belong in the caller's. And
            // Postgres zeroes the interrupt holdoff counts as it raises an
            // ERROR, for the handler it jumps to: here the runtime goes on
            // calling Postgres until it has unwound, and a cancel must not
            // be raised (a longjmp) inside its frames, so they are held
            // again as they were.
            // SAFETY: as above; `context` outlives the call.
            unsafe {
                pg_sys::CurrentMemoryContext = context;
                pg_sys::InterruptHoldoffCount = interrupts;
                pg_sys::QueryCancelHoldoffCount = cancels;
            }
            // A Postgres ERROR comes as a CaughtError, a pgrx::error!
            // raised in Rust as a bare report; both are kept to be raised
            // as they are. Any other panic is only a message.
            let caught = match panic.downcast::<CaughtError>() {
                Ok(caught) => Ok(*caught),
                Err(panic) => panic
                    .downcast::<ErrorReportWithLevel>()
                    .map(|report| CaughtError::ErrorReport(*report)),
            };
            let message = match caught {
                Ok(caught) => {
                    let message = match &caught {
                        CaughtError::PostgresError(report)
                        | CaughtError::ErrorReport(report)
                        | CaughtError::RustPanic { ereport: report, .. } => report.message().to_string(),
                    };
                    PENDING.with(|pending| {
                        let mut pending = pending.borrow_mut();
                        if pending.is_none() {
                            *pending = Some(caught);
                        }
                    });
                    message
                }
                Err(other) => format!("{what} panicked: {}", panic_message(other.as_ref())),
            };
            Err(DataFusionError::External(message.into()))
        }
    }
}

/// Runs `f` in a memory context of its own, named `name`, deleted when `f`
/// returns: whatever `f` allocates from Postgres lives until then (a
/// batch's Datums). After a Postgres ERROR inside `f`, [`call`] restores
/// the caller's context, and this one goes with its parent.
///
/// # Safety
/// On the backend thread, inside [`call`]; nothing `f` allocates is used
/// after it returns.
pub unsafe fn in_scratch_memory<T>(name: &std::ffi::CStr, f: impl FnOnce() -> T) -> T {
    // SAFETY: per the caller; the context is created, made current, and
    // deleted after the previous one is current again.
    unsafe {
        let memory = pgrx::pg_sys::AllocSetContextCreateInternal(
            pgrx::pg_sys::CurrentMemoryContext,
            name.as_ptr(),
            pgrx::pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pgrx::pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pgrx::pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        let previous = pgrx::pg_sys::MemoryContextSwitchTo(memory);
        let result = f();
        pgrx::pg_sys::MemoryContextSwitchTo(previous);
        pgrx::pg_sys::MemoryContextDelete(memory);
        result
    }
}

/// Whether a Postgres error is waiting to be raised: Postgres's state is
/// then only fit for the transaction's abort, so cleanup code skips its
/// own Postgres calls.
pub fn error_pending() -> bool {
    PENDING.with(|pending| pending.borrow().is_some())
}

/// Raises the Postgres error [`call`] caught, if any. Call it outside
/// every tokio frame.
pub fn rethrow_pending() {
    if let Some(caught) = PENDING.with(|pending| pending.borrow_mut().take()) {
        caught.rethrow();
    }
}

/// Drops a report [`call`] kept for a query that ended with another error
/// first (a worker's, or a cancel, raised before this one could be): its
/// transaction was aborted with that error, and the report must not be
/// raised by the next query. Call it as a query starts.
pub fn discard_pending() {
    PENDING.with(|pending| pending.borrow_mut().take());
}

/// A panic payload's message.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
