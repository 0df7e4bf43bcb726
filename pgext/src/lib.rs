//! weft for PostgreSQL: runs analytic SQL across Postgres parallel
//! workers that exchange Arrow batches through weft-core's mesh in
//! dynamic shared memory, driven by weft-runtime.
//!
//! The folders follow a query's path, each layer importing only those
//! below it (`scripts/check-layers.py` enforces it):
//!
//! - [`sql`]: the functions a user calls by name (`weft.query`,
//!   `weft.explain`, `weft.mesh_bench`);
//! - [`hook`]: the planner hook that takes plain SQL over, its
//!   translation into DataFusion, and the Custom Scan that runs it;
//! - [`exec`]: running across processes: the parallel section, each
//!   participant's run, the runtime's platform in a backend;
//! - [`plan`]: weft's physical plan over heap tables: the table
//!   provider and scan node, join keys pushed into scans, index lookups,
//!   estimates and statistics;
//! - [`storage`]: heap pages, tuples, scan filters and btree leaves,
//!   read in Rust;
//!
//! and beneath them all: [`catalog`] (what weft asks of the catalog),
//! [`types`] (Postgres types as Arrow types, both
//! ways), [`nodes`] (reading parse nodes), [`pgcall`] (calling Postgres
//! from inside the runtime), [`error`] (weft's errors in Postgres's terms,
//! hand-backs to the stock plan among them) and [`guc`] (the `weft.*`
//! settings).

use pgrx::prelude::*;

pub mod catalog;
pub mod error;
pub mod exec;
pub mod guc;
pub mod hook;
pub mod nodes;
pub mod pgcall;
pub mod plan;
pub mod sql;
pub mod storage;
pub mod types;

::pgrx::pg_module_magic!();

/// Defines weft's settings. Runs in the postmaster when weft is in
/// shared_preload_libraries, and in every worker as it loads the leader's
/// libraries.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::define();
    hook::planner::install();
    // SAFETY: a plain global, read on the thread loading the library.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        // In the postmaster, whose backends and workers inherit its memory.
        exec::parallel::reserve();
        exec::run::warm_up();
    }
}

/// The entry point of weft's parallel workers, found by Postgres by name
/// (`CreateParallelContext("weft", "weft_worker_main", ..)`). It runs with
/// the leader's snapshot, transaction and settings.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn weft_worker_main(_seg: *mut pg_sys::dsm_segment, toc: *mut pg_sys::shm_toc) {
    // SAFETY: `toc` is the table of contents Postgres passes to a parallel
    // worker's entry point.
    let (job, part) = unsafe { exec::parallel::join(toc) };
    match job {
        exec::parallel::Job::MeshBench => sql::mesh_bench::worker(&part),
        exec::parallel::Job::Query => exec::run::worker(&part),
    }
    part.leave();
}
