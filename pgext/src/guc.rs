//! weft's settings (`weft.*`), defined once in `_PG_init`.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `weft.enable`: whether the planner hook may take plain SQL over.
pub static ENABLE: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `weft.force`: take over every query weft can run, whatever its cost
/// and worker settings (for tests).
pub static FORCE: GucSetting<bool> = GucSetting::<bool>::new(false);

/// `weft.function_bridge`: call Postgres functions DataFusion has no exact
/// counterpart for through Postgres itself in each participant
/// ([`crate::plan::bridge`]); off leaves queries using them to Postgres.
pub static FUNCTION_BRIDGE: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `weft.explain_fallback`: report why weft left a query to Postgres.
pub static EXPLAIN_FALLBACK: GucSetting<bool> = GucSetting::<bool>::new(false);

/// `weft.min_cost`: the stock plan's total cost from which weft takes a
/// query over.
pub static MIN_COST: GucSetting<f64> = GucSetting::<f64>::new(DEFAULT_MIN_COST);

/// `weft.min_cost`'s default: a stock plan this cheap finishes so soon
/// that weft's fixed cost per query (launching a worker, planning with
/// DataFusion) would eat most of any gain (measured: see
/// benches/README.md, 'TPC-H SF1 in plain SQL'). Every TPC-H query at SF1
/// costs more (the cheapest, Q16, about 39000).
pub const DEFAULT_MIN_COST: f64 = 30_000.0;

/// `weft.scan_cost_ratio`: how many times the cost of weft reading the
/// query's tables whole the stock plan must cost for weft to take it.
pub static SCAN_COST_RATIO: GucSetting<f64> = GucSetting::<f64>::new(DEFAULT_SCAN_COST_RATIO);

/// `weft.scan_cost_ratio`'s default, from TPC-H SF1: below every TPC-H
/// query's ratio, since the queries whose stock plans cost least beside
/// weft's reading of their tables (Q7, Q15, Q21) also gain under weft, so
/// the gate takes them (measured: see benches/README.md, 'TPC-H SF1 in
/// plain SQL').
pub const DEFAULT_SCAN_COST_RATIO: f64 = 0.6;

/// `weft.index_lookup_ratio`: how many rows a scan reads in the time an
/// index lookup finds a key; a hash join reads the table under its probe
/// side through a btree index on its key when its keys, at this many rows
/// each, and the rows they fetch are estimated at most the table's rows
/// ([`crate::plan::lookup`]); 0 never.
pub static INDEX_LOOKUP_RATIO: GucSetting<f64> = GucSetting::<f64>::new(DEFAULT_INDEX_LOOKUP_RATIO);

/// `weft.index_lookup_ratio`'s default: a btree lookup (a descent and a
/// heap fetch) costs about as much as scanning this many rows into a join
/// (measured: see benches/README.md, 'TPC-H SF1 in plain SQL').
pub const DEFAULT_INDEX_LOOKUP_RATIO: f64 = 32.0;

/// `weft.workers`: parallel workers per query besides the leader; -1
/// follows Postgres's `max_parallel_workers_per_gather`.
pub static WORKERS: GucSetting<i32> = GucSetting::<i32>::new(-1);

/// `weft.ring_size`: bytes of shared memory per ring (one ring per
/// exchange and ordered pair of participants), in kB.
pub static RING_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(1024);

/// `weft.max_mesh_size`: megabytes one query's mesh may take; rings
/// shrink to fit ([`mesh_rings`]).
pub static MAX_MESH_SIZE_MB: GucSetting<i32> = GucSetting::<i32>::new(64);

/// The smallest ring weft lays out (`weft.ring_size`'s lower bound), in
/// bytes.
pub const MIN_RING: usize = 64 * 1024;

/// `weft.shared_memory`: megabytes of shared memory the server reserves
/// at start for parallel sections' segments ([`crate::exec::parallel::reserve`]).
pub static SHARED_MEMORY_MB: GucSetting<i32> = GucSetting::<i32>::new(DEFAULT_SHARED_MEMORY_MB);

/// `weft.shared_memory`'s default: room for two queries' meshes at
/// `weft.max_mesh_size` at once (TPC-H Q2's, the largest, takes 44 MB with
/// one worker and 1 MB rings).
pub const DEFAULT_SHARED_MEMORY_MB: i32 = 128;

/// `weft.test_fail_participant`: for tests only (superuser): the
/// participant that raises an ERROR mid-run; -1 for none.
pub static TEST_FAIL_PARTICIPANT: GucSetting<i32> = GucSetting::<i32>::new(-1);

/// Upper bound of `weft.workers` (and of any worker count weft accepts).
pub const MAX_WORKERS: i32 = 64;

/// Upper bound of `weft.shared_memory` (1 TB).
pub const MAX_SHARED_MEMORY_MB: i32 = 1024 * 1024;

/// Registers the settings. Called from `_PG_init`, in the postmaster (via
/// shared_preload_libraries) or in a backend that loads weft late.
pub fn define() {
    GucRegistry::define_bool_guc(
        c"weft.enable",
        c"Lets weft run plain SQL queries across parallel workers.",
        c"When off, every query runs through the stock executor; weft.query still works.",
        &ENABLE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"weft.function_bridge",
        c"Lets weft call Postgres functions it has no exact DataFusion counterpart for through Postgres in each participant.",
        c"Only parallel-safe, non-volatile functions the user may execute, over types weft carries exactly; off leaves queries using other functions to Postgres.",
        &FUNCTION_BRIDGE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"weft.force",
        c"Lets weft take over every query it can run, whatever its cost (for tests).",
        c"Queries weft cannot run exactly as Postgres would still run through the stock executor.",
        &FORCE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"weft.explain_fallback",
        c"Reports why weft leaves a query to the stock executor.",
        c"EXPLAIN then ends with a line \"Weft: not used: <reason>\" (a NOTICE in formats other than text).",
        &EXPLAIN_FALLBACK,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"weft.min_cost",
        c"Stock plan cost from which weft takes a query over.",
        c"Cheaper queries run through the stock executor, where starting workers would cost more than it saves.",
        &MIN_COST,
        0.0,
        f64::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"weft.scan_cost_ratio",
        c"How many times the cost of weft reading a query's tables whole its stock plan must cost.",
        c"weft reads every table a query uses whole; a stock plan not much dearer than that (index lookups) stays with Postgres.",
        &SCAN_COST_RATIO,
        0.0,
        1.0e6,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"weft.index_lookup_ratio",
        c"How many rows a scan reads in the time an index lookup finds a key.",
        c"A join whose probe side reads a table with a btree index on the join key looks the build side's keys up in it when the keys, counted at this many rows each, and the rows they fetch are estimated at most the table's rows. 0 turns lookups off.",
        &INDEX_LOOKUP_RATIO,
        0.0,
        1.0e6,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"weft.workers",
        c"Parallel workers weft uses per query, besides the leader.",
        c"-1 uses max_parallel_workers_per_gather. Fewer may start (max_worker_processes, max_parallel_workers); weft then runs with those that did.",
        &WORKERS,
        -1,
        MAX_WORKERS,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"weft.ring_size",
        c"Shared memory per ring between two participants.",
        c"A query's mesh holds one ring per exchange and ordered pair of participants. Rounded down to a power of two; smaller with many workers (weft.max_mesh_size).",
        &RING_SIZE_KB,
        64,
        1024 * 1024,
        GucContext::Userset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"weft.max_mesh_size",
        c"Shared memory one query's mesh may take.",
        c"A mesh has a ring per exchange and ordered pair of participants: with many workers, rings shrink from weft.ring_size (halving, down to 64kB) until the mesh fits.",
        &MAX_MESH_SIZE_MB,
        1,
        MAX_SHARED_MEMORY_MB,
        GucContext::Userset,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_int_guc(
        c"weft.shared_memory",
        c"Shared memory reserved at server start for weft's queries.",
        c"Added to min_dynamic_shared_memory when weft is in shared_preload_libraries: a query's mesh is then carved out of memory every process has mapped, instead of being allocated and zeroed by the operating system for each query. 0 reserves none.",
        &SHARED_MEMORY_MB,
        0,
        MAX_SHARED_MEMORY_MB,
        GucContext::Postmaster,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_int_guc(
        c"weft.test_fail_participant",
        c"For tests: the participant (0 = leader) that raises an ERROR mid-run.",
        c"-1 (the default) for none.",
        &TEST_FAIL_PARTICIPANT,
        -1,
        MAX_WORKERS,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// The worker count for a query: `weft.workers`, or Postgres's
/// max_parallel_workers_per_gather when that is -1.
pub fn workers() -> i32 {
    match WORKERS.get() {
        // SAFETY: a plain int GUC variable of Postgres, read on the backend
        // thread.
        -1 => unsafe { pgrx::pg_sys::max_parallel_workers_per_gather }.clamp(0, MAX_WORKERS),
        n => n,
    }
}

/// The largest ring and the most a mesh may take, in bytes: `weft.ring_size`
/// (rounded down to a power of two, as rings are) and `weft.max_mesh_size`.
pub fn mesh_rings() -> (usize, usize) {
    let ring = RING_SIZE_KB.get() as usize * 1024;
    let largest = 1 << ring.max(MIN_RING).ilog2();
    (largest, MAX_MESH_SIZE_MB.get() as usize * 1024 * 1024)
}
