//! weft's settings (`weft.*`), defined once in `_PG_init`.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

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
