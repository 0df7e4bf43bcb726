//! [`HeapColumn`]: a column of a heap table as weft plans with it.

use pgrx::pg_sys;

use crate::types::PgType;

/// A column of a heap table.
#[derive(Clone, Debug)]
pub struct HeapColumn {
    /// Its attribute number (1-based).
    pub attnum: i16,
    /// Its name.
    pub name: String,
    /// Its type, as Postgres declares it.
    pub typid: pg_sys::Oid,
    /// Its type modifier (-1 for none).
    pub typmod: i32,
    /// Its type as weft reads it, or why weft cannot.
    pub ty: Result<PgType, String>,
    /// Whether it may hold NULLs (no NOT NULL constraint).
    pub nullable: bool,
    /// `format_type` of its type, for messages.
    pub type_name: String,
    /// Its distinct values in the whole table ([`crate::plan::stats`]).
    pub distinct: Option<f64>,
}
