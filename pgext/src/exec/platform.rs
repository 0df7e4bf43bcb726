//! The runtime's platform in a Postgres backend: wake a peer by setting its
//! process latch, park on our own latch, and report interrupts (query
//! cancel, termination, a worker that died) so the runtime aborts the
//! query and unwinds before Postgres raises its own error.
//!
//! Everything here runs on the backend's own thread: the participant's
//! current-thread runtime is driven by that thread, and weft starts no
//! other thread that could call into Postgres.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pgrx::pg_sys;
use weft_core::{Mesh, ParticipantState};
use weft_runtime::Platform;

/// A wake token: the PGPROC number in the low half, the pid in the high
/// half, so that a latch is never set on a PGPROC slot some other process
/// took over after ours exited.
fn token(procno: i32, pid: i32) -> u64 {
    (u64::from(pid as u32) << 32) | u64::from(procno as u32)
}

/// This backend's wake token.
pub fn my_wake_token() -> u64 {
    // SAFETY: MyProc is this backend's PGPROC, set up before any SQL or
    // parallel worker code runs; read on the backend thread.
    unsafe { token((*pg_sys::MyProc).pgprocno, pg_sys::MyProcPid) }
}

/// Sets the latch of the backend that registered `wake_token`, if it is
/// still the process that registered it.
pub fn set_latch(wake_token: u64) {
    let procno = (wake_token & 0xffff_ffff) as u32;
    let pid = (wake_token >> 32) as i32;
    // SAFETY: ProcGlobal and its allProcs array live in the main shared
    // memory for the postmaster's lifetime; the index is bounds-checked
    // against allProcCount. The pid check makes a recycled slot harmless
    // (a spurious SetLatch is harmless anyway: latch waiters recheck).
    unsafe {
        let global = pg_sys::ProcGlobal;
        if global.is_null() || procno >= (*global).allProcCount {
            return;
        }
        let proc_ = (*global).allProcs.add(procno as usize);
        if (*proc_).pid == pid {
            pg_sys::SetLatch(&raw mut (*proc_).procLatch);
        }
    }
}

/// The platform of one participant; see the module docs.
pub struct PgPlatform {
    token: u64,
    mesh: Mesh<'static>,
    /// The leader's launched workers (participant i + 1 is worker i); empty
    /// in a worker. Only the leader watches for workers that die.
    workers: Vec<WorkerHandle>,
    /// A worker found dead (usize::MAX: none). Looking costs a lock in
    /// Postgres, so it happens when idle, in `park`, and `interrupted`
    /// (called often) only reads this.
    dead: AtomicUsize,
}

/// A launched worker's background worker handle.
struct WorkerHandle(*mut pg_sys::BackgroundWorkerHandle);

// SAFETY: the handle is only used on the backend thread that launched the
// workers (the participant runs there); the Platform trait needs Send and
// Sync because the runtime shares its platform through an Arc.
unsafe impl Send for WorkerHandle {}
// SAFETY: as above.
unsafe impl Sync for WorkerHandle {}

impl PgPlatform {
    /// The platform of this backend as a participant of `mesh`; the leader
    /// passes its launched workers' handles.
    pub fn new(mesh: Mesh<'static>, workers: Vec<*mut pg_sys::BackgroundWorkerHandle>) -> PgPlatform {
        PgPlatform {
            token: my_wake_token(),
            mesh,
            workers: workers.into_iter().map(WorkerHandle).collect(),
            dead: AtomicUsize::new(usize::MAX),
        }
    }

    /// A launched worker that stopped without finishing its part: it
    /// died (terminated, crashed, or never started).
    fn dead_worker(&self) -> Option<usize> {
        self.workers.iter().enumerate().find_map(|(i, handle)| {
            let mut pid = 0;
            // SAFETY: the handle belongs to the parallel context, which
            // outlives the participant's run.
            let status = unsafe { pg_sys::GetBackgroundWorkerPid(handle.0, &mut pid) };
            let stopped = status == pg_sys::BgwHandleStatus::BGWH_STOPPED;
            let finished = matches!(
                self.mesh.participant_state(i as u32 + 1),
                Ok(ParticipantState::Done | ParticipantState::Failed)
            );
            (stopped && !finished).then_some(i)
        })
    }
}

impl Platform for PgPlatform {
    fn wake_token(&self) -> u64 {
        self.token
    }

    fn notify(&self, wake_token: u64) {
        set_latch(wake_token);
    }

    fn park(&self, timeout: Duration) {
        let millis = timeout.as_millis().clamp(1, i64::MAX as u128) as std::ffi::c_long;
        let events = pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH;
        // SAFETY: MyLatch is this process's latch, waited on by its owner;
        // WL_EXIT_ON_PM_DEATH makes the process exit if the postmaster
        // dies. Neither call raises an ERROR.
        unsafe {
            pg_sys::WaitLatch(pg_sys::MyLatch, events as i32, millis, pg_sys::PG_WAIT_EXTENSION);
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        if let Some(dead) = self.dead_worker() {
            self.dead.store(dead, Ordering::Relaxed);
        }
    }

    fn interrupted(&self) -> Option<String> {
        if crate::pgcall::cancel_or_die_pending() {
            // The participant unwinds, then Postgres raises the real error
            // (cancel, statement timeout, termination) with its own text.
            return Some("interrupted: the statement was canceled or the backend is terminating".into());
        }
        match self.dead.load(Ordering::Relaxed) {
            usize::MAX => None,
            i => Some(format!(
                "parallel worker {i} (participant {}) exited before finishing its part",
                i + 1
            )),
        }
    }
}
