//! Heap values into Arrow arrays: one [`ColumnReader`] per scanned column.
//!
//! This is the scan's inner loop (a value per column per row), so the reader
//! fills plain vectors, reserved for a whole batch, and hands them to Arrow
//! without copying: Arrow's builders give their buffers away at `finish` and
//! regrow from nothing for the next batch. Text is checked for UTF-8 once per
//! batch over all its bytes (as `StringArray::try_new` does), not value by
//! value.
//!
//! Every type's reading is here together (past 600 lines): a reader, the
//! scan filter's view of a value ([`scalar`]) and a constant's conversion
//! must agree on each type's encoding.

use std::sync::Arc;

use datafusion::arrow::array::{
    make_array, ArrayDataBuilder, ArrayRef, BinaryArray, BooleanArray, FixedSizeBinaryArray, StringArray,
};
use datafusion::arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{ArrowNativeType, DataType, IntervalMonthDayNano};
use datafusion::arrow::util::bit_util;
use pgrx::pg_sys::{self, Datum};

use super::{Image, PgType, EPOCH_DAYS, EPOCH_MICROS};
use crate::error::Error;

/// Reads one column of heap tuples into an Arrow array of
/// [`PgType::arrow`]'s type.
pub struct ColumnReader {
    ty: PgType,
    /// Rows a batch holds at most: every vector is reserved for this many.
    rows: usize,
    /// Validity, one bit per row pushed; `None` until the first NULL (a
    /// column without NULLs then needs no bitmap at all).
    nulls: Option<Vec<u8>>,
    /// Rows pushed since the last `finish`.
    len: usize,
    values: Values,
}

/// A batch's values so far. A NULL row holds the type's zero.
enum Values {
    Bool(Vec<u8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U32(Vec<u32>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    I128(Vec<i128>),
    Interval(Vec<IntervalMonthDayNano>),
    /// Text and bytea: row i is `data[offsets[i]..offsets[i + 1]]`.
    Bytes {
        offsets: Vec<i32>,
        data: Vec<u8>,
    },
    /// uuid, 16 bytes a row.
    Fixed16(Vec<u8>),
}

impl Values {
    fn new(ty: PgType, rows: usize, bytes: usize) -> Values {
        match ty {
            PgType::Bool => Values::Bool(vec![0; bit_util::ceil(rows, 8)]),
            PgType::Int2 => Values::I16(Vec::with_capacity(rows)),
            PgType::Int4 | PgType::Date => Values::I32(Vec::with_capacity(rows)),
            PgType::Int8 | PgType::Timestamp | PgType::TimestampTz | PgType::Time => {
                Values::I64(Vec::with_capacity(rows))
            }
            PgType::Oid => Values::U32(Vec::with_capacity(rows)),
            PgType::Float4 => Values::F32(Vec::with_capacity(rows)),
            PgType::Float8 => Values::F64(Vec::with_capacity(rows)),
            PgType::Numeric { .. } => Values::I128(Vec::with_capacity(rows)),
            PgType::Interval => Values::Interval(Vec::with_capacity(rows)),
            PgType::Text | PgType::BpChar | PgType::Name | PgType::Bytea | PgType::Image(_) => {
                let mut offsets = Vec::with_capacity(rows + 1);
                offsets.push(0);
                Values::Bytes {
                    offsets,
                    data: Vec::with_capacity(bytes),
                }
            }
            PgType::Uuid => Values::Fixed16(Vec::with_capacity(rows * 16)),
        }
    }
}

impl ColumnReader {
    /// A reader of `ty` values, at most `rows` per batch.
    pub fn new(ty: PgType, rows: usize) -> ColumnReader {
        ColumnReader {
            ty,
            rows,
            nulls: None,
            len: 0,
            values: Values::new(ty, rows, rows * 16),
        }
    }

    /// Appends one value (`null`, or `datum` of this reader's type).
    ///
    /// # Safety
    /// As [`ColumnReader::push_all`].
    #[inline]
    pub unsafe fn push(&mut self, datum: Datum, null: bool) -> Result<(), Error> {
        // SAFETY: per the caller.
        unsafe { self.push_all(&[(datum, null)], null) }
    }

    /// Appends values: each a datum, or NULL where its flag is set (none
    /// is unless `any_null`, which saves looking). One call per page of
    /// tuples keeps the type dispatch out of the per-value loop.
    ///
    /// # Safety
    /// Every non-null datum must be a valid value of this column's Postgres
    /// type (detoasting happens here, in the current memory context), on
    /// the backend thread; at most `rows` values between `finish`es.
    pub unsafe fn push_all(&mut self, datums: &[(Datum, bool)], any_null: bool) -> Result<(), Error> {
        debug_assert!(self.len + datums.len() <= self.rows, "more rows than a batch holds");
        debug_assert!(
            any_null || datums.iter().all(|&(_, null)| !null),
            "a NULL not announced"
        );
        let start = self.len;
        if self.nulls.is_some() || any_null {
            let bits = self.nulls.get_or_insert_with(|| all_valid(start, self.rows));
            for (i, &(_, null)) in datums.iter().enumerate() {
                if null {
                    bit_util::unset_bit(bits, start + i);
                } else {
                    bit_util::set_bit(bits, start + i);
                }
            }
        }
        // A NULL's datum is read as the type's zero (fixed-width types) or
        // not at all.
        let values = datums.iter().map(|&(d, null)| (if null { 0 } else { d.value() }, null));
        let ty = self.ty;
        match &mut self.values {
            Values::Bool(bits) => {
                for (i, (value, _)) in values.enumerate() {
                    if value != 0 {
                        bit_util::set_bit(bits, start + i)
                    }
                }
            }
            Values::I16(v) => v.extend(values.map(|(value, _)| value as i16)),
            Values::I32(v) => match ty {
                PgType::Date => {
                    for (value, null) in values {
                        v.push(if null { 0 } else { date_to_arrow(value as i32)? });
                    }
                }
                _ => v.extend(values.map(|(value, _)| value as i32)),
            },
            Values::I64(v) => match ty {
                PgType::Timestamp | PgType::TimestampTz => {
                    for (value, null) in values {
                        v.push(if null { 0 } else { timestamp_to_arrow(value as i64)? });
                    }
                }
                _ => v.extend(values.map(|(value, _)| value as i64)),
            },
            Values::U32(v) => v.extend(values.map(|(value, _)| value as u32)),
            Values::F32(v) => v.extend(values.map(|(value, _)| f32::from_bits(value as u32))),
            Values::F64(v) => v.extend(values.map(|(value, _)| f64::from_bits(value as u64))),
            Values::I128(v) => {
                let PgType::Numeric { scale, .. } = ty else {
                    unreachable!("i128 values are numerics")
                };
                for (value, null) in values {
                    v.push(if null {
                        0
                    } else {
                        // SAFETY: per the caller, a numeric datum.
                        numeric_to_i128(unsafe { varlena_bytes(Datum::from(value)) }, scale)?
                    });
                }
            }
            Values::Interval(v) => {
                for (value, null) in values {
                    v.push(if null {
                        IntervalMonthDayNano::ZERO
                    } else {
                        // SAFETY: per the caller, an Interval by reference.
                        let interval = unsafe { &*(value as *const pg_sys::Interval) };
                        let nanoseconds = interval
                            .time
                            .checked_mul(1000)
                            .ok_or("an interval's time part is too large for Arrow's nanoseconds")?;
                        IntervalMonthDayNano::new(interval.month, interval.day, nanoseconds)
                    });
                }
            }
            // One loop per kind of value, so that the kind is not decided
            // per value.
            Values::Bytes { offsets, data } => match ty {
                PgType::Name => append_bytes(offsets, data, values, |d| {
                    // SAFETY: per the caller, a NUL-terminated NameData.
                    unsafe { std::ffi::CStr::from_ptr(d.cast_mut_ptr()) }.to_bytes()
                })?,
                PgType::BpChar => append_bytes(offsets, data, values, |d| {
                    // SAFETY: per the caller, a bpchar varlena.
                    trim_blanks(unsafe { varlena_bytes(d) })
                })?,
                PgType::Image(Image { len: -1, .. }) => append_bytes(offsets, data, values, |d| {
                    // SAFETY: per the caller, a varlena.
                    unsafe { varlena_bytes(d) }
                })?,
                PgType::Image(Image { len, byval: false, .. }) => append_bytes(offsets, data, values, |d| {
                    // SAFETY: per the caller, `len` bytes by reference.
                    unsafe { std::slice::from_raw_parts(d.cast_mut_ptr::<u8>(), len as usize) }
                })?,
                PgType::Image(Image { len, byval: true, .. }) => {
                    for (value, null) in values {
                        if !null {
                            data.extend_from_slice(&(value as u64).to_le_bytes()[..len as usize]);
                        }
                        offsets.push(end_offset(data)?);
                    }
                }
                _ => append_bytes(offsets, data, values, |d| {
                    // SAFETY: per the caller, a text, varchar or bytea
                    // varlena.
                    unsafe { varlena_bytes(d) }
                })?,
            },
            Values::Fixed16(v) => {
                for (value, null) in values {
                    if null {
                        v.extend_from_slice(&[0; 16]);
                    } else {
                        // SAFETY: per the caller, a pg_uuid_t (16 bytes) by
                        // reference.
                        v.extend_from_slice(unsafe { std::slice::from_raw_parts(value as *const u8, 16) });
                    }
                }
            }
        }
        self.len += datums.len();
        Ok(())
    }

    /// The values pushed since the last call, as an array of
    /// [`PgType::arrow`]'s type; the reader starts the next batch empty.
    pub fn finish(&mut self) -> Result<ArrayRef, Error> {
        let len = std::mem::take(&mut self.len);
        let nulls = self
            .nulls
            .take()
            .map(|bits| NullBuffer::new(BooleanBuffer::new(Buffer::from_vec(bits), 0, len)));
        // The next batch's text reserve: what this batch needed.
        let bytes = match &self.values {
            Values::Bytes { data, .. } => data.len(),
            _ => 0,
        };
        let values = std::mem::replace(&mut self.values, Values::new(self.ty, self.rows, bytes));
        let data_type = self.ty.arrow();
        let error = |e: datafusion::arrow::error::ArrowError| e.to_string();
        Ok(match values {
            Values::Bool(bits) => Arc::new(BooleanArray::new(
                BooleanBuffer::new(Buffer::from_vec(bits), 0, len),
                nulls,
            )),
            Values::I16(v) => primitive(v, nulls, data_type)?,
            Values::I32(v) => primitive(v, nulls, data_type)?,
            Values::I64(v) => primitive(v, nulls, data_type)?,
            Values::U32(v) => primitive(v, nulls, data_type)?,
            Values::F32(v) => primitive(v, nulls, data_type)?,
            Values::F64(v) => primitive(v, nulls, data_type)?,
            Values::I128(v) => primitive(v, nulls, data_type)?,
            Values::Interval(v) => primitive(v, nulls, data_type)?,
            Values::Bytes { offsets, data } => {
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                let data = Buffer::from_vec(data);
                if matches!(self.ty, PgType::Bytea | PgType::Image(_)) {
                    Arc::new(BinaryArray::try_new(offsets, data, nulls).map_err(error)?)
                } else {
                    // Validates the batch's UTF-8 in one pass: a database
                    // in UTF8 stores valid text, but a damaged page must
                    // not become an invalid Arrow string.
                    Arc::new(
                        StringArray::try_new(offsets, data, nulls)
                            .map_err(|e| Error::HandBack(format!("invalid UTF-8 in a text value: {e}")))?,
                    )
                }
            }
            Values::Fixed16(v) => {
                Arc::new(FixedSizeBinaryArray::try_new(16, Buffer::from_vec(v), nulls).map_err(error)?)
            }
        })
    }
}

/// Appends each value's bytes (`bytes` of its datum; none for a NULL) to
/// `data`, and where it ends to `offsets`.
#[inline(always)]
fn append_bytes<'a>(
    offsets: &mut Vec<i32>,
    data: &mut Vec<u8>,
    values: impl Iterator<Item = (usize, bool)>,
    bytes: impl Fn(Datum) -> &'a [u8],
) -> Result<(), Error> {
    for (value, null) in values {
        if !null {
            data.extend_from_slice(bytes(Datum::from(value)));
        }
        offsets.push(end_offset(data)?);
    }
    Ok(())
}

/// Where the values in `data` end, as an Arrow offset: an i32, so a batch
/// holds at most 2 GB of one column's values.
#[inline(always)]
fn end_offset(data: &[u8]) -> Result<i32, Error> {
    Ok(i32::try_from(data.len()).map_err(|_| "more than 2 GB of this column's values in one batch of rows")?)
}

/// A validity bitmap for `rows` rows whose first `valid` are set.
fn all_valid(valid: usize, rows: usize) -> Vec<u8> {
    let mut bits = vec![0; bit_util::ceil(rows, 8)];
    (0..valid).for_each(|i| bit_util::set_bit(&mut bits, i));
    bits
}

/// An array of the fixed-width `data_type` (a timestamp's unit and zone,
/// a decimal's precision and scale) over `values`.
fn primitive<T: ArrowNativeType>(
    values: Vec<T>,
    nulls: Option<NullBuffer>,
    data_type: DataType,
) -> Result<ArrayRef, Error> {
    let data = ArrayDataBuilder::new(data_type)
        .len(values.len())
        .nulls(nulls)
        .add_buffer(Buffer::from_vec(values))
        .build()
        .map_err(|e| e.to_string())?;
    Ok(make_array(data))
}
/// A non-NULL heap value as a scan filter compares it ([`crate::storage::filter`]):
/// the value its column's Arrow array would hold, as an integer (every
/// fixed-width type but floats; a decimal scaled by 10^scale) or as bytes
/// (text without a bpchar's padding). Values Arrow cannot hold, which a
/// [`ColumnReader`] refuses, still compare here as Postgres orders them:
/// infinite dates and timestamps, numeric NaN and infinities become the
/// sentinels below, beyond every other value. Values of one kind order as
/// the filter compares them (integers numerically, bytes as bytes); a
/// filter never compares the two kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scalar<'a> {
    /// Integers, dates, times, timestamps, oids, decimals, booleans (0/1).
    Int(i128),
    /// Text, varchar, name and bpchar.
    Bytes(&'a [u8]),
}

/// `-infinity` (dates, timestamps, numerics) as a [`Scalar::Int`].
pub const NEG_INFINITY: i128 = i128::MIN;
/// `infinity` as a [`Scalar::Int`].
pub const POS_INFINITY: i128 = i128::MAX - 1;
/// Numeric `NaN`, which Postgres sorts above every number and infinity.
pub const NAN: i128 = i128::MAX;

/// Whether `v` is one of the sentinels (no finite value comes near them:
/// decimals stay below 10^38, dates and timestamps below 2^80 even scaled).
pub fn is_special(v: i128) -> bool {
    v == NEG_INFINITY || v >= POS_INFINITY
}

/// `datum`, a non-NULL value of type `ty`, as a [`Scalar`].
///
/// # Safety
/// As [`ColumnReader::push_all`]'s, for one value; the bytes live until the
/// current memory context is reset or the tuple's page is unpinned.
pub unsafe fn scalar<'a>(ty: PgType, datum: Datum) -> Result<Scalar<'a>, Error> {
    Ok(Scalar::Int(match ty {
        PgType::Numeric { scale, .. } => {
            // SAFETY: per the caller, a numeric datum.
            let bytes = unsafe { varlena_bytes(datum) };
            match numeric_special(bytes) {
                Some(v) => v,
                None => numeric_to_i128(bytes, scale)?,
            }
        }
        PgType::Name => {
            // SAFETY: a name is a NUL-terminated NameData.
            let name = unsafe { std::ffi::CStr::from_ptr(datum.cast_mut_ptr()) };
            return Ok(Scalar::Bytes(name.to_bytes()));
        }
        // SAFETY: per the caller, a text-like varlena.
        PgType::BpChar => return Ok(Scalar::Bytes(trim_blanks(unsafe { varlena_bytes(datum) }))),
        // SAFETY: as above.
        PgType::Text => return Ok(Scalar::Bytes(unsafe { varlena_bytes(datum) })),
        PgType::Float4 | PgType::Float8 | PgType::Interval | PgType::Uuid | PgType::Bytea | PgType::Image(_) => {
            return Err(format!("weft's scan filters do not compare {ty:?} values").into())
        }
        _ => fixed_scalar(ty, datum).ok_or_else(|| format!("weft's scan filters do not compare {ty:?} values"))?,
    }))
}

/// [`scalar`]'s integer for `datum`, a non-NULL value of a type passed by
/// value (not a float); None for other types. Safe: a by-value datum is
/// just its bits.
#[inline]
pub fn fixed_scalar(ty: PgType, datum: Datum) -> Option<i128> {
    let value = datum.value();
    Some(match ty {
        PgType::Bool => i128::from(value != 0),
        PgType::Int2 => i128::from(value as i16),
        PgType::Int4 => i128::from(value as i32),
        PgType::Int8 | PgType::Time => i128::from(value as i64),
        PgType::Oid => i128::from(value as u32),
        // DATEVAL_NOBEGIN and DATEVAL_NOEND.
        PgType::Date => match value as i32 {
            i32::MIN => NEG_INFINITY,
            i32::MAX => POS_INFINITY,
            days => i128::from(days) + i128::from(EPOCH_DAYS),
        },
        // DT_NOBEGIN and DT_NOEND.
        PgType::Timestamp | PgType::TimestampTz => match value as i64 {
            i64::MIN => NEG_INFINITY,
            i64::MAX => POS_INFINITY,
            micros => i128::from(micros) + i128::from(EPOCH_MICROS),
        },
        _ => return None,
    })
}

/// A numeric's special value (NaN, ±Infinity: the top bits of its header
/// word, numeric.c's NUMERIC_NAN, NUMERIC_PINF, NUMERIC_NINF) as its
/// sentinel; None for a number.
fn numeric_special(bytes: &[u8]) -> Option<i128> {
    let header = u16::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]);
    match header & 0xF000 {
        0xC000 => Some(NAN),
        0xD000 => Some(POS_INFINITY),
        0xF000 => Some(NEG_INFINITY),
        _ => None,
    }
}

/// A varlena datum's bytes, detoasted (into the current memory context)
/// when compressed or stored out of line.
///
/// # Safety
/// `datum` must be a valid varlena datum, on the backend thread; the bytes
/// live until the current memory context is reset or the tuple goes.
#[inline(always)]
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
#[inline]
fn trim_blanks(bytes: &[u8]) -> &[u8] {
    const BLANKS: u64 = u64::from_le_bytes([b' '; 8]);
    let mut end = bytes.len();
    // Eight bytes at a time: char(n) columns often carry long padding.
    // Read little-endian, the last byte is the word's most significant,
    // so the blanks ending the word are its leading zero bytes once the
    // blanks are XORed away.
    while let Some(word) = end.checked_sub(8).map(|at| &bytes[at..end]) {
        let rest = u64::from_le_bytes(word.try_into().expect("8 bytes")) ^ BLANKS;
        if rest != 0 {
            return &bytes[..end - (rest.leading_zeros() / 8) as usize];
        }
        end -= 8;
    }
    while end > 0 && bytes[end - 1] == b' ' {
        end -= 1;
    }
    &bytes[..end]
}

/// A Postgres date as Arrow's days since 1970.
fn date_to_arrow(days: i32) -> Result<i32, Error> {
    if days == i32::MIN || days == i32::MAX {
        return Err(Error::HandBack("date infinity has no Arrow value".into()));
    }
    days.checked_add(EPOCH_DAYS)
        .ok_or_else(|| Error::HandBack("a date beyond Arrow's Date32 range".into()))
}

/// A Postgres timestamp as Arrow's microseconds since 1970.
fn timestamp_to_arrow(micros: i64) -> Result<i64, Error> {
    if micros == i64::MIN || micros == i64::MAX {
        return Err(Error::HandBack("timestamp infinity has no Arrow value".into()));
    }
    micros
        .checked_add(EPOCH_MICROS)
        .ok_or_else(|| Error::HandBack("a timestamp beyond Arrow's range".into()))
}

/// `value` / 10^`exponent` if that is exact. A base-10000 digit has four
/// decimals, so a column's scale usually ends inside the last digit and the
/// exponent is 1 to 3: constant divisors there, which the compiler turns
/// into multiplications (a division would be most of a numeric's cost).
#[inline(always)]
fn divide_exact(value: u64, exponent: u32) -> Option<u64> {
    let exact = |p: u64| value.is_multiple_of(p).then(|| value / p);
    match exponent {
        1 => exact(10),
        2 => exact(100),
        3 => exact(1000),
        e => POW10
            .get(e as usize)
            .and_then(|&p| u64::try_from(p).ok())
            .and_then(exact),
    }
}

/// 10^0 ..= 10^38, the powers a Decimal128 can hold.
const POW10: [i128; 39] = {
    let mut table = [1i128; 39];
    let mut i = 1;
    while i < table.len() {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// A numeric's image (its varlena data) as its value times
/// 10^display scale and that display scale; None for NaN, the infinities
/// and values beyond Decimal128.
pub fn numeric_image(bytes: &[u8]) -> Option<(i128, u8)> {
    let header = u16::from_ne_bytes(*bytes.first_chunk::<2>()?);
    let dscale = match header & 0xC000 {
        // NaN and the infinities.
        0xC000 => return None,
        // The short format: the display scale in bits 7 to 12.
        0x8000 => (header & 0x1F80) >> 7,
        // The long format: the display scale in the first word's low 14
        // bits (`n_sign_dscale`), the weight in the second.
        _ => header & 0x3FFF,
    };
    let scale = i8::try_from(dscale).ok().filter(|s| *s <= 38)?;
    numeric_to_i128(bytes, scale).ok().map(|v| (v, scale as u8))
}

/// A numeric's value scaled by 10^`scale`, exactly, from its on-disk form
/// (numeric.c's `NumericData` after the varlena header): a 16-bit header,
/// then, in the long format, a 16-bit weight, then base-10000 digits, the
/// first of weight `weight` (value = sum of digit[i] * 10000^(weight - i)).
/// The short format packs sign, display scale and a 6-bit weight into the
/// header; special values (NaN, infinities) have the top two bits set.
/// Postgres strips leading and trailing zero digits, so the digits read as
/// one integer times 10000^(weight - (ndigits - 1)).
#[inline(always)]
fn numeric_to_i128(bytes: &[u8], scale: i8) -> Result<i128, Error> {
    short_numeric(bytes, scale).map_or_else(|| any_numeric_to_i128(bytes, scale), Ok)
}

/// [`numeric_to_i128`] of the values most columns hold, inlined into the
/// readers' loops: the short format with at most four digits (16
/// decimals), whose scaled value fits, in 64-bit arithmetic (128-bit
/// division is a library call); None for any other value, which
/// [`any_numeric_to_i128`] decodes or refuses with the reason.
#[inline(always)]
fn short_numeric(bytes: &[u8], scale: i8) -> Option<i128> {
    let (header, digits) = bytes.split_first_chunk::<2>()?;
    let header = u16::from_ne_bytes(*header);
    // The short format (top bits 10), not NaN or an infinity (11).
    if header & 0xC000 != 0x8000 || digits.len() > 8 || digits.len() % 2 != 0 {
        return None;
    }
    let mut acc = 0u64;
    for pair in digits.chunks_exact(2) {
        let digit = u16::from_ne_bytes([pair[0], pair[1]]);
        if digit >= 10_000 {
            return None;
        }
        acc = acc * 10_000 + u64::from(digit);
    }
    // The 6-bit weight and its sign bit.
    let mut weight = i32::from(header & 0x003F);
    if header & 0x0040 != 0 {
        weight -= 64;
    }
    let ndigits = (digits.len() / 2) as i32;
    let exponent = 4 * (weight - (ndigits - 1)) + i32::from(scale);
    let magnitude = if acc == 0 {
        0
    } else if exponent >= 0 {
        i128::from(acc).checked_mul(*POW10.get(exponent as usize)?)?
    } else {
        i128::from(divide_exact(acc, exponent.unsigned_abs())?)
    };
    Some(if header & 0x2000 != 0 { -magnitude } else { magnitude })
}

/// A numeric's image (numeric.c's `NumericData` after the varlena
/// header) read: a special value, or a number's sign, the weight of its
/// first base-10000 digit, and its digits (16-bit words, native order).
/// The header's top two bits tell the long format's sign (00 positive, 01
/// negative), the short format (10: sign in bit 13, a 7-bit
/// two's-complement weight in bits 0-6) and the special values (11: NaN,
/// and the infinities by the next two bits); the long format's weight is
/// the second word.
pub(super) enum NumericImage<'a> {
    NaN,
    PosInfinity,
    NegInfinity,
    Number {
        negative: bool,
        weight: i32,
        digits: &'a [u8],
    },
}

impl<'a> NumericImage<'a> {
    pub(super) const CORRUPT: &'static str = "a corrupt numeric value";

    /// The numeric whose image is `bytes`.
    pub(super) fn read(bytes: &'a [u8]) -> Result<NumericImage<'a>, Error> {
        let word = |at: usize| -> Result<u16, Error> {
            bytes
                .get(at..at + 2)
                .map(|b| u16::from_ne_bytes([b[0], b[1]]))
                .ok_or_else(|| Self::CORRUPT.into())
        };
        let header = word(0)?;
        let (negative, weight, digits_at) = match header & 0xC000 {
            0xC000 => {
                return match header & 0xF000 {
                    0xC000 => Ok(NumericImage::NaN),
                    0xD000 => Ok(NumericImage::PosInfinity),
                    0xF000 => Ok(NumericImage::NegInfinity),
                    _ => Err(Self::CORRUPT.into()),
                }
            }
            0x8000 => {
                let mut weight = i32::from(header & 0x003F);
                if header & 0x0040 != 0 {
                    weight -= 64;
                }
                (header & 0x2000 != 0, weight, 2)
            }
            sign => (sign == 0x4000, i32::from(word(2)? as i16), 4),
        };
        let digits = bytes.get(digits_at..).ok_or(Self::CORRUPT)?;
        Ok(NumericImage::Number {
            negative,
            weight,
            digits,
        })
    }
}

/// [`numeric_to_i128`] of any numeric: every format and length, and the
/// reason a value has no Decimal128 at this scale.
#[inline(never)]
fn any_numeric_to_i128(bytes: &[u8], scale: i8) -> Result<i128, Error> {
    let (negative, weight, digits) = match NumericImage::read(bytes)? {
        NumericImage::NaN => return Err(Error::HandBack("numeric NaN has no Decimal128 value".into())),
        NumericImage::PosInfinity | NumericImage::NegInfinity => {
            return Err(Error::HandBack("numeric infinity has no Decimal128 value".into()))
        }
        NumericImage::Number {
            negative,
            weight,
            digits,
        } => (negative, weight, digits),
    };
    let digits = digits.chunks_exact(2);
    let digit = |pair: &[u8]| match u16::from_ne_bytes([pair[0], pair[1]]) {
        d if d < 10_000 => Ok(d),
        _ => Err(NumericImage::CORRUPT.to_string()),
    };
    let ndigits = digits.len() as i32;
    let overflow = || format!("a numeric value too large for Decimal128 at scale {scale}");
    let too_fine = || format!("a numeric value with more than {scale} decimal digits");
    let mut acc = 0i128;
    let scaled = if ndigits <= 9 {
        // The digits as one integer (at most 36 decimal digits, so no
        // overflow), then value * 10^scale = acc * 10^exponent. (Short
        // values of up to four digits seldom get here: short_numeric
        // decodes them in 64-bit arithmetic.)
        for pair in digits {
            acc = acc * 10_000 + i128::from(digit(pair)?);
        }
        let exponent = 4 * (weight - (ndigits - 1)) + i32::from(scale);
        if acc == 0 {
            0
        } else if exponent >= 0 {
            POW10
                .get(exponent as usize)
                .and_then(|&p| acc.checked_mul(p))
                .ok_or_else(overflow)?
        } else {
            match POW10.get(exponent.unsigned_abs() as usize) {
                Some(&p) if acc % p == 0 => acc / p,
                _ => return Err(too_fine().into()),
            }
        }
    } else {
        // Wide values: digit by digit, so that digits beyond the scale are
        // dropped (they must be zeros) before they can overflow.
        // Digit i counts units of 10^unit in the scaled value; `acc` counts
        // units of 10^last.
        let mut last = 0i32;
        for (i, pair) in digits.enumerate() {
            let digit = i128::from(digit(pair)?);
            let unit = 4 * (weight - i as i32) + i32::from(scale);
            let (shift, add) = if unit >= 0 {
                (4, digit)
            } else if unit > -4 {
                // Straddles the last kept decimal: its low digits must be 0.
                let divisor = POW10[unit.unsigned_abs() as usize];
                if digit % divisor != 0 {
                    return Err(too_fine().into());
                }
                (4 + unit, digit / divisor)
            } else if digit != 0 {
                return Err(too_fine().into());
            } else {
                continue;
            };
            acc = acc
                .checked_mul(POW10[shift as usize])
                .and_then(|a| a.checked_add(add))
                .ok_or_else(overflow)?;
            last = unit.max(0);
        }
        POW10
            .get(last as usize)
            .and_then(|&p| acc.checked_mul(p))
            .ok_or_else(overflow)?
    };
    Ok(if negative { -scaled } else { scaled })
}
