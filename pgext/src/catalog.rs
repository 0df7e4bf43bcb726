//! What weft asks of the catalog and the backend's state before it plans.

use pgrx::pg_sys;

/// Whether this database's encoding is UTF8 (weft reads text as UTF-8).
pub fn utf8_database() -> bool {
    // SAFETY: a plain query of the backend's state.
    unsafe { pg_sys::GetDatabaseEncoding() == pg_sys::pg_enc::PG_UTF8 as i32 }
}
