//! weft's settings (`weft.*`), defined once in `_PG_init`.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `weft.enable`: whether the planner hook may take plain SQL over.
pub static ENABLE: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `weft.force`: take over every query weft can run, whatever its cost
/// and worker settings (for tests).
pub static FORCE: GucSetting<bool> = GucSetting::<bool>::new(false);

/// `weft.explain_fallback`: report why weft left a query to Postgres.
pub static EXPLAIN_FALLBACK: GucSetting<bool> = GucSetting::<bool>::new(false);

/// `weft.min_cost`: the stock plan's total cost from which weft takes a
/// query over.
pub static MIN_COST: GucSetting<f64> = GucSetting::<f64>::new(DEFAULT_MIN_COST);

/// `weft.min_cost`'s default, from `make bench-sql` at TPC-H SF1 here
/// (benches/README.md): of the queries whose stock plans cost less, weft
/// lost more than it won (index-driven joins and filters that Postgres
/// runs in well under half a second); above it, all but one gained.
pub const DEFAULT_MIN_COST: f64 = 200_000.0;

/// `weft.workers`: parallel workers per query besides the leader; -1
/// follows Postgres's `max_parallel_workers_per_gather`.
pub static WORKERS: GucSetting<i32> = GucSetting::<i32>::new(-1);

/// `weft.ring_size`: bytes of shared memory per ring (one ring per
/// exchange and ordered pair of participants), in kB.
pub static RING_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(1024);

/// `weft.test_fail_participant`: for tests only (superuser): the
/// participant that raises an ERROR mid-run; -1 for none.
pub static TEST_FAIL_PARTICIPANT: GucSetting<i32> = GucSetting::<i32>::new(-1);

/// Upper bound of `weft.workers` (and of any worker count weft accepts).
pub const MAX_WORKERS: i32 = 64;

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
        c"A query's mesh holds one ring per exchange and ordered pair of participants.",
        &RING_SIZE_KB,
        64,
        1024 * 1024,
        GucContext::Userset,
        GucFlags::UNIT_KB,
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

/// `weft.ring_size` in bytes.
pub fn ring_size() -> usize {
    RING_SIZE_KB.get() as usize * 1024
}
