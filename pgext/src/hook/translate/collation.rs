//! What a collation means for the translation: whether DataFusion's byte
//! comparisons give Postgres's equality and order under it.

use pgrx::pg_sys::{self, Oid};

/// Whether equal strings under `collation` are equal bytes (every
/// collation but ICU's nondeterministic ones), so that DataFusion's
/// equality, grouping and hashing agree with Postgres's.
pub(super) fn deterministic(collation: Oid) -> bool {
    // SAFETY: a catalog lookup on the backend thread.
    collation == Oid::INVALID || unsafe { pg_sys::get_collation_isdeterministic(collation) }
}

/// Whether `collation` sorts text in byte order: Postgres's own answer,
/// which knows the database's default collation and its provider (an ICU
/// default is never C, whatever lc_collate says).
pub(super) fn collation_is_c(collation: Oid) -> bool {
    // SAFETY: a catalog lookup on the backend thread, guarded (it raises
    // for an unknown collation).
    collation != Oid::INVALID
        && unsafe { pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| locale::lc_collate_is_c(collation)) }
}

/// Postgres functions of pg_locale.h, which pgrx does not bind; call them
/// through `pg_guard_ffi_boundary`.
mod locale {
    use pgrx::pg_sys::Oid;

    unsafe extern "C-unwind" {
        /// Whether the collation compares as strcmp does.
        pub fn lc_collate_is_c(collation: Oid) -> bool;
    }
}
