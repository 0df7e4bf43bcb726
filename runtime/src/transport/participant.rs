//! A participant: one thread of execution (a Postgres backend, or a thread
//! in tests) running a current-thread tokio runtime and a `LocalSet`, whose
//! idle hook parks on the [`Platform`] instead of spinning.
//!
//! # Scheduling
//!
//! An endpoint operation that would block registers its task's waker here
//! and arms its ring's wakeup (weft-core's handshake), then returns
//! `Pending`. When every task is pending, tokio calls its `on_thread_park`
//! hook, [`Idle::on_idle`]: it parks on the platform (bounded by
//! [`Config::park_timeout`]), then wakes every registered waiter so that
//! each re-checks its ring. Peers wake a parked participant through
//! [`Platform::notify`] after publishing to a ring it waits on.
//!
//! The hook also wakes the root future every time. Otherwise, with nothing
//! woken, tokio would go on to park in its own driver with no timeout, and
//! only a tokio wakeup (never a platform notify) could end that. Each idle
//! round therefore blocks once in the platform's park and costs one poll of
//! the root: no busy spinning, and no reliance on tokio's IO driver for
//! cross-process wakeups.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::task::{JoinHandle, LocalSet};
use weft_core::{Mesh, ParticipantState};

use crate::transport::error::RuntimeError;
use crate::transport::metrics::Metrics;
use crate::transport::platform::Platform;

/// The participant that collects the query's result.
const LEADER: u32 = 0;

/// Code recorded in the mesh when a participant's body fails.
pub const FAILURE_CODE: u32 = 1;

/// Code recorded in the mesh when the platform interrupts a participant
/// ([`Platform::interrupted`]).
pub const INTERRUPT_CODE: u32 = 3;

/// Tuning of a participant's scheduling.
#[derive(Clone, Debug)]
pub struct Config {
    /// Longest single park on the platform while idle. Only a safety net:
    /// peers notify as soon as there is work.
    pub park_timeout: Duration,
    /// A sender yields to the other tasks of its participant after this many
    /// frames; see [`Outbox::send`](crate::Outbox::send).
    pub yield_every: u32,
    /// Largest message a receiver reassembles, in bytes: a bound against a
    /// corrupt or hostile peer.
    pub max_message: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            park_timeout: Duration::from_millis(50),
            yield_every: 8,
            max_message: 1 << 30,
        }
    }
}

/// Wakers of tasks waiting on rings, and the idle hook that parks on the
/// platform and then wakes them. Shared with tokio's hook, hence `Arc`.
pub(crate) struct Idle {
    platform: Arc<dyn Platform>,
    /// Tasks waiting on a ring (their endpoint armed the ring's wakeup).
    waiters: Mutex<Vec<Waker>>,
    /// The root future's waker, woken after every park (see module docs).
    root: Mutex<Option<Waker>>,
    timeout: Duration,
    /// Times the participant parked, for tests and metrics.
    parks: AtomicU64,
}

/// Locks a mutex whose data stays valid even if a holder panicked (a list
/// of wakers cannot be left half-updated).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Idle {
    /// Remembers `waker` until the next idle round or notification.
    pub(crate) fn wait_on(&self, waker: &Waker) {
        let mut waiters = lock(&self.waiters);
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
        }
    }

    /// Wakes every waiting task, so that each re-checks its ring.
    pub(crate) fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *lock(&self.waiters));
        for waker in waiters {
            waker.wake();
        }
    }

    /// tokio's `on_thread_park` hook: every task is pending.
    fn on_idle(&self) {
        self.parks.fetch_add(1, Ordering::Relaxed);
        self.platform.park(self.timeout);
        self.wake_waiters();
        if let Some(root) = lock(&self.root).as_ref() {
            root.wake_by_ref();
        }
    }
}

/// One participant of a query: its number, the query's mesh, and the
/// platform that parks and notifies it. [`run`](Participant::run) drives
/// its work; inside, it is shared as `Arc<Participant>` (DataFusion's
/// plans and streams must be `Send`, so endpoints are too, although all of
/// a participant's tasks run on its one thread).
pub struct Participant {
    id: u32,
    mesh: Mesh<'static>,
    platform: Arc<dyn Platform>,
    pub(crate) idle: Arc<Idle>,
    pub(crate) config: Config,
    pub(crate) metrics: Mutex<Metrics>,
    /// Tasks this participant still owes its peers: an exchange's producer
    /// whose local consumer stopped reading early (a join whose build side
    /// is empty never reads its probe side) still sends its rows and its
    /// end of stream to the others. [`run`](Self::run) finishes them
    /// before a worker ends.
    owed: Mutex<Vec<Pin<Box<dyn Future<Output = ()> + Send>>>>,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("id", &self.id)
            .field("participants", &self.participants())
            .finish_non_exhaustive()
    }
}

/// What a participant's run produced: the body's value and the per-edge
/// metrics, or the error that ended it.
pub type RunResult<T> = Result<(T, Metrics), RuntimeError>;

impl Participant {
    /// Participant `id` of `mesh`, parking and notifying through `platform`.
    ///
    /// The mesh's memory must outlive [`run`](Self::run) (its `'static`
    /// lifetime is the caller's promise, made when creating its `Region`).
    pub fn new(mesh: Mesh<'static>, id: u32, platform: Arc<dyn Platform>, config: Config) -> Participant {
        let idle = Arc::new(Idle {
            platform: platform.clone(),
            waiters: Mutex::new(Vec::new()),
            root: Mutex::new(None),
            timeout: config.park_timeout,
            parks: AtomicU64::new(0),
        });
        Participant {
            id,
            mesh,
            platform,
            idle,
            config,
            metrics: Mutex::new(Metrics::default()),
            owed: Mutex::new(Vec::new()),
        }
    }

    /// This participant's number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// How many participants the query has.
    pub fn participants(&self) -> u32 {
        self.mesh.layout().participants()
    }

    /// The query's mesh.
    pub fn mesh(&self) -> &Mesh<'static> {
        &self.mesh
    }

    /// Times this participant has parked so far.
    pub fn parks(&self) -> u64 {
        self.idle.parks.load(Ordering::Relaxed)
    }

    /// Runs `body` to completion on this thread: registers in the mesh,
    /// drives `body` on a current-thread runtime and `LocalSet`, and tears
    /// them down. An error ends the query for every participant (it is
    /// recorded as the mesh's first error unless another came first).
    pub fn run<T, F, Fut>(self, body: F) -> RunResult<T>
    where
        F: FnOnce(Arc<Participant>) -> Fut,
        Fut: Future<Output = Result<T, RuntimeError>>,
    {
        self.mesh.register(self.id, self.platform.wake_token())?;
        // Peers that registered first may be waiting for us (Mesh::register).
        self.notify_all();

        let idle = self.idle.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .on_thread_park(move || idle.on_idle())
            .build()
            .map_err(|e| RuntimeError::Runtime(e.to_string()))?;
        let local = LocalSet::new();
        let me = Arc::new(self);
        let result = local.block_on(&runtime, Root::new(me.clone(), body(me.clone())));
        let result = match result {
            // The leader has the whole result: the query is complete, and
            // what any participant has left to do no longer matters. Said
            // before anything closes, so that peers seeing our rings close
            // find it (the ring states' Release/Acquire orders the two).
            Ok(value) if me.id == LEADER => me
                .mesh
                .set_participant_state(me.id, ParticipantState::Done)
                .map(|()| value)
                .map_err(RuntimeError::from),
            // A worker first pays what it owes (a failure there aborts the
            // query).
            Ok(value) => local
                .block_on(&runtime, Root::new(me.clone(), me.clone().pay_owed()))
                .map(|()| value),
            Err(e) => Err(e),
        };

        // A failure is recorded before anything closes: peers that see our
        // rings close must find the abort there already (Release/Acquire on
        // the ring states orders the two), or they would report us as having
        // vanished instead of with our own message.
        let state = match &result {
            Ok(_) => ParticipantState::Done,
            Err(e) => {
                if !matches!(e, RuntimeError::Aborted { .. }) {
                    me.abort(e.code().unwrap_or(FAILURE_CODE), &e.to_string());
                }
                ParticipantState::Failed
            }
        };
        // Teardown order: first the tasks (and with them their streams, whose
        // drops close rings and notify peers while the mesh is still there),
        // then the runtime. The mesh memory goes last, with the caller.
        drop(local);
        drop(runtime);
        me.mesh.set_participant_state(me.id, state)?;
        let metrics = std::mem::take(&mut *lock(&me.metrics));
        result.map(|value| (value, metrics))
    }

    /// Hands over a task this participant must finish before it ends, even
    /// if nothing awaits it any more (see [`Participant::owed`]).
    pub(crate) fn owe<T: Send + 'static>(&self, task: JoinHandle<T>) {
        // A failure is the query's abort (checked once all are paid); what
        // matters is that the participant waits for it before tearing its
        // runtime, and with it the task, down.
        lock(&self.owed).push(Box::pin(async move {
            let _ = task.await;
        }));
    }

    /// Awaits the tasks handed over by [`owe`](Self::owe) (each ends when
    /// its receivers have closed, or the query is complete), then reports
    /// the query's abort, if one of them or a peer failed it.
    async fn pay_owed(self: Arc<Self>) -> Result<(), RuntimeError> {
        loop {
            let next = lock(&self.owed).pop();
            let Some(task) = next else { break };
            task.await;
        }
        self.check_abort()
    }

    /// Whether the query is complete: the leader has its whole result
    /// (and nothing a participant still does can change it).
    pub(crate) fn query_complete(&self) -> bool {
        matches!(self.mesh.participant_state(LEADER), Ok(ParticipantState::Done))
    }

    /// Fails the query: records the error in the mesh if it is the first,
    /// and wakes every participant so that their pending operations fail
    /// promptly. Returns whether this was the first error.
    pub fn abort(&self, code: u32, message: &str) -> bool {
        let first = self.mesh.abort(self.id, code, message.as_bytes());
        self.notify_all();
        self.idle.wake_waiters();
        first
    }

    /// A handle that can abort the query from any thread (a watchdog, a
    /// signal-driven cancel): it records the error and wakes everyone.
    pub fn abort_handle(&self) -> AbortHandle {
        AbortHandle {
            id: self.id,
            mesh: self.mesh,
            platform: self.platform.clone(),
        }
    }

    /// The query's abort as an error, if it is aborting.
    pub(crate) fn check_abort(&self) -> Result<(), RuntimeError> {
        if !self.mesh.is_aborted() {
            match self.platform.interrupted() {
                None => return Ok(()),
                Some(reason) => {
                    self.abort(INTERRUPT_CODE, &reason);
                }
            }
        }
        Err(match self.mesh.first_error() {
            Some(first) => RuntimeError::aborted(&first),
            None => RuntimeError::Aborted {
                participant: u32::MAX,
                code: 0,
                message: "query aborted".into(),
            },
        })
    }

    /// Wakes `participant`: our own waiters directly (a self-loop's
    /// consumer is a task here), anyone else through the platform.
    pub(crate) fn notify(&self, participant: u32) {
        if participant == self.id {
            self.idle.wake_waiters();
        } else if let Ok(Some(token)) = self.mesh.wake_token(participant) {
            self.platform.notify(token);
        }
    }

    fn notify_all(&self) {
        notify_peers(&self.mesh, &*self.platform, self.id);
    }
}

/// Notifies every registered participant but `me`.
fn notify_peers(mesh: &Mesh<'static>, platform: &dyn Platform, me: u32) {
    for p in (0..mesh.layout().participants()).filter(|&p| p != me) {
        if let Ok(Some(token)) = mesh.wake_token(p) {
            platform.notify(token);
        }
    }
}

/// Aborts a query from any thread; see [`Participant::abort_handle`].
#[derive(Clone)]
pub struct AbortHandle {
    id: u32,
    mesh: Mesh<'static>,
    platform: Arc<dyn Platform>,
}

impl std::fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbortHandle").field("participant", &self.id).finish()
    }
}

impl AbortHandle {
    /// Records the error as this participant's (if it is the first) and
    /// wakes every participant, this one included. Returns whether it was
    /// the first error.
    pub fn abort(&self, code: u32, message: &str) -> bool {
        let first = self.mesh.abort(self.id, code, message.as_bytes());
        notify_peers(&self.mesh, &*self.platform, self.id);
        self.platform.notify(self.platform.wake_token());
        first
    }
}

/// The root future: ends with the abort if the query aborts, and records
/// its waker for the idle hook at every poll.
struct Root<F> {
    node: Arc<Participant>,
    body: Pin<Box<F>>,
}

impl<F: Future> Root<F> {
    fn new(node: Arc<Participant>, body: F) -> Self {
        Root {
            node,
            body: Box::pin(body),
        }
    }
}

impl<T, F: Future<Output = Result<T, RuntimeError>>> Future for Root<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // A participant busy computing never parks, so the idle hook cannot
        // tell it about an abort; DataFusion's operators yield every so
        // often (tokio's cooperative budget), and each yield of work in
        // the root task comes back through here.
        if let Err(aborted) = self.node.check_abort() {
            return Poll::Ready(Err(aborted));
        }
        {
            let mut root = lock(&self.node.idle.root);
            if !root.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *root = Some(cx.waker().clone());
            }
        }
        self.body.as_mut().poll(cx)
    }
}
