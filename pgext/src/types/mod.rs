//! Postgres types as Arrow types, exactly, both ways: heap values into
//! Arrow builders for scans ([`ColumnReader`]), Arrow values into Datums
//! of a declared type for results ([`ColumnWriter`]).
//!
//! | Postgres | Arrow |
//! |---|---|
//! | bool | Boolean |
//! | int2, int4, int8 | Int16, Int32, Int64 |
//! | float4, float8 | Float32, Float64 (NaN and infinities kept) |
//! | numeric(p, s), p ≤ 38 | Decimal128(p, s) |
//! | numeric without (p, s), or wider | Binary: each value's image |
//! | text, varchar, name | Utf8 |
//! | bpchar | Utf8 without its trailing blanks (as Postgres casts bpchar to text) |
//! | date | Date32 |
//! | timestamp | Timestamp(µs) |
//! | timestamptz | Timestamp(µs, "UTC") |
//! | time | Time64(µs) |
//! | interval | Interval(MonthDayNano) |
//! | uuid | FixedSizeBinary(16) |
//! | bytea | Binary |
//! | oid | UInt32 |
//! | a domain | its base type's |
//! | any other type (enums, jsonb, arrays, inet, ranges, ...) | Binary: each value's image ([`Image`]) |
//!
//! Values Arrow cannot hold (infinite dates and timestamps, NaN in a
//! numeric column, text that is not UTF-8) are never made other values:
//! reading one hands the query back to Postgres ([`crate::error::Error::HandBack`]).
//! A numeric's display scale is its own, value by value, where its type
//! declares none: such a numeric is carried as its image, which keeps it
//! (a numeric constant, whose scale is known, reads as a Decimal128 at
//! that scale). Composite types (whose values may name a row type registered in
//! one backend only), pseudo-types and C strings are refused too.
//!
//! An image is opaque to DataFusion: only Postgres's own functions for
//! the type (through the function bridge, [`crate::plan::bridge`]) read
//! it, and the translation compares or hashes images only where the type's
//! btree opclass says equal values have equal images (`equalimage`).

mod key;
mod read;
mod write;

pub use key::numeric_key;
pub use read::{fixed_scalar, is_special, numeric_image, scalar, ColumnReader, Scalar};
pub use write::ColumnWriter;

use datafusion::arrow::datatypes::{DataType, IntervalUnit, TimeUnit};
use pgrx::pg_sys::{self, Oid};

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (Postgres's).
const EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Arrow's largest decimal precision (Decimal128).
const MAX_PRECISION: i32 = 38;
/// The timezone timestamptz values carry in Arrow.
pub const TIMESTAMPTZ_ZONE: &str = "UTC";

/// A Postgres column type weft reads; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgType {
    /// bool.
    Bool,
    /// int2.
    Int2,
    /// int4.
    Int4,
    /// int8.
    Int8,
    /// float4.
    Float4,
    /// float8.
    Float8,
    /// oid.
    Oid,
    /// numeric(precision, scale).
    Numeric {
        /// Declared precision (at most 38).
        precision: u8,
        /// Declared scale (negative scales round to tens, hundreds...).
        scale: i8,
    },
    /// text or varchar.
    Text,
    /// bpchar (char(n)).
    BpChar,
    /// name.
    Name,
    /// date.
    Date,
    /// timestamp without time zone.
    Timestamp,
    /// timestamp with time zone.
    TimestampTz,
    /// time without time zone.
    Time,
    /// interval.
    Interval,
    /// uuid.
    Uuid,
    /// bytea.
    Bytea,
    /// Any other type, as each value's image.
    Image(Image),
}

/// A value of a type DataFusion has no counterpart for, as the bytes
/// Postgres keeps of it: a varlena's data without its header (detoasted
/// and decompressed), a fixed-length value's `len` bytes, a by-value
/// datum's low `len` bytes (little-endian, as every platform weft builds
/// for stores them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Image {
    /// The type (never a domain: domains read as their base type).
    pub typid: Oid,
    /// `typlen`: bytes, or -1 for a varlena.
    pub len: i16,
    /// `typbyval` (then `len` is 1, 2, 4 or 8).
    pub byval: bool,
}

impl PgType {
    /// The type of a column of type `typid` with modifier `typmod`, or why
    /// weft cannot read it.
    pub fn of(typid: Oid, typmod: i32) -> Result<PgType, String> {
        Ok(match typid {
            pg_sys::BOOLOID => PgType::Bool,
            pg_sys::INT2OID => PgType::Int2,
            pg_sys::INT4OID => PgType::Int4,
            pg_sys::INT8OID => PgType::Int8,
            pg_sys::FLOAT4OID => PgType::Float4,
            pg_sys::FLOAT8OID => PgType::Float8,
            pg_sys::OIDOID => PgType::Oid,
            pg_sys::TEXTOID | pg_sys::VARCHAROID => PgType::Text,
            pg_sys::BPCHAROID => PgType::BpChar,
            pg_sys::NAMEOID => PgType::Name,
            pg_sys::DATEOID => PgType::Date,
            pg_sys::TIMESTAMPOID => PgType::Timestamp,
            pg_sys::TIMESTAMPTZOID => PgType::TimestampTz,
            pg_sys::TIMEOID => PgType::Time,
            pg_sys::INTERVALOID => PgType::Interval,
            pg_sys::UUIDOID => PgType::Uuid,
            pg_sys::BYTEAOID => PgType::Bytea,
            pg_sys::NUMERICOID => numeric_type(typmod)?,
            _ => return image_type(typid, typmod),
        })
    }

    /// The Arrow type holding this type's values.
    pub fn arrow(self) -> DataType {
        match self {
            PgType::Bool => DataType::Boolean,
            PgType::Int2 => DataType::Int16,
            PgType::Int4 => DataType::Int32,
            PgType::Int8 => DataType::Int64,
            PgType::Float4 => DataType::Float32,
            PgType::Float8 => DataType::Float64,
            PgType::Oid => DataType::UInt32,
            PgType::Numeric { precision, scale } => DataType::Decimal128(precision, scale),
            PgType::Text | PgType::BpChar | PgType::Name => DataType::Utf8,
            PgType::Date => DataType::Date32,
            PgType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PgType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some(TIMESTAMPTZ_ZONE.into())),
            PgType::Time => DataType::Time64(TimeUnit::Microsecond),
            PgType::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            PgType::Uuid => DataType::FixedSizeBinary(16),
            PgType::Bytea | PgType::Image(_) => DataType::Binary,
        }
    }
}

/// A type without an Arrow counterpart: a domain as its base type, any
/// other type Postgres passes whole as its image.
fn image_type(typid: Oid, typmod: i32) -> Result<PgType, String> {
    // A syscache lookup that answers None for a missing type rather than
    // raising an ERROR: this runs in DataFusion's planning too.
    // SAFETY: on the backend thread (every caller is); the entry is read
    // and released.
    let row = unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::TYPEOID as i32, pg_sys::Datum::from(typid));
        if tuple.is_null() {
            return Err(format!("type {typid:?} does not exist"));
        }
        let header = (*tuple).t_data;
        let form = &*header
            .cast::<u8>()
            .add(usize::from((*header).t_hoff))
            .cast::<pg_sys::FormData_pg_type>();
        let row = (
            form.typtype as u8,
            form.typbasetype,
            form.typtypmod,
            form.typlen,
            form.typbyval,
        );
        pg_sys::ReleaseSysCache(tuple);
        row
    };
    let (typtype, base, base_typmod, len, byval) = row;
    match typtype {
        pg_sys::TYPTYPE_DOMAIN => {
            // A domain's own typmod is -1; its base's is declared on it.
            let typmod = if typmod == -1 { base_typmod } else { typmod };
            PgType::of(base, typmod)
        }
        pg_sys::TYPTYPE_COMPOSITE => Err("a composite type's values may name a row type of one backend".into()),
        pg_sys::TYPTYPE_PSEUDO => Err("a pseudo-type has no values weft carries".into()),
        _ if len == -1 || (len > 0 && !byval) || (byval && matches!(len, 1 | 2 | 4 | 8)) => {
            Ok(PgType::Image(Image { typid, len, byval }))
        }
        _ => Err("weft does not carry C strings".into()),
    }
}

/// `typid` without its domains, and the typmod its values have.
///
/// # Safety
/// On the backend thread (reads the catalog; raises an ERROR for a type
/// that does not exist).
pub unsafe fn base_type(typid: Oid, typmod: i32) -> (Oid, i32) {
    let mut typmod = typmod;
    // SAFETY: per the caller.
    let base = unsafe { pg_sys::getBaseTypeAndTypmod(typid, &mut typmod) };
    (base, typmod)
}

/// numeric(p, s) as Decimal128(p, s) when Arrow can hold it; any other
/// numeric (without a declared precision and scale, or wider than 38
/// digits) as its image, whose display scale is each value's own.
fn numeric_type(typmod: i32) -> Result<PgType, String> {
    let header = pg_sys::VARHDRSZ as i32;
    let image = PgType::Image(Image {
        typid: pg_sys::NUMERICOID,
        len: -1,
        byval: false,
    });
    if typmod < header {
        return Ok(image);
    }
    let precision = ((typmod - header) >> 16) & 0xffff;
    // Postgres 15 packs the scale in 11 bits, signed.
    let scale = (((typmod - header) & 0x7ff) ^ 1024) - 1024;
    if precision > MAX_PRECISION || scale > precision || scale < -(i8::MAX as i32) {
        return Ok(image);
    }
    Ok(PgType::Numeric {
        precision: precision as u8,
        scale: scale as i8,
    })
}
