//! Arrow values into Datums of the type a result column declares.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    IntervalMonthDayNanoType, IntervalUnit, Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type,
    UInt8Type,
};
use pgrx::pg_sys::{self, Datum, Oid};

use super::{EPOCH_DAYS, EPOCH_MICROS};

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
    /// A string into text (or an unconstrained varchar): its bytes in a
    /// varlena, which is all `textin` makes of them.
    Varlena,
    /// A value's image ([`super::Image`]) back into its Datum.
    Image(super::Image),
}

impl ColumnWriter {
    /// A writer of `arrow` values into `typid(typmod)`; None when Postgres
    /// has no cast that fits (the caller names the column).
    ///
    /// # Safety
    /// On the backend thread (looks the type's input function up).
    pub unsafe fn new(arrow: &DataType, typid: Oid, typmod: i32) -> Option<ColumnWriter> {
        // A domain's values are its base type's.
        // SAFETY: per the caller.
        let (typid, typmod) = unsafe { super::base_type(typid, typmod) };
        let how = how(arrow, typid, typmod)?;
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

    /// Whether a writer of `arrow` values into `typid(typmod)` exists.
    ///
    /// # Safety
    /// On the backend thread (reads the catalog).
    pub unsafe fn accepts(arrow: &DataType, typid: Oid, typmod: i32) -> bool {
        // SAFETY: per the caller.
        let (typid, typmod) = unsafe { super::base_type(typid, typmod) };
        how(arrow, typid, typmod).is_some()
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
            // SAFETY: per the caller.
            Write::Image(image) => unsafe { image_datum(image, array.as_binary::<i32>().value(row)) },
            // SAFETY: per the caller.
            Write::Varlena => unsafe { varlena_datum(string_value(array, row).as_bytes()) },
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

/// The Datum whose image is `bytes` (allocated in the current memory
/// context where it is passed by reference).
///
/// # Safety
/// On the backend thread; `bytes` is an image of `image`'s type.
unsafe fn image_datum(image: super::Image, bytes: &[u8]) -> Datum {
    if image.byval {
        let mut value = [0u8; 8];
        value[..bytes.len().min(8)].copy_from_slice(&bytes[..bytes.len().min(8)]);
        return Datum::from(u64::from_le_bytes(value));
    }
    if image.len == -1 {
        // SAFETY: per the caller.
        return unsafe { varlena_datum(bytes) };
    }
    if bytes.len() != image.len as usize {
        pgrx::error!(
            "weft: a value of type {:?} arrived with {} bytes",
            image.typid,
            bytes.len()
        );
    }
    // SAFETY: per the caller; palloc'd memory, fully written.
    unsafe {
        let value = pg_sys::palloc(bytes.len()).cast::<u8>();
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), value, bytes.len());
        Datum::from(value)
    }
}

/// A varlena holding `bytes` (allocated in the current memory context).
///
/// # Safety
/// On the backend thread.
unsafe fn varlena_datum(bytes: &[u8]) -> Datum {
    let size = pg_sys::VARHDRSZ + bytes.len();
    if size > MAX_VARLENA {
        pgrx::ereport!(
            ERROR,
            pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("weft: a value of {} bytes exceeds Postgres's 1 GB limit", bytes.len())
        );
    }
    // SAFETY: per the caller; palloc'd memory, fully written; the 4-byte
    // header holds the whole size (SET_VARSIZE), under 1 GB as checked.
    unsafe {
        let value = pg_sys::palloc(size).cast::<u8>();
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), value.add(pg_sys::VARHDRSZ), bytes.len());
        pgrx::varlena::set_varsize_4b(value.cast(), size as i32);
        Datum::from(value)
    }
}

/// The largest varlena Postgres allocates (`MaxAllocSize`, 1 GB - 1).
const MAX_VARLENA: usize = 0x3fff_ffff;

/// How `arrow` values become values of `typid(typmod)` (not a domain);
/// None where no way fits.
fn how(arrow: &DataType, typid: Oid, typmod: i32) -> Option<Write> {
    use DataType as A;
    let image = match super::PgType::of(typid, typmod) {
        Ok(super::PgType::Image(image)) if *arrow == A::Binary => Some(image),
        _ => None,
    };
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
        pg_sys::TEXTOID if string => Write::Varlena,
        pg_sys::VARCHAROID if string && typmod < 0 => Write::Varlena,
        pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID | pg_sys::NAMEOID if string => Write::Text,
        pg_sys::OIDOID if *arrow == A::UInt32 => Write::Oid,
        pg_sys::DATEOID if *arrow == A::Date32 => Write::Date,
        pg_sys::TIMESTAMPOID if matches!(arrow, A::Timestamp(_, None)) => Write::Timestamp,
        pg_sys::TIMESTAMPTZOID if matches!(arrow, A::Timestamp(_, Some(_))) => Write::Timestamp,
        pg_sys::TIMEOID if *arrow == A::Time64(TimeUnit::Microsecond) => Write::Time,
        pg_sys::INTERVALOID if *arrow == A::Interval(IntervalUnit::MonthDayNano) => Write::Interval,
        pg_sys::UUIDOID if *arrow == A::FixedSizeBinary(16) => Write::Uuid,
        pg_sys::BYTEAOID if matches!(arrow, A::Binary | A::LargeBinary | A::BinaryView) => Write::Bytea,
        _ => Write::Image(image?),
    };
    Some(how)
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

/// A string array's value.
fn string_value(array: &dyn Array, row: usize) -> &str {
    match array.data_type() {
        DataType::LargeUtf8 => array.as_string::<i64>().value(row),
        DataType::Utf8View => array.as_string_view().value(row),
        _ => array.as_string::<i32>().value(row),
    }
}

/// A value's text form, as the declared type's input function reads it.
fn text_value(array: &dyn Array, row: usize) -> String {
    match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => string_value(array, row).to_string(),
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
