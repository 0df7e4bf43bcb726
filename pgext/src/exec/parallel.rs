//! A parallel section: the leader launches Postgres parallel workers, and
//! every participant (the leader is participant 0, worker i is participant
//! i + 1) runs its part of a job over weft's mesh.
//!
//! Two pieces of shared memory:
//!
//! - the ParallelContext's DSM (which also gives the workers the leader's
//!   snapshot, transaction and settings, and brings their errors back),
//!   sized before launch: the [`Control`] block (the job, its parameters,
//!   the launch handshake below) and a job area the leader reads after
//!   the workers finish (the mesh benchmark's per-edge results);
//! - the section's own segment, created after launch for the participants
//!   that actually started: the mesh, then a job payload (a query's plan
//!   and its scans' shared state). Its size depends on how many workers
//!   started, which is why it cannot live in the first one.
//!
//! Launch handshake. The leader learns how many workers started only
//! after launching them, while they may already be starting. So each
//! worker publishes its wake token in the control block and waits on its
//! latch; the leader ([`Launched::publish`]) creates and fills the
//! segment, stores its handle and the participant count, and sets the
//! latch of every worker that published a token. Both sides store, then
//! load the other's word with SeqCst (the store-buffer pattern): a worker
//! that published too late for the leader's look is one that sees the count.
//!
//! Where the segments live. Postgres carves a DSM segment out of the
//! region it reserves at start for them (`min_dynamic_shared_memory`)
//! when one is free, and otherwise asks the operating system, which
//! allocates and zeroes every page of it (`posix_fallocate`) and frees
//! them all when the segment goes, whatever the query wrote: for a mesh
//! of tens of megabytes, a large part of a short query's time. So weft adds
//! `weft.shared_memory` to that region at server start ([`reserve`]);
//! its segments also come already mapped in every process (workers are
//! forked from the postmaster), in huge pages when the server has them.
//!
//! Teardown. On success, [`Section::finish`] waits for the workers (so
//! that a late worker error is raised), detaches the segment, destroys
//! the context (the DSM goes with it) and leaves parallel mode; a worker
//! detaches its mapping with [`Part::leave`]. On an error Postgres's
//! transaction abort does the same (it destroys every parallel context of
//! the transaction, terminating workers still running, releases the
//! segment's mappings with their resource owners, and resets parallel
//! mode), so nothing here needs to run while Postgres unwinds.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pgrx::pg_sys;
use weft_core::{Mesh, MeshLayout, Region, REGION_ALIGN};

use crate::exec::platform::{my_wake_token, set_latch};

/// toc keys of weft's entries ("weft" in the high bytes; Postgres's own
/// keys are near u64::MAX).
const KEY_CONTROL: u64 = 0x7765_6674_0000_0001;
const KEY_AREA: u64 = 0x7765_6674_0000_0003;

/// The control block's first word, checked by workers.
const MAGIC: u64 = 0x7765_6674_6374_726c; // "weftctrl"

/// `Control::launched` before the leader knows how many workers started.
const UNKNOWN: u32 = u32::MAX;

/// Alignment of the payload inside the section's segment.
const PAYLOAD_ALIGN: usize = 64;

/// The most workers a section can have (`weft.workers`' bound).
pub const MAX_WORKERS: usize = crate::guc::MAX_WORKERS as usize;

/// What the workers of a section run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Job {
    /// `weft.mesh_bench`: all-to-all traffic through the mesh.
    MeshBench = 1,
    /// `weft.query`: a shipped SPMD plan.
    Query = 2,
}

impl Job {
    fn from_u32(value: u32) -> Option<Job> {
        match value {
            1 => Some(Job::MeshBench),
            2 => Some(Job::Query),
            _ => None,
        }
    }
}

/// The control block in the DSM; see the module docs.
#[repr(C)]
pub struct Control {
    magic: u64,
    job: u32,
    /// Workers requested.
    requested: u32,
    /// Workers that started (`UNKNOWN` until the leader knows). Stored
    /// last by the leader (SeqCst); everything below is valid once a
    /// worker sees it.
    launched: AtomicU32,
    /// The section segment's handle.
    segment: AtomicU32,
    /// The mesh's generation, which workers attach with.
    generation: AtomicU64,
    /// Bytes of the mesh's part of the segment (from its start) and of
    /// the payload (after it).
    mesh_len: AtomicU64,
    payload_len: AtomicU64,
    /// Job parameters, written before launch.
    params: [u64; 4],
    /// Bytes of the job area.
    area_len: usize,
    /// Worker i's wake token, 0 until it published it.
    worker_tokens: [AtomicU64; MAX_WORKERS],
}

/// What a participant sees of its section: who it is, the mesh, the job's
/// parameters, area and payload.
pub struct Part {
    /// This participant's number (0 = the leader).
    pub id: u32,
    /// The mesh, initialized for the participants that exist.
    pub mesh: Mesh<'static>,
    /// The job's parameters.
    pub params: [u64; 4],
    area: NonNull<u8>,
    area_len: usize,
    payload: NonNull<u8>,
    payload_len: usize,
    /// The section's segment as this process maps it.
    segment: NonNull<pg_sys::dsm_segment>,
}

impl Part {
    /// The job area as `T`s. Its `'static` stands for "until the section
    /// ends", like the mesh's: participants' runtimes, the only users, are
    /// torn down before it does.
    pub fn area<T: AreaItem>(&self) -> &'static [T] {
        let count = self.area_len / size_of::<T>();
        // SAFETY: the area lives in the DSM, mapped for the whole section;
        // the leader zeroed it before launch; its start is
        // BUFFERALIGN-aligned (shm_toc_allocate), enough for `AreaItem`s,
        // which are atomics valid for any bit pattern.
        unsafe { std::slice::from_raw_parts(self.area.as_ptr().cast::<T>(), count) }
    }

    /// The job payload the leader wrote at publish: its start (64-byte
    /// aligned) and length. Parts of it may be shared state other participants
    /// change (a parallel scan's), so it is handed out raw; it stays mapped
    /// until the section ends.
    pub fn payload(&self) -> (NonNull<u8>, usize) {
        (self.payload, self.payload_len)
    }

    /// The section's segment: its size, and whether Postgres carved it out
    /// of the region reserved at start ([`reserve`]) rather than asking the
    /// operating system for it.
    pub fn segment(&self) -> (usize, bool) {
        // SAFETY: the segment is mapped until the section ends.
        let (size, handle) = unsafe {
            (
                pg_sys::dsm_segment_map_length(self.segment.as_ptr()),
                pg_sys::dsm_segment_handle(self.segment.as_ptr()),
            )
        };
        // dsm.c gives segments in the main region odd handles and the
        // operating system's even ones (Postgres 14 on), so that the two
        // never collide.
        (size, handle & 1 == 1)
    }

    /// A worker's end of the section: unmaps the segment. Everything using
    /// the mesh or the payload must be gone.
    pub fn leave(self) {
        // SAFETY: the mapping `join` attached; consuming the part ends its
        // users' borrowed view of it.
        unsafe { pg_sys::dsm_detach(self.segment.as_ptr()) };
    }
}

/// Types a job area may be viewed as (atomics: valid for any bits, shared
/// between processes).
///
/// # Safety
/// The type must be valid for every bit pattern, need alignment of at most
/// 8, and be safe to access concurrently from several processes.
pub unsafe trait AreaItem {}
// SAFETY: an AtomicU64 is valid for any bits, 8-aligned, made for sharing.
unsafe impl AreaItem for AtomicU64 {}

/// A section whose workers have been launched but wait for the leader to
/// [`publish`](Self::publish) the mesh and payload.
pub struct Launched {
    pcxt: *mut pg_sys::ParallelContext,
    control: NonNull<Control>,
    area: NonNull<u8>,
    area_len: usize,
    params: [u64; 4],
    launched: u32,
}

/// The leader's side of a running section.
pub struct Section {
    pcxt: *mut pg_sys::ParallelContext,
    part: Part,
    participants: u32,
}

impl Section {
    /// Enters parallel mode and launches up to `workers` workers for `job`,
    /// with a zeroed job area of `area` bytes. Fewer workers may start, or
    /// none: the section then has fewer participants (at least the leader).
    /// The workers wait until [`Launched::publish`].
    pub fn launch(job: Job, params: [u64; 4], workers: usize, area: usize) -> Launched {
        let workers = workers.min(MAX_WORKERS);
        let area_len = area.max(1);
        // SAFETY: the sequence parallel.c prescribes for a parallel
        // context, on the backend thread: enter parallel mode, create the
        // context, estimate, initialize the DSM, allocate and insert our
        // entries, launch.
        unsafe {
            pg_sys::EnterParallelMode();
            let pcxt = pg_sys::CreateParallelContext(c"weft".as_ptr(), c"weft_worker_main".as_ptr(), workers as i32);
            for len in [size_of::<Control>(), area_len] {
                estimate_chunk(pcxt, len);
            }
            (*pcxt).estimator.number_of_keys += 2;
            pg_sys::InitializeParallelDSM(pcxt);
            let toc = (*pcxt).toc;

            let control = pg_sys::shm_toc_allocate(toc, size_of::<Control>()).cast::<Control>();
            control.write(Control {
                magic: MAGIC,
                job: job as u32,
                requested: (*pcxt).nworkers as u32,
                launched: AtomicU32::new(UNKNOWN),
                segment: AtomicU32::new(0),
                generation: AtomicU64::new(0),
                mesh_len: AtomicU64::new(0),
                payload_len: AtomicU64::new(0),
                params,
                area_len,
                worker_tokens: [const { AtomicU64::new(0) }; MAX_WORKERS],
            });
            pg_sys::shm_toc_insert(toc, KEY_CONTROL, control.cast());
            let area_memory = pg_sys::shm_toc_allocate(toc, area_len);
            std::ptr::write_bytes(area_memory.cast::<u8>(), 0, area_len);
            pg_sys::shm_toc_insert(toc, KEY_AREA, area_memory);

            pg_sys::LaunchParallelWorkers(pcxt);
            Launched {
                pcxt,
                control: NonNull::new_unchecked(control),
                area: NonNull::new_unchecked(area_memory.cast()),
                area_len,
                params,
                launched: (*pcxt).nworkers_launched.max(0) as u32,
            }
        }
    }

    /// Participants: the leader and the workers that started.
    pub fn participants(&self) -> u32 {
        self.participants
    }

    /// The leader's part.
    pub fn part(&self) -> &Part {
        &self.part
    }

    /// The launched workers' handles, for watching them die.
    pub fn worker_handles(&self) -> Vec<*mut pg_sys::BackgroundWorkerHandle> {
        // SAFETY: the context's worker array has nworkers_launched valid
        // entries (the launched ones first).
        unsafe {
            (0..(*self.pcxt).nworkers_launched.max(0) as usize)
                .map(|i| (*(*self.pcxt).worker.add(i)).bgwhandle)
                .collect()
        }
    }

    /// Waits for every worker to finish (raising the first worker error, if
    /// any, as this backend's error), lets `read` look at the section's
    /// memory a last time, unmaps the segment, destroys the parallel
    /// context with its DSM, and leaves parallel mode. Call it once the
    /// leader's runtime has been torn down, outside any tokio frame.
    pub fn finish<R>(self, read: impl FnOnce(&Part) -> R) -> R {
        // SAFETY: the context is ours and alive; this is the prescribed end
        // of a parallel section. A worker error raised by
        // WaitForParallelWorkersToFinish unwinds past here, and the
        // transaction abort destroys the context (module docs).
        unsafe { pg_sys::WaitForParallelWorkersToFinish(self.pcxt) };
        let result = read(&self.part);
        // SAFETY: as above; nothing refers to the segment or the DSM any
        // more (the workers are gone, the leader's runtime torn down).
        unsafe {
            pg_sys::dsm_detach(self.part.segment.as_ptr());
            pg_sys::DestroyParallelContext(self.pcxt);
            pg_sys::ExitParallelMode();
        }
        result
    }
}

impl Launched {
    /// Participants: the leader and the workers that started.
    pub fn participants(&self) -> u32 {
        self.launched + 1
    }

    /// Creates the section's segment: a mesh of `exchanges` exchanges for
    /// the participants that exist, with rings of `rings.0` bytes (a power
    /// of two) halved until the mesh takes at most `rings.1` bytes, but
    /// not below [`guc::MIN_RING`](crate::guc::MIN_RING); then `payload`
    /// bytes that `fill` initializes (it gets their start, 64-aligned);
    /// then lets the workers go.
    ///
    /// The mesh has exchanges × participants² rings, so with many workers
    /// the rings shrink rather than the mesh grow as the square of them;
    /// each ring then carries a smaller share of its exchange's rows.
    pub fn publish(
        self,
        exchanges: u32,
        (ring, limit): (usize, usize),
        payload: usize,
        fill: impl FnOnce(NonNull<u8>),
    ) -> Section {
        let participants = self.participants();
        let min = crate::guc::MIN_RING.min(ring);
        let layout = MeshLayout::fit(participants, exchanges.max(1), limit, ring, min)
            // Past the limit even with the smallest rings: those, over it.
            .or_else(|_| MeshLayout::new(participants, exchanges.max(1), min))
            .unwrap_or_else(|e| pgrx::error!("weft: cannot lay out a mesh for {participants} participants: {e}"));
        let mesh_len = (layout.size() + REGION_ALIGN).next_multiple_of(PAYLOAD_ALIGN);
        let payload_len = payload.max(1);
        // SAFETY: on the backend thread; dsm_create raises an ERROR when
        // out of shared memory, and the segment is mapped (and owned by the
        // current resource owner) until `finish` or the transaction's end.
        let (segment, base) = unsafe {
            let segment = pg_sys::dsm_create(mesh_len + payload_len, 0);
            (segment, pg_sys::dsm_segment_address(segment))
        };
        // SAFETY: the segment is fresh and ours; the mesh takes its first
        // `mesh_len` bytes, the payload the aligned rest.
        let (mesh, payload_start) = unsafe {
            let region = mesh_region(base, mesh_len);
            let generation = generation();
            let mesh = Mesh::init(region, layout, generation)
                .unwrap_or_else(|e| pgrx::error!("weft: cannot initialize the mesh: {e}"));
            let control = self.control.as_ref();
            control.generation.store(generation, Ordering::Relaxed);
            (mesh, payload_at(base, mesh_len))
        };
        fill(payload_start);
        // SAFETY: the control block lives in the context's DSM until
        // `finish`; workers read these fields only after seeing `launched`.
        unsafe {
            let control = self.control.as_ref();
            control
                .segment
                .store(pg_sys::dsm_segment_handle(segment), Ordering::Relaxed);
            control.mesh_len.store(mesh_len as u64, Ordering::Relaxed);
            control.payload_len.store(payload_len as u64, Ordering::Relaxed);
            control.launched.store(self.launched, Ordering::SeqCst);
            for worker in 0..self.launched as usize {
                let token = control.worker_tokens[worker].load(Ordering::SeqCst);
                if token != 0 {
                    set_latch(token);
                }
            }
        }
        Section {
            pcxt: self.pcxt,
            part: Part {
                id: 0,
                mesh,
                params: self.params,
                area: self.area,
                area_len: self.area_len,
                payload: payload_start,
                payload_len,
                // SAFETY: dsm_create never returns null (it raises instead).
                segment: unsafe { NonNull::new_unchecked(segment) },
            },
            participants,
        }
    }
}

/// Adds `weft.shared_memory` to Postgres's `min_dynamic_shared_memory`,
/// the region it sets aside at start for DSM segments (module docs). Call
/// it from `_PG_init` in the postmaster, while shared_preload_libraries
/// load: after the configuration was read, before shared memory is sized.
/// The sum is what `SHOW min_dynamic_shared_memory` then reports.
pub fn reserve() {
    let ours = crate::guc::SHARED_MEMORY_MB.get();
    if ours == 0 {
        return;
    }
    // SAFETY: a plain int GUC variable, read on the postmaster's thread.
    let theirs = unsafe { pg_sys::min_dynamic_shared_memory };
    // The setting's own bound (megabytes, an int).
    let total = theirs.saturating_add(ours);
    let value = std::ffi::CString::new(total.to_string()).expect("digits have no NUL");
    // SAFETY: in the postmaster before shared memory exists, where a
    // postmaster setting may still be set; an invalid value raises an ERROR
    // (none is: the sum is within the setting's bounds).
    unsafe {
        pg_sys::SetConfigOption(
            c"min_dynamic_shared_memory".as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_POSTMASTER,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        )
    };
}

/// `shm_toc_estimate_chunk`, a macro in C.
///
/// # Safety
/// `pcxt` must be a live parallel context not yet initialized.
unsafe fn estimate_chunk(pcxt: *mut pg_sys::ParallelContext, len: usize) {
    let aligned = len.next_multiple_of(pg_sys::ALIGNOF_BUFFER as usize);
    // SAFETY: per the caller.
    unsafe { (*pcxt).estimator.space_for_chunks += aligned };
}

/// The mesh's region at the start of a section segment, aligned up to
/// REGION_ALIGN.
///
/// # Safety
/// `memory` must point to at least `len` bytes of a section segment, whose
/// first `len` bytes are used for nothing else, mapped until the section
/// ends.
unsafe fn mesh_region(memory: *mut c_void, len: usize) -> Region<'static> {
    let start = memory.cast::<u8>();
    let skip = start.align_offset(REGION_ALIGN);
    // SAFETY: per the caller, and `skip < REGION_ALIGN` bytes were added to
    // the mesh's length for this alignment. 'static stands for "until the
    // section ends": the participants' runtimes are torn down before it
    // does.
    unsafe { Region::new(NonNull::new_unchecked(start.add(skip)), len - skip) }
}

/// The payload's start in a section segment mapped at `memory`: right
/// after the mesh part, whose length is a multiple of PAYLOAD_ALIGN.
/// Every process maps the segment at its own address, so offsets must
/// not depend on it: segments are mapped page-aligned, which is checked.
///
/// # Safety
/// `memory` must be a section segment's mapping, `mesh_len` its mesh part.
unsafe fn payload_at(memory: *mut c_void, mesh_len: usize) -> NonNull<u8> {
    if !(memory as usize).is_multiple_of(REGION_ALIGN.max(PAYLOAD_ALIGN)) {
        pgrx::error!("weft: the parallel section's segment is mapped at an unaligned address");
    }
    // SAFETY: per the caller, the payload follows the mesh part.
    unsafe { NonNull::new_unchecked(memory.cast::<u8>().add(mesh_len)) }
}

/// A mesh generation unique to this launch: the pid and a counter.
fn generation() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    // SAFETY: MyProcPid is set for the backend's life.
    let pid = unsafe { pg_sys::MyProcPid } as u32;
    (u64::from(pid) << 32) | (COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
}

/// A worker's side: finds its entries, joins the launch handshake, maps the
/// section's segment, and returns its job and part.
///
/// # Safety
/// `toc` must be the table of contents Postgres passed to the worker entry.
pub unsafe fn join(toc: *mut pg_sys::shm_toc) -> (Job, Part) {
    // SAFETY: per the caller; lookups with noError = false raise an ERROR
    // for a missing key instead of returning null.
    let (control, area_memory) = unsafe {
        (
            pg_sys::shm_toc_lookup(toc, KEY_CONTROL, false).cast::<Control>(),
            pg_sys::shm_toc_lookup(toc, KEY_AREA, false),
        )
    };
    // SAFETY: the leader wrote the control block before launching us.
    let control = unsafe { &*control };
    if control.magic != MAGIC {
        pgrx::error!("weft: the parallel section's control block is corrupt");
    }
    let Some(job) = Job::from_u32(control.job) else {
        pgrx::error!("weft: unknown parallel job {}", control.job);
    };
    // SAFETY: set for every parallel worker before its entry point runs.
    let worker = unsafe { pg_sys::ParallelWorkerNumber };
    if worker < 0 || worker as u32 >= control.requested {
        pgrx::error!("weft: parallel worker number {worker} out of range");
    }
    control.worker_tokens[worker as usize].store(my_wake_token(), Ordering::SeqCst);
    let launched = loop {
        // SAFETY: our own latch, on the backend thread (latch protocol:
        // reset, check, wait).
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
        let launched = control.launched.load(Ordering::SeqCst);
        if launched != UNKNOWN {
            break launched;
        }
        let events = pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH;
        // SAFETY: as above; the timeout bounds a lost wakeup's cost.
        unsafe { pg_sys::WaitLatch(pg_sys::MyLatch, events as i32, 1000, pg_sys::PG_WAIT_EXTENSION) };
        pgrx::check_for_interrupts!();
    };
    if worker as u32 >= launched {
        pgrx::error!("weft: parallel worker {worker} started but the leader counts {launched}");
    }
    let generation = control.generation.load(Ordering::Relaxed);
    let mesh_len = control.mesh_len.load(Ordering::Relaxed) as usize;
    let payload_len = control.payload_len.load(Ordering::Relaxed) as usize;
    // SAFETY: the leader created the segment and published its handle; an
    // unknown handle makes dsm_attach return null.
    let segment = unsafe { pg_sys::dsm_attach(control.segment.load(Ordering::Relaxed)) };
    let Some(segment) = NonNull::new(segment) else {
        pgrx::error!("weft: cannot map the parallel section's segment");
    };
    // SAFETY: the segment is mapped; its size is what the leader created.
    let (base, size) = unsafe {
        (
            pg_sys::dsm_segment_address(segment.as_ptr()),
            pg_sys::dsm_segment_map_length(segment.as_ptr()),
        )
    };
    if mesh_len + payload_len > size {
        pgrx::error!("weft: the parallel section's segment is smaller than its control block says");
    }
    // SAFETY: the segment's mesh part, as the leader laid it out; attaching
    // validates the header it initialized.
    let region = unsafe { mesh_region(base, mesh_len) };
    let mesh = Mesh::attach(region, generation).unwrap_or_else(|e| pgrx::error!("weft: cannot attach the mesh: {e}"));
    let part = Part {
        id: worker as u32 + 1,
        mesh,
        params: control.params,
        // SAFETY: shm_toc_lookup never returns null with noError = false.
        area: unsafe { NonNull::new_unchecked(area_memory.cast()) },
        area_len: control.area_len,
        // SAFETY: checked against the mapping's size above.
        payload: unsafe { payload_at(base, mesh_len) },
        payload_len,
        segment,
    };
    (job, part)
}
