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
//!
//! Values Arrow cannot hold (infinite dates and timestamps, NaN in a
//! numeric column) are errors, never other values. numeric without a
//! declared precision and scale has no exact Arrow type and is refused.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, FixedSizeBinaryBuilder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, IntervalMonthDayNanoBuilder,
    StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder, UInt32Builder,
};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit, Time64MicrosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use pgrx::pg_sys::{self, Datum, Oid};

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
            _ => return Err("weft has no exact Arrow type for it".into()),
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
            PgType::Bytea => DataType::Binary,
        }
    }
}

/// numeric(p, s) as Decimal128(p, s), when Arrow can hold it.
fn numeric_type(typmod: i32) -> Result<PgType, String> {
    let header = pg_sys::VARHDRSZ as i32;
    if typmod < header {
        return Err(
            "numeric without a declared precision and scale has no exact Arrow type; \
                    declare the column numeric(p, s) with p <= 38, or cast it"
                .into(),
        );
    }
    let precision = ((typmod - header) >> 16) & 0xffff;
    // Postgres 15 packs the scale in 11 bits, signed.
    let scale = (((typmod - header) & 0x7ff) ^ 1024) - 1024;
    if precision > MAX_PRECISION {
        return Err(format!(
            "numeric({precision},{scale}) is wider than Arrow's Decimal128 (at most 38 digits)"
        ));
    }
    if scale > precision || scale < -(i8::MAX as i32) {
        return Err(format!("numeric({precision},{scale}) has no Decimal128 counterpart"));
    }
    Ok(PgType::Numeric {
        precision: precision as u8,
        scale: scale as i8,
    })
}

/// Reads one column of heap tuples into an Arrow array.
pub struct ColumnReader {
    ty: PgType,
    builder: Builder,
}

enum Builder {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    UInt32(UInt32Builder),
    Decimal(Decimal128Builder),
    Utf8(StringBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
    Interval(IntervalMonthDayNanoBuilder),
    Uuid(FixedSizeBinaryBuilder),
    Binary(BinaryBuilder),
}

impl ColumnReader {
    /// A reader of `ty` values, sized for `rows` per batch.
    pub fn new(ty: PgType, rows: usize) -> ColumnReader {
        let builder = match ty {
            PgType::Bool => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            PgType::Int2 => Builder::Int16(Int16Builder::with_capacity(rows)),
            PgType::Int4 => Builder::Int32(Int32Builder::with_capacity(rows)),
            PgType::Int8 => Builder::Int64(Int64Builder::with_capacity(rows)),
            PgType::Float4 => Builder::Float32(Float32Builder::with_capacity(rows)),
            PgType::Float8 => Builder::Float64(Float64Builder::with_capacity(rows)),
            PgType::Oid => Builder::UInt32(UInt32Builder::with_capacity(rows)),
            PgType::Numeric { .. } => Builder::Decimal(Decimal128Builder::with_capacity(rows)),
            PgType::Text | PgType::BpChar | PgType::Name => {
                Builder::Utf8(StringBuilder::with_capacity(rows, rows * 16))
            }
            PgType::Date => Builder::Date(Date32Builder::with_capacity(rows)),
            PgType::Timestamp | PgType::TimestampTz => {
                Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(rows))
            }
            PgType::Time => Builder::Time(Time64MicrosecondBuilder::with_capacity(rows)),
            PgType::Interval => Builder::Interval(IntervalMonthDayNanoBuilder::with_capacity(rows)),
            PgType::Uuid => Builder::Uuid(FixedSizeBinaryBuilder::with_capacity(rows, 16)),
            PgType::Bytea => Builder::Binary(BinaryBuilder::with_capacity(rows, rows * 16)),
        };
        ColumnReader { ty, builder }
    }

    /// Appends one value (`null`, or `datum` of this reader's type).
    ///
    /// # Safety
    /// `datum` must be a valid, non-null value of this column's Postgres
    /// type (detoasting happens here, in the current memory context), on
    /// the backend thread.
    pub unsafe fn push(&mut self, datum: Datum, null: bool) -> Result<(), String> {
        if null {
            self.push_null();
            return Ok(());
        }
        let value = datum.value();
        match &mut self.builder {
            Builder::Bool(b) => b.append_value(value != 0),
            Builder::Int16(b) => b.append_value(value as i16),
            Builder::Int32(b) => b.append_value(value as i32),
            Builder::Int64(b) => b.append_value(value as i64),
            Builder::Float32(b) => b.append_value(f32::from_bits(value as u32)),
            Builder::Float64(b) => b.append_value(f64::from_bits(value as u64)),
            Builder::UInt32(b) => b.append_value(value as u32),
            Builder::Decimal(b) => {
                let PgType::Numeric { scale, .. } = self.ty else {
                    unreachable!("decimal builders read numerics")
                };
                // SAFETY: per the caller, a numeric datum.
                let bytes = unsafe { varlena_bytes(datum) };
                b.append_value(numeric_to_i128(bytes, scale)?);
            }
            Builder::Utf8(b) => {
                let bytes = match self.ty {
                    // SAFETY: a name is a NUL-terminated NameData.
                    PgType::Name => unsafe { std::ffi::CStr::from_ptr(datum.cast_mut_ptr()).to_bytes() },
                    // SAFETY: per the caller, a text-like varlena.
                    PgType::BpChar => trim_blanks(unsafe { varlena_bytes(datum) }),
                    // SAFETY: as above.
                    _ => unsafe { varlena_bytes(datum) },
                };
                let text = std::str::from_utf8(bytes).map_err(|e| format!("invalid UTF-8 in a text value: {e}"))?;
                b.append_value(text);
            }
            Builder::Date(b) => b.append_value(date_to_arrow(value as i32)?),
            Builder::Timestamp(b) => b.append_value(timestamp_to_arrow(value as i64)?),
            Builder::Time(b) => b.append_value(value as i64),
            Builder::Interval(b) => {
                // SAFETY: per the caller, an Interval by reference.
                let interval = unsafe { &*datum.cast_mut_ptr::<pg_sys::Interval>() };
                let nanoseconds = interval
                    .time
                    .checked_mul(1000)
                    .ok_or("an interval's time part is too large for Arrow's nanoseconds")?;
                b.append_value(IntervalMonthDayNano::new(interval.month, interval.day, nanoseconds));
            }
            Builder::Uuid(b) => {
                // SAFETY: per the caller, a pg_uuid_t (16 bytes) by reference.
                let bytes = unsafe { std::slice::from_raw_parts(datum.cast_mut_ptr::<u8>(), 16) };
                b.append_value(bytes).map_err(|e| e.to_string())?;
            }
            Builder::Binary(b) => {
                // SAFETY: per the caller, a bytea.
                b.append_value(unsafe { varlena_bytes(datum) });
            }
        }
        Ok(())
    }

    fn push_null(&mut self) {
        match &mut self.builder {
            Builder::Bool(b) => b.append_null(),
            Builder::Int16(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::UInt32(b) => b.append_null(),
            Builder::Decimal(b) => b.append_null(),
            Builder::Utf8(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
            Builder::Interval(b) => b.append_null(),
            Builder::Uuid(b) => b.append_null(),
            Builder::Binary(b) => b.append_null(),
        }
    }

    /// The values pushed since the last call, as an array of
    /// [`PgType::arrow`]'s type.
    pub fn finish(&mut self) -> Result<ArrayRef, String> {
        let array: ArrayRef = match &mut self.builder {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Int16(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::UInt32(b) => Arc::new(b.finish()),
            Builder::Decimal(b) => {
                let PgType::Numeric { precision, scale } = self.ty else {
                    unreachable!("decimal builders read numerics")
                };
                Arc::new(
                    b.finish()
                        .with_precision_and_scale(precision, scale)
                        .map_err(|e| e.to_string())?,
                )
            }
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => {
                let array = b.finish();
                if self.ty == PgType::TimestampTz {
                    Arc::new(array.with_timezone(TIMESTAMPTZ_ZONE))
                } else {
                    Arc::new(array)
                }
            }
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Interval(b) => Arc::new(b.finish()),
            Builder::Uuid(b) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
        };
        Ok(array)
    }
}

/// A varlena datum's bytes, detoasted (into the current memory context)
/// when compressed or stored out of line.
///
/// # Safety
/// `datum` must be a valid varlena datum, on the backend thread; the bytes
/// live until the current memory context is reset or the tuple goes.
unsafe fn varlena_bytes<'a>(datum: Datum) -> &'a [u8] {
    // SAFETY: per the caller. Only a compressed or out-of-line value needs
    // Postgres (pg_detoast_datum_packed); an inline one, with a short
    // header or not, is read in place, which saves a guarded call per
    // value.
    unsafe {
        let mut value: *mut pg_sys::varlena = datum.cast_mut_ptr();
        if pgrx::varlena::varatt_is_1b_e(value) || pgrx::varlena::varatt_is_4b_c(value) {
            value = pg_sys::pg_detoast_datum_packed(value);
        }
        let len = pgrx::varlena::varsize_any_exhdr(value);
        std::slice::from_raw_parts(pgrx::varlena::vardata_any(value).cast::<u8>(), len)
    }
}

/// A bpchar's value without its padding (as `bpchar::text` gives it).
fn trim_blanks(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    &bytes[..end]
}

/// A Postgres date as Arrow's days since 1970.
fn date_to_arrow(days: i32) -> Result<i32, String> {
    if days == i32::MIN || days == i32::MAX {
        return Err("date infinity has no Arrow value".into());
    }
    days.checked_add(EPOCH_DAYS)
        .ok_or_else(|| "a date beyond Arrow's Date32 range".into())
}

/// A Postgres timestamp as Arrow's microseconds since 1970.
fn timestamp_to_arrow(micros: i64) -> Result<i64, String> {
    if micros == i64::MIN || micros == i64::MAX {
        return Err("timestamp infinity has no Arrow value".into());
    }
    micros
        .checked_add(EPOCH_MICROS)
        .ok_or_else(|| "a timestamp beyond Arrow's range".into())
}

/// A numeric's value scaled by 10^`scale`, exactly, from its on-disk form
/// (numeric.c's `NumericData` after the varlena header): a 16-bit header,
/// then, in the long format, a 16-bit weight, then base-10000 digits, the
/// first of weight `weight` (value = sum of digit[i] * 10000^(weight - i)).
/// The short format packs sign, display scale and a 6-bit weight into the
/// header; special values (NaN, infinities) have the top two bits set.
fn numeric_to_i128(bytes: &[u8], scale: i8) -> Result<i128, String> {
    const SIGN_MASK: u16 = 0xC000;
    const NEGATIVE: u16 = 0x4000;
    const SHORT: u16 = 0x8000;
    const SPECIAL: u16 = 0xC000;
    const SHORT_NEGATIVE: u16 = 0x2000;
    const SHORT_WEIGHT_SIGN: u16 = 0x0040;
    const SHORT_WEIGHT: u16 = 0x003F;

    let word = |at: usize| -> Result<u16, String> {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
            .ok_or_else(|| "a corrupt numeric value".to_string())
    };
    let header = word(0)?;
    let (negative, weight, digits_at) = match header & SIGN_MASK {
        SPECIAL => {
            return Err(match header & 0xF000 {
                0xC000 => "numeric NaN has no Decimal128 value".into(),
                _ => "numeric infinity has no Decimal128 value".into(),
            })
        }
        SHORT => {
            let mut weight = i32::from(header & SHORT_WEIGHT);
            if header & SHORT_WEIGHT_SIGN != 0 {
                weight -= 64;
            }
            (header & SHORT_NEGATIVE != 0, weight, 2)
        }
        sign => (sign == NEGATIVE, i32::from(word(2)? as i16), 4),
    };
    let digits = (bytes.len() - digits_at) / 2;
    let overflow = || format!("a numeric value too large for Decimal128 at scale {scale}");
    let too_fine = || format!("a numeric value with more than {scale} decimal digits");
    let pow10 = |e: i32| 10i128.checked_pow(e as u32).ok_or_else(overflow);
    // Digit i counts units of 10^unit in the scaled value; `acc` counts
    // units of 10^last.
    let (mut acc, mut last) = (0i128, 0i32);
    for i in 0..digits {
        let digit = i128::from(word(digits_at + 2 * i)?);
        if digit >= 10_000 {
            return Err("a corrupt numeric value".into());
        }
        let unit = 4 * (weight - i as i32) + i32::from(scale);
        let (shift, add) = if unit >= 0 {
            (4, digit)
        } else if unit > -4 {
            // Straddles the last kept decimal: its low digits must be 0.
            let divisor = pow10(-unit)?;
            if digit % divisor != 0 {
                return Err(too_fine());
            }
            (4 + unit, digit / divisor)
        } else if digit != 0 {
            return Err(too_fine());
        } else {
            continue;
        };
        acc = acc
            .checked_mul(pow10(shift)?)
            .and_then(|a| a.checked_add(add))
            .ok_or_else(overflow)?;
        last = unit.max(0);
    }
    let scaled = acc.checked_mul(pow10(last)?).ok_or_else(overflow)?;
    Ok(if negative { -scaled } else { scaled })
}

/// Writes one result column's Arrow values as Datums of the type the
/// caller declared.
pub struct ColumnWriter {
    /// The declared type and modifier.
    typid: Oid,
    typmod: i32,
    how: Write,
    /// The type's input function, for values that go through text.
    input: pg_sys::FmgrInfo,
    ioparam: Oid,
}

/// How an Arrow type becomes a declared type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Write {
    Bool,
    /// An integer array into int2/int4/int8, range-checked.
    Int,
    Float4,
    Float8,
    Oid,
    /// Any value through its text form and the type's input function
    /// (numeric scale rounding, bpchar padding, varchar length checks are
    /// then Postgres's own).
    Text,
    Date,
    Timestamp,
    Time,
    Interval,
    Uuid,
    Bytea,
}

impl ColumnWriter {
    /// A writer of `arrow` values into `typid(typmod)`; None when Postgres
    /// has no cast that fits (the caller names the column).
    ///
    /// # Safety
    /// On the backend thread (looks the type's input function up).
    pub unsafe fn new(arrow: &DataType, typid: Oid, typmod: i32) -> Option<ColumnWriter> {
        use DataType as A;
        let int = arrow.is_integer();
        let decimal = matches!(arrow, A::Decimal128(..) | A::Decimal256(..));
        let float = matches!(arrow, A::Float32 | A::Float64);
        let string = matches!(arrow, A::Utf8 | A::LargeUtf8 | A::Utf8View);
        let how = match typid {
            pg_sys::BOOLOID if *arrow == A::Boolean => Write::Bool,
            pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID if int => Write::Int,
            pg_sys::FLOAT4OID if *arrow == A::Float32 => Write::Float4,
            pg_sys::FLOAT8OID if float => Write::Float8,
            pg_sys::FLOAT4OID | pg_sys::FLOAT8OID if int || decimal => Write::Text,
            pg_sys::NUMERICOID if int || decimal || float => Write::Text,
            pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID | pg_sys::NAMEOID if string => Write::Text,
            pg_sys::OIDOID if *arrow == A::UInt32 => Write::Oid,
            pg_sys::DATEOID if *arrow == A::Date32 => Write::Date,
            pg_sys::TIMESTAMPOID if matches!(arrow, A::Timestamp(_, None)) => Write::Timestamp,
            pg_sys::TIMESTAMPTZOID if matches!(arrow, A::Timestamp(_, Some(_))) => Write::Timestamp,
            pg_sys::TIMEOID if *arrow == A::Time64(TimeUnit::Microsecond) => Write::Time,
            pg_sys::INTERVALOID if *arrow == A::Interval(IntervalUnit::MonthDayNano) => Write::Interval,
            pg_sys::UUIDOID if *arrow == A::FixedSizeBinary(16) => Write::Uuid,
            pg_sys::BYTEAOID if matches!(arrow, A::Binary | A::LargeBinary | A::BinaryView) => Write::Bytea,
            _ => return None,
        };
        let mut input_fn = Oid::INVALID;
        let mut ioparam = Oid::INVALID;
        // SAFETY: per the caller; a zeroed FmgrInfo is what fmgr_info fills.
        let mut input: pg_sys::FmgrInfo = unsafe { std::mem::zeroed() };
        if how == Write::Text {
            // SAFETY: per the caller; the type exists (it was declared).
            unsafe {
                pg_sys::getTypeInputInfo(typid, &mut input_fn, &mut ioparam);
                pg_sys::fmgr_info(input_fn, &mut input);
            }
        }
        Some(ColumnWriter {
            typid,
            typmod,
            how,
            input,
            ioparam,
        })
    }

    /// Row `row` of `array` as a Datum (allocated in the current memory
    /// context), or None for NULL. Values out of the declared type's range
    /// raise Postgres's errors.
    ///
    /// # Safety
    /// `array` must be of the Arrow type this writer was made for; on the
    /// backend thread, outside tokio frames (this may raise an ERROR).
    pub unsafe fn datum(&mut self, array: &dyn Array, row: usize) -> Option<Datum> {
        if array.is_null(row) {
            return None;
        }
        Some(match self.how {
            Write::Bool => Datum::from(array.as_boolean().value(row)),
            Write::Int => {
                let value = int_value(array, row);
                match self.typid {
                    pg_sys::INT2OID => {
                        Datum::from(i16::try_from(value).unwrap_or_else(|_| out_of_range("smallint out of range")))
                    }
                    pg_sys::INT4OID => {
                        Datum::from(i32::try_from(value).unwrap_or_else(|_| out_of_range("integer out of range")))
                    }
                    _ => Datum::from(i64::try_from(value).unwrap_or_else(|_| out_of_range("bigint out of range"))),
                }
            }
            Write::Float4 => Datum::from(array.as_primitive::<Float32Type>().value(row).to_bits()),
            Write::Float8 => {
                let value = match array.data_type() {
                    DataType::Float32 => f64::from(array.as_primitive::<Float32Type>().value(row)),
                    _ => array.as_primitive::<Float64Type>().value(row),
                };
                Datum::from(value.to_bits())
            }
            Write::Oid => Datum::from(array.as_primitive::<UInt32Type>().value(row)),
            Write::Date => {
                let days = array.as_primitive::<Date32Type>().value(row);
                Datum::from(
                    days.checked_sub(EPOCH_DAYS)
                        .unwrap_or_else(|| out_of_range("date out of range")),
                )
            }
            Write::Timestamp => {
                let micros = timestamp_micros(array, row);
                Datum::from(
                    micros
                        .checked_sub(EPOCH_MICROS)
                        .filter(|m| *m != i64::MIN && *m != i64::MAX)
                        .unwrap_or_else(|| out_of_range("timestamp out of range")),
                )
            }
            Write::Time => Datum::from(array.as_primitive::<Time64MicrosecondType>().value(row)),
            Write::Interval => {
                let value = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
                // Postgres keeps microseconds; it rounds finer input the
                // same way (half away from zero).
                let micros = (value.nanoseconds as f64 / 1000.0).round() as i64;
                // SAFETY: palloc in the current context, on the backend
                // thread; the Interval is fully written.
                unsafe {
                    let interval = pg_sys::palloc(size_of::<pg_sys::Interval>()).cast::<pg_sys::Interval>();
                    interval.write(pg_sys::Interval {
                        time: micros,
                        day: value.days,
                        month: value.months,
                    });
                    Datum::from(interval)
                }
            }
            Write::Uuid => {
                let bytes = array.as_fixed_size_binary().value(row);
                // SAFETY: as above; 16 bytes written.
                unsafe {
                    let uuid = pg_sys::palloc(16).cast::<u8>();
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), uuid, 16);
                    Datum::from(uuid)
                }
            }
            Write::Bytea => {
                let bytes = match array.data_type() {
                    DataType::LargeBinary => array.as_binary::<i64>().value(row),
                    DataType::BinaryView => array.as_binary_view().value(row),
                    _ => array.as_binary::<i32>().value(row),
                };
                Datum::from(pgrx::varlena::rust_byte_slice_to_bytea(bytes).into_pg())
            }
            Write::Text => {
                let text = text_value(array, row);
                let text = std::ffi::CString::new(text)
                    .unwrap_or_else(|_| pgrx::error!("weft: a result string contains a NUL byte"));
                // SAFETY: per the caller; the input function raises
                // Postgres's own error for a value the type rejects.
                unsafe {
                    pg_sys::InputFunctionCall(&mut self.input, text.as_ptr().cast_mut(), self.ioparam, self.typmod)
                }
            }
        })
    }
}

/// Raises Postgres's numeric-value-out-of-range error.
fn out_of_range(message: &str) -> ! {
    pgrx::ereport!(ERROR, pgrx::PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, message);
}

/// An integer array's value as i128.
fn int_value(array: &dyn Array, row: usize) -> i128 {
    match array.data_type() {
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
        other => unreachable!("{other} is not an integer type"),
    }
}

/// A timestamp array's value in microseconds since 1970 (finer units
/// rounded half away from zero, as Postgres rounds).
fn timestamp_micros(array: &dyn Array, row: usize) -> i64 {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => array
            .as_primitive::<TimestampSecondType>()
            .value(row)
            .saturating_mul(1_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<TimestampMillisecondType>()
            .value(row)
            .saturating_mul(1000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array.as_primitive::<TimestampMicrosecondType>().value(row),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            let nanos = array.as_primitive::<TimestampNanosecondType>().value(row);
            (nanos as f64 / 1000.0).round() as i64
        }
        other => unreachable!("{other} is not a timestamp type"),
    }
}

/// A value's text form, as the declared type's input function reads it.
fn text_value(array: &dyn Array, row: usize) -> String {
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_string(),
        DataType::Utf8View => array.as_string_view().value(row).to_string(),
        DataType::Decimal128(_, scale) => decimal_text(array.as_primitive::<Decimal128Type>().value(row), *scale),
        DataType::Float32 => float_text(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float_text(array.as_primitive::<Float64Type>().value(row)),
        t if t.is_integer() => int_value(array, row).to_string(),
        other => {
            let formatter = datafusion::arrow::util::display::ArrayFormatter::try_new(array, &Default::default());
            match formatter {
                Ok(f) => f.value(row).to_string(),
                Err(e) => pgrx::error!("weft: cannot format a {other} value: {e}"),
            }
        }
    }
}

/// A Decimal128 value as exact decimal text.
fn decimal_text(value: i128, scale: i8) -> String {
    let digits = value.unsigned_abs().to_string();
    let sign = if value < 0 { "-" } else { "" };
    if scale <= 0 {
        let zeros = "0".repeat((-scale) as usize);
        return if value == 0 {
            "0".into()
        } else {
            format!("{sign}{digits}{zeros}")
        };
    }
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// A float as text numeric_in and float8in read back exactly (Rust's
/// shortest round-trip form), with Postgres's spelling of the specials.
fn float_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        format!("{value:?}")
    }
}
