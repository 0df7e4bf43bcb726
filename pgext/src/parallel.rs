//! A parallel section: the leader launches Postgres parallel workers into a
//! DSM segment holding weft's mesh, and every participant (the leader is
//! participant 0, worker i is participant i + 1) runs its part of a job.
//!
//! The DSM (from Postgres's ParallelContext, which also gives the workers
//! the leader's snapshot, transaction and settings, and brings their
//! errors back) holds three entries:
//!
//! - the [`Control`] block: the job, its parameters, and the launch
//!   handshake below;
//! - the mesh's memory, sized for every requested worker;
//! - a job area (the mesh benchmark's per-edge results, for instance).
//!
//! Launch handshake. The mesh's layout depends on how many workers
//! actually started, which the leader learns only after launching them, while
//! they may already be starting. So each worker publishes its wake token in
//! the control block and waits on its latch; the leader initializes the
//! mesh for the participants that exist, stores their count, and sets the
//! latch of every worker that published a token. Both sides store, then
//! load the other's word with SeqCst (the store-buffer pattern): a worker
//! that published too late for the leader's look is one that sees the count.
//!
//! Teardown. On success, [`Section::finish`] waits for the workers (so
//! that a late worker error is raised), destroys the context (the DSM
//! goes with it) and leaves parallel mode. On an error Postgres's
//! transaction abort does the same (it destroys every parallel context of
//! the transaction, terminating workers still running, and resets
//! parallel mode), so nothing here needs to run while Postgres unwinds.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pgrx::pg_sys;
use weft_core::{Mesh, MeshLayout, Region, REGION_ALIGN};

use crate::platform::{my_wake_token, set_latch};

/// toc keys of weft's entries ("weft" in the high bytes; Postgres's own
/// keys are near u64::MAX).
const KEY_CONTROL: u64 = 0x7765_6674_0000_0001;
const KEY_MESH: u64 = 0x7765_6674_0000_0002;
const KEY_AREA: u64 = 0x7765_6674_0000_0003;

/// The control block's first word, checked by workers.
const MAGIC: u64 = 0x7765_6674_6374_726c; // "weftctrl"

/// `Control::launched` before the leader knows how many workers started.
const UNKNOWN: u32 = u32::MAX;

/// The most workers a section can have (`weft.workers`' bound).
pub const MAX_WORKERS: usize = crate::guc::MAX_WORKERS as usize;

/// What the workers of a section run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Job {
    /// `weft.mesh_bench`: all-to-all traffic through the mesh.
    MeshBench = 1,
}

impl Job {
    fn from_u32(value: u32) -> Option<Job> {
        match value {
            1 => Some(Job::MeshBench),
            _ => None,
        }
    }
}

/// The control block in the DSM; see the module docs.
#[repr(C)]
pub struct Control {
    magic: u64,
    job: u32,
    /// Workers requested; the mesh's memory is sized for `requested + 1`.
    requested: u32,
    /// Workers that started (`UNKNOWN` until the leader knows). Stored
    /// last by the leader (SeqCst); everything below is valid once a
    /// worker sees it.
    launched: AtomicU32,
    /// The mesh's generation, which workers attach with.
    generation: AtomicU64,
    /// Job parameters, written before launch.
    params: [u64; 4],
    /// Bytes of the mesh's chunk and of the job area.
    mesh_len: usize,
    area_len: usize,
    /// Worker i's wake token, 0 until it published it.
    worker_tokens: [AtomicU64; MAX_WORKERS],
}

/// What a participant sees of its section: who it is, the mesh, the job's
/// parameters and area.
pub struct Part {
    /// This participant's number (0 = the leader).
    pub id: u32,
    /// The mesh, initialized for the participants that exist.
    pub mesh: Mesh<'static>,
    /// The job's parameters.
    pub params: [u64; 4],
    area: NonNull<u8>,
    area_len: usize,
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

/// The leader's side of a section.
pub struct Section {
    pcxt: *mut pg_sys::ParallelContext,
    part: Part,
    participants: u32,
}

impl Section {
    /// Enters parallel mode and launches up to `workers` workers for `job`,
    /// with a mesh of `exchanges` exchanges of `ring`-byte rings and a
    /// zeroed job area of `area` bytes. Fewer workers may start, or none:
    /// the section then has fewer participants (at least the leader).
    pub fn launch(job: Job, params: [u64; 4], workers: usize, exchanges: u32, ring: usize, area: usize) -> Section {
        let workers = workers.min(MAX_WORKERS);
        let most = MeshLayout::new(workers as u32 + 1, exchanges, ring)
            .unwrap_or_else(|e| pgrx::error!("weft: cannot lay out a mesh for {} participants: {e}", workers + 1));
        let mesh_len = most.size() + REGION_ALIGN;
        // SAFETY: the sequence parallel.c prescribes for a parallel
        // context, on the backend thread: enter parallel mode, create the
        // context, estimate, initialize the DSM, allocate and insert our
        // entries, launch.
        unsafe {
            pg_sys::EnterParallelMode();
            let pcxt = pg_sys::CreateParallelContext(c"weft".as_ptr(), c"weft_worker_main".as_ptr(), workers as i32);
            for len in [size_of::<Control>(), mesh_len, area.max(1)] {
                estimate_chunk(pcxt, len);
            }
            (*pcxt).estimator.number_of_keys += 3;
            pg_sys::InitializeParallelDSM(pcxt);
            let toc = (*pcxt).toc;

            let control = pg_sys::shm_toc_allocate(toc, size_of::<Control>()).cast::<Control>();
            control.write(Control {
                magic: MAGIC,
                job: job as u32,
                requested: (*pcxt).nworkers as u32,
                launched: AtomicU32::new(UNKNOWN),
                generation: AtomicU64::new(0),
                params,
                mesh_len,
                area_len: area.max(1),
                worker_tokens: [const { AtomicU64::new(0) }; MAX_WORKERS],
            });
            pg_sys::shm_toc_insert(toc, KEY_CONTROL, control.cast());
            let mesh_memory = pg_sys::shm_toc_allocate(toc, mesh_len);
            pg_sys::shm_toc_insert(toc, KEY_MESH, mesh_memory);
            let area_memory = pg_sys::shm_toc_allocate(toc, area.max(1));
            std::ptr::write_bytes(area_memory.cast::<u8>(), 0, area.max(1));
            pg_sys::shm_toc_insert(toc, KEY_AREA, area_memory);

            pg_sys::LaunchParallelWorkers(pcxt);
            let launched = (*pcxt).nworkers_launched.max(0) as u32;
            let participants = launched + 1;
            let layout = MeshLayout::new(participants, exchanges, ring)
                .unwrap_or_else(|e| pgrx::error!("weft: cannot lay out a mesh: {e}"));
            let generation = generation();
            let region = mesh_region(mesh_memory, mesh_len);
            let mesh = Mesh::init(region, layout, generation)
                .unwrap_or_else(|e| pgrx::error!("weft: cannot initialize the mesh: {e}"));
            (*control).generation.store(generation, Ordering::Relaxed);
            (*control).launched.store(launched, Ordering::SeqCst);
            for worker in 0..launched as usize {
                let token = (*control).worker_tokens[worker].load(Ordering::SeqCst);
                if token != 0 {
                    set_latch(token);
                }
            }
            Section {
                pcxt,
                part: Part {
                    id: 0,
                    mesh,
                    params,
                    area: NonNull::new_unchecked(area_memory.cast()),
                    area_len: area.max(1),
                },
                participants,
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
    /// memory a last time, destroys the parallel context with its DSM, and
    /// leaves parallel mode. Call it once the leader's runtime has been
    /// torn down, outside any tokio frame.
    pub fn finish<R>(self, read: impl FnOnce(&Part) -> R) -> R {
        // SAFETY: the context is ours and alive; this is the prescribed end
        // of a parallel section. A worker error raised by
        // WaitForParallelWorkersToFinish unwinds past here, and the
        // transaction abort destroys the context (module docs).
        unsafe { pg_sys::WaitForParallelWorkersToFinish(self.pcxt) };
        let result = read(&self.part);
        // SAFETY: as above; nothing refers to the DSM any more.
        unsafe {
            pg_sys::DestroyParallelContext(self.pcxt);
            pg_sys::ExitParallelMode();
        }
        result
    }
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

/// The mesh's region inside its DSM chunk, aligned up to REGION_ALIGN.
///
/// # Safety
/// `memory` must point to `len` bytes of the section's DSM, used for
/// nothing else, mapped until the section ends.
unsafe fn mesh_region(memory: *mut c_void, len: usize) -> Region<'static> {
    let start = memory.cast::<u8>();
    let skip = start.align_offset(REGION_ALIGN);
    // SAFETY: per the caller, and `skip < REGION_ALIGN` bytes were added to
    // the chunk for this alignment. 'static stands for "until the section
    // ends": the participants' runtimes are torn down before it does.
    unsafe { Region::new(NonNull::new_unchecked(start.add(skip)), len - skip) }
}

/// A mesh generation unique to this launch: the pid and a counter.
fn generation() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    // SAFETY: MyProcPid is set for the backend's life.
    let pid = unsafe { pg_sys::MyProcPid } as u32;
    (u64::from(pid) << 32) | (COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
}

/// A worker's side: finds its entries, joins the launch handshake, and
/// returns its job and part.
///
/// # Safety
/// `toc` must be the table of contents Postgres passed to the worker entry.
pub unsafe fn join(toc: *mut pg_sys::shm_toc) -> (Job, Part) {
    // SAFETY: per the caller; lookups with noError = false raise an ERROR
    // for a missing key instead of returning null.
    let (control, mesh_memory, area_memory) = unsafe {
        (
            pg_sys::shm_toc_lookup(toc, KEY_CONTROL, false).cast::<Control>(),
            pg_sys::shm_toc_lookup(toc, KEY_MESH, false),
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
    // SAFETY: the chunk the leader allocated for the mesh, of the length it
    // recorded; attaching validates the header it initialized.
    let region = unsafe { mesh_region(mesh_memory, control.mesh_len) };
    let mesh = Mesh::attach(region, generation).unwrap_or_else(|e| pgrx::error!("weft: cannot attach the mesh: {e}"));
    let part = Part {
        id: worker as u32 + 1,
        mesh,
        params: control.params,
        // SAFETY: shm_toc_lookup never returns null with noError = false.
        area: unsafe { NonNull::new_unchecked(area_memory.cast()) },
        area_len: control.area_len,
    };
    (job, part)
}
