//! The platform seam: how a participant sleeps and how it wakes another.
//!
//! The runtime never blocks on its own: when every task of a participant is
//! pending it asks its [`Platform`] to park, and after publishing to a peer
//! that is asleep it asks the platform to notify that peer. In Postgres
//! these are `WaitLatch` on `MyLatch` and `SetLatch` on the peer's process
//! latch (pgext implements them); here, [`ThreadPlatform`] does the same for
//! participants that are threads of one process.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// One participant's view of the platform.
///
/// Implementations must be cheap to call repeatedly: `notify` on a peer that
/// is already notified (or awake) should return at once, as Postgres's
/// `SetLatch` does on a latch already set.
pub trait Platform: Send + Sync + 'static {
    /// The token peers pass to [`notify`](Self::notify) to wake this
    /// participant; registered in the mesh (in Postgres, the PGPROC number).
    fn wake_token(&self) -> u64;

    /// Wakes the participant that registered `wake_token`: makes its current
    /// or next [`park`](Self::park) return.
    fn notify(&self, wake_token: u64);

    /// Sleeps until notified or until `timeout` passes; may return early.
    /// A notification that arrived since the last park makes it return at
    /// once (latch semantics), so no notification is ever lost.
    fn park(&self, timeout: Duration);

    /// Why this participant must stop now, if it must: in Postgres, a
    /// query cancel, a termination request, or a worker that died. Checked
    /// whenever the participant looks for an abort (often), so it must be
    /// cheap; the reason becomes the query's abort message.
    fn interrupted(&self) -> Option<String> {
        None
    }
}

/// A latch: `set` makes the owner's current or next `wait` return.
#[derive(Debug, Default)]
pub struct Latch {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Latch {
    /// Sets the latch and wakes its waiter.
    pub fn set(&self) {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        if !*set {
            *set = true;
            self.cv.notify_one();
        }
    }

    /// Waits until set or `timeout` passes, then resets it.
    pub fn wait(&self, timeout: Duration) {
        let set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        let (mut set, _) = self
            .cv
            .wait_timeout_while(set, timeout, |set| !*set)
            .unwrap_or_else(|p| p.into_inner());
        *set = false;
    }
}

/// [`Platform`] for participants that are threads of one process: one latch
/// per participant, wake token = participant number.
///
/// ```
/// use std::time::Duration;
/// use weft_runtime::{Platform, ThreadPlatform};
/// let platforms = ThreadPlatform::group(2);
/// platforms[1].notify(0);
/// platforms[0].park(Duration::from_secs(10)); // returns at once: notified
/// ```
#[derive(Clone, Debug)]
pub struct ThreadPlatform {
    me: usize,
    latches: Arc<[Latch]>,
}

impl ThreadPlatform {
    /// Platforms for `participants` threads that can wake each other.
    pub fn group(participants: usize) -> Vec<ThreadPlatform> {
        let latches: Arc<[Latch]> = (0..participants).map(|_| Latch::default()).collect();
        (0..participants)
            .map(|me| ThreadPlatform {
                me,
                latches: latches.clone(),
            })
            .collect()
    }
}

impl Platform for ThreadPlatform {
    fn wake_token(&self) -> u64 {
        self.me as u64
    }

    fn notify(&self, wake_token: u64) {
        // An unknown token is a peer that cannot be woken: ignore it (the
        // peer's bounded park still finds the work).
        if let Some(latch) = usize::try_from(wake_token).ok().and_then(|i| self.latches.get(i)) {
            latch.set();
        }
    }

    fn park(&self, timeout: Duration) {
        self.latches[self.me].wait(timeout);
    }
}
