//! weft for PostgreSQL: runs work across Postgres parallel workers that
//! exchange Arrow batches through weft-core's mesh in dynamic shared
//! memory, driven by weft-runtime.
//!
//! - [`guc`]: the `weft.*` settings;
//! - [`parallel`]: parallel sections (the DSM, the launch handshake, the
//!   worker entry point's side) and their teardown;
//! - [`platform`]: the runtime's platform in a backend (latches,
//!   interrupts, dead workers);
//! - [`participate`]: running one participant with interrupts held;
//! - [`pgcall`]: calling Postgres from inside the runtime;
//! - [`types`]: Postgres types as Arrow types, both ways;
//! - [`heap`]: heap tables as DataFusion sources, one parallel scan shared
//!   by all participants; [`page`]: their pages read as Postgres reads
//!   them, with one buffer lookup; [`deform`]: their tuples read in Rust,
//!   a page at a time; [`filter`]: the query's filters evaluated on those tuples
//!   in place, before anything is converted; [`keys`]: a hash join's
//!   build keys handed to the scan under its probe side; [`lookup`]: or
//!   looked up by it in a btree index, whose leaves [`btree`] walks;
//! - [`stats`]: what pg_statistic says of the columns, for estimates;
//! - [`query`]: `weft.query` and `weft.explain`, DataFusion SQL over this
//!   database's tables; [`sql_order`]: their joins in the order of
//!   Postgres's plan of the same SQL;
//! - [`translate`]: analyzed Postgres Queries as DataFusion plans, from
//!   an allowlist of exact operators and functions;
//! - [`planner`] and [`scan`]: the planner hook that hands plain SQL to
//!   weft, and the Custom Scan (Weft) that runs it; [`handback`]: queries
//!   it hands back to the stock plan while they run;
//! - [`mesh_bench`]: `weft.mesh_bench`, the transport's check in real
//!   Postgres.

use pgrx::prelude::*;

pub mod btree;
pub mod deform;
pub mod filter;
pub mod guc;
pub mod handback;
pub mod heap;
pub mod keys;
pub mod lookup;
pub mod mesh_bench;
pub mod page;
pub mod parallel;
pub mod participate;
pub mod pgcall;
pub mod planner;
pub mod platform;
pub mod query;
pub mod scan;
pub mod sql_order;
pub mod stats;
pub mod translate;
pub mod types;

::pgrx::pg_module_magic!();

/// Defines weft's settings. Runs in the postmaster when weft is in
/// shared_preload_libraries, and in every worker as it loads the leader's
/// libraries.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::define();
    planner::install();
    // SAFETY: a plain global, read on the thread loading the library.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        // In the postmaster, whose backends and workers inherit its memory.
        parallel::reserve();
        query::warm_up();
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
    let (job, part) = unsafe { parallel::join(toc) };
    match job {
        parallel::Job::MeshBench => mesh_bench::worker(&part),
        parallel::Job::Query => query::worker(&part),
    }
    part.leave();
}
