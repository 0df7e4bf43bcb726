//! [`LocalMesh`]: a whole mesh of participants in one process, each on its
//! own OS thread with its own runtime, for tests and benchmarks. The mesh
//! lives in one heap region; participants wake each other through
//! [`ThreadPlatform`] latches. Apart from threads standing in for
//! processes, this is the code path pgext runs.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use weft_core::{Mesh, MeshLayout, Region, REGION_ALIGN};

use crate::transport::error::RuntimeError;
use crate::transport::participant::{Config, Participant, RunResult};
use crate::transport::platform::{Platform, ThreadPlatform};

/// Code recorded in the mesh when a participant thread panics.
pub const PANIC_CODE: u32 = 0xdead;

/// Zeroed, aligned heap memory holding one mesh.
///
/// A mesh is mostly ring space that a query may never touch (tests size
/// meshes generously), so the memory must be zeroed lazily: asked for with
/// [`REGION_ALIGN`], `alloc_zeroed` cannot use `calloc` (whose large
/// allocations are fresh, already-zero pages) and memsets the whole
/// region instead, which for a large mesh costs more than a short query.
/// So the allocation uses the allocator's natural alignment, which lets it
/// take the `calloc` path, and the region starts at the first
/// [`REGION_ALIGN`] boundary inside it.
struct HeapRegion {
    /// The allocation, as the allocator returned it.
    base: NonNull<u8>,
    layout: Layout,
    /// The first [`REGION_ALIGN`] boundary in the allocation.
    ptr: NonNull<u8>,
}

impl HeapRegion {
    fn new(len: usize) -> Result<HeapRegion, RuntimeError> {
        let error = |e: &dyn std::fmt::Display| RuntimeError::Runtime(format!("mesh of {len} bytes: {e}"));
        let padded = len.checked_add(REGION_ALIGN).ok_or_else(|| error(&"too large"))?;
        // Alignment 16 is what malloc gives on every 64-bit platform, so
        // the standard allocator zeroes through calloc.
        let layout = Layout::from_size_align(padded, 16).map_err(|e| error(&e))?;
        // SAFETY: the layout has a non-zero size (at least REGION_ALIGN).
        let base = NonNull::new(unsafe { alloc_zeroed(layout) })
            .ok_or_else(|| RuntimeError::Runtime(format!("cannot allocate a mesh of {len} bytes")))?;
        let offset = base.as_ptr().align_offset(REGION_ALIGN);
        if offset > REGION_ALIGN {
            // SAFETY: allocated just above with this layout.
            unsafe { dealloc(base.as_ptr(), layout) };
            return Err(error(&"cannot align the allocation"));
        }
        // SAFETY: offset <= REGION_ALIGN, so ptr..ptr + len lies within the
        // allocation of len + REGION_ALIGN bytes.
        let ptr = unsafe { base.add(offset) };
        Ok(HeapRegion { base, layout, ptr })
    }
}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.base.as_ptr(), self.layout) }
    }
}

/// A mesh run in-process: `participants` threads, `exchanges` exchanges,
/// rings of `ring_capacity` bytes.
///
/// ```
/// use weft_core::MessageKind;
/// use weft_runtime::{Inbox, LocalMesh, Outbox};
///
/// // Every participant sends its number to every participant.
/// let results = LocalMesh::new(3, 1, 64 << 10)?.run(|node| async move {
///     let mut outs = Vec::new();
///     for to in 0..node.participants() {
///         let mut out = Outbox::open(&node, 0, to).await?;
///         out.send(MessageKind::Data, &[node.id() as u8]).await?;
///         outs.push(out);
///     }
///     for out in outs {
///         out.finish().await?;
///     }
///     let mut got = Vec::new();
///     for from in 0..node.participants() {
///         let mut inbox = Inbox::open(&node, 0, from)?;
///         while let Some(message) = inbox.recv().await? {
///             got.extend_from_slice(&message);
///         }
///     }
///     Ok(got)
/// });
/// for result in results {
///     assert_eq!(result?.0, vec![0, 1, 2]);
/// }
/// # Ok::<(), weft_runtime::RuntimeError>(())
/// ```
#[derive(Clone, Debug)]
pub struct LocalMesh {
    layout: MeshLayout,
    config: Config,
}

/// Generations for successive local meshes, so that none attaches another's.
static GENERATION: AtomicU64 = AtomicU64::new(1);

impl LocalMesh {
    /// A mesh of this shape with the default [`Config`].
    pub fn new(participants: u32, exchanges: u32, ring_capacity: usize) -> Result<LocalMesh, RuntimeError> {
        Ok(LocalMesh {
            layout: MeshLayout::new(participants, exchanges, ring_capacity)?,
            config: Config::default(),
        })
    }

    /// The same mesh with another [`Config`].
    pub fn with_config(mut self, config: Config) -> LocalMesh {
        self.config = config;
        self
    }

    /// Runs `body` as every participant, each on its own thread, and
    /// returns their results in participant order. A participant that
    /// panics aborts the query (so the others fail promptly instead of
    /// waiting for it) and reports [`RuntimeError::Runtime`].
    pub fn run<T, F, Fut>(&self, body: F) -> Vec<RunResult<T>>
    where
        F: Fn(Arc<Participant>) -> Fut + Sync,
        Fut: Future<Output = Result<T, RuntimeError>>,
        T: Send,
    {
        let memory = match HeapRegion::new(self.layout.size()) {
            Ok(memory) => memory,
            Err(e) => return vec![Err(e)],
        };
        // SAFETY: `memory` outlives every use of the region: the threads
        // that use it are scoped below and joined before `memory` drops, and
        // nothing else touches the allocation.
        let region: Region<'static> = unsafe { Region::new(memory.ptr, self.layout.size()) };
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = Mesh::init(region, self.layout, generation) {
            return vec![Err(e.into())];
        }
        let platforms = ThreadPlatform::group(self.layout.participants() as usize);
        let body = &body;
        std::thread::scope(|scope| {
            let handles: Vec<_> = platforms
                .iter()
                .enumerate()
                .map(|(id, platform)| {
                    let platform = platform.clone();
                    let config = self.config.clone();
                    std::thread::Builder::new()
                        .name(format!("weft-participant-{id}"))
                        .spawn_scoped(scope, move || {
                            let mesh = Mesh::attach(region, generation)?;
                            let participant = Participant::new(mesh, id as u32, Arc::new(platform.clone()), config);
                            let run = catch_unwind(AssertUnwindSafe(|| participant.run(body)));
                            run.unwrap_or_else(|panic| {
                                let message = panic_message(&*panic);
                                let text = format!("participant {id} panicked: {message}");
                                mesh.abort(id as u32, PANIC_CODE, text.as_bytes());
                                for peer in 0..mesh.layout().participants() {
                                    platform.notify(u64::from(peer));
                                }
                                Err(RuntimeError::Runtime(text))
                            })
                        })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| match handle {
                    Ok(handle) => handle
                        .join()
                        .unwrap_or_else(|_| Err(RuntimeError::Runtime("participant thread panicked".into()))),
                    Err(e) => Err(RuntimeError::Runtime(format!("cannot start a participant thread: {e}"))),
                })
                .collect()
        })
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}
