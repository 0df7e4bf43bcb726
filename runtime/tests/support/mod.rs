//! Deterministic random record batches of every Arrow type weft uses, so
//! that a receiver can regenerate exactly what a sender sent.

#![allow(dead_code)] // each test binary uses a different part

pub mod spmd;
pub mod tpch;

use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::*;
use arrow_buffer::{IntervalDayTime, IntervalMonthDayNano};
use arrow_schema::{DataType, Field, IntervalUnit, Schema, SchemaRef, TimeUnit};

/// SplitMix64: small, fast, and the same on every participant.
#[derive(Clone)]
pub struct Rng(pub u64, pub bool);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed, true)
    }

    /// A value, or (one time in five, when nulls are on) NULL.
    fn maybe<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.1 && self.below(5) == 0 {
            None
        } else {
            Some(f(self))
        }
    }

    fn text(&mut self) -> String {
        let len = self.below(30) as usize;
        (0..len)
            .map(|_| match self.below(10) {
                0 => 'é',
                1 => '🦀',
                _ => (b'a' + self.below(26) as u8) as char,
            })
            .collect()
    }

    fn bytes(&mut self) -> Vec<u8> {
        let len = self.below(20) as usize;
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// A schema with a nullable column of every type weft exchanges.
pub fn all_types() -> SchemaRef {
    let tz = |t: &str| Some(Arc::<str>::from(t));
    let fields = vec![
        Field::new("i8", DataType::Int8, true),
        Field::new("i16", DataType::Int16, true),
        Field::new("i32", DataType::Int32, true),
        Field::new("i64", DataType::Int64, true),
        Field::new("u32", DataType::UInt32, true),
        Field::new("f32", DataType::Float32, true),
        Field::new("f64", DataType::Float64, true),
        Field::new("dec", DataType::Decimal128(38, 10), true),
        Field::new("dec_small", DataType::Decimal128(15, 2), true),
        Field::new("utf8", DataType::Utf8, true),
        Field::new("utf8view", DataType::Utf8View, true),
        Field::new("large_utf8", DataType::LargeUtf8, true),
        Field::new("binary", DataType::Binary, true),
        Field::new("date32", DataType::Date32, true),
        Field::new("date64", DataType::Date64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("ts_utc", DataType::Timestamp(TimeUnit::Microsecond, tz("UTC")), true),
        Field::new(
            "ts_ns_tz",
            DataType::Timestamp(TimeUnit::Nanosecond, tz("+02:00")),
            true,
        ),
        Field::new("time64", DataType::Time64(TimeUnit::Microsecond), true),
        Field::new("iv_mdn", DataType::Interval(IntervalUnit::MonthDayNano), true),
        Field::new("iv_dt", DataType::Interval(IntervalUnit::DayTime), true),
        Field::new("iv_ym", DataType::Interval(IntervalUnit::YearMonth), true),
        Field::new("bool", DataType::Boolean, true),
        Field::new(
            "dict",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        ),
    ];
    Arc::new(Schema::new(fields))
}

/// A batch of `schema` (from [`all_types`], or the small one of
/// [`narrow`]) with `rows` rows drawn from `rng`.
pub fn batch(schema: &SchemaRef, rows: usize, rng: &mut Rng) -> RecordBatch {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let nulls = std::mem::replace(&mut rng.1, field.is_nullable());
            let column = column(field.data_type(), rows, rng);
            rng.1 = nulls;
            column
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).expect("valid batch")
}

fn column(data_type: &DataType, rows: usize, rng: &mut Rng) -> ArrayRef {
    macro_rules! prim {
        ($array:ty, $gen:expr) => {
            Arc::new((0..rows).map(|_| rng.maybe($gen)).collect::<$array>()) as ArrayRef
        };
    }
    match data_type {
        DataType::Int8 => prim!(Int8Array, |r| r.next_u64() as i8),
        DataType::Int16 => prim!(Int16Array, |r| r.next_u64() as i16),
        DataType::Int32 => prim!(Int32Array, |r| r.next_u64() as i32),
        DataType::Int64 => prim!(Int64Array, |r| r.next_u64() as i64),
        DataType::UInt32 => prim!(UInt32Array, |r| r.next_u64() as u32),
        DataType::Float32 => prim!(Float32Array, |r| special_f64(r) as f32),
        DataType::Float64 => prim!(Float64Array, special_f64),
        DataType::Decimal128(p, s) => {
            let bound = 10i128.pow(*p as u32);
            let values: Decimal128Array = (0..rows)
                .map(|_| rng.maybe(|r| ((r.next_u64() as i128) << 64 | r.next_u64() as i128) % bound))
                .collect();
            Arc::new(values.with_precision_and_scale(*p, *s).expect("decimal"))
        }
        DataType::Utf8 => prim!(StringArray, |r| r.text()),
        DataType::Utf8View => prim!(StringViewArray, |r| r.text()),
        DataType::LargeUtf8 => prim!(LargeStringArray, |r| r.text()),
        DataType::Binary => prim!(BinaryArray, |r| r.bytes()),
        DataType::Date32 => prim!(Date32Array, |r| r.below(100_000) as i32 - 50_000),
        DataType::Date64 => prim!(Date64Array, |r| (r.below(100_000) as i64 - 50_000) * 86_400_000),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let values: TimestampMicrosecondArray =
                (0..rows).map(|_| rng.maybe(|r| r.next_u64() as i64 >> 8)).collect();
            Arc::new(values.with_timezone_opt(tz.clone()))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
            let values: TimestampNanosecondArray = (0..rows).map(|_| rng.maybe(|r| r.next_u64() as i64)).collect();
            Arc::new(values.with_timezone_opt(tz.clone()))
        }
        DataType::Time64(TimeUnit::Microsecond) => prim!(Time64MicrosecondArray, |r| r.below(86_400_000_000) as i64),
        DataType::Interval(IntervalUnit::MonthDayNano) => prim!(IntervalMonthDayNanoArray, |r| {
            IntervalMonthDayNano::new(r.next_u64() as i32, r.next_u64() as i32, r.next_u64() as i64)
        }),
        DataType::Interval(IntervalUnit::DayTime) => prim!(IntervalDayTimeArray, |r| {
            IntervalDayTime::new(r.next_u64() as i32, r.next_u64() as i32)
        }),
        DataType::Interval(IntervalUnit::YearMonth) => prim!(IntervalYearMonthArray, |r| r.next_u64() as i32),
        DataType::Boolean => prim!(BooleanArray, |r| r.below(2) == 1),
        DataType::Dictionary(_, _) => {
            // A small dictionary, different in every batch.
            let words: Vec<String> = (0..1 + rng.below(8)).map(|_| rng.text()).collect();
            let picks: Vec<Option<usize>> = (0..rows)
                .map(|_| rng.maybe(|r| r.below(words.len() as u64) as usize))
                .collect();
            let values: DictionaryArray<Int32Type> = picks.iter().map(|p| p.map(|i| words[i].as_str())).collect();
            Arc::new(values)
        }
        other => panic!("no generator for {other}"),
    }
}

/// Mostly ordinary doubles, sometimes NaN, infinities or signed zero.
fn special_f64(r: &mut Rng) -> f64 {
    match r.below(20) {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => -0.0,
        _ => (r.next_u64() as i64) as f64 / 1e6,
    }
}

/// A small schema for bulk traffic: (i64, f64, utf8).
pub fn narrow() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
    ]))
}

/// The seed of the `k`-th batch from `sender` to `receiver`.
pub fn seed(sender: u32, receiver: u32, k: usize) -> u64 {
    (u64::from(sender) << 48) ^ (u64::from(receiver) << 32) ^ k as u64
}

/// Row count of the `k`-th batch of an edge: zero-row batches included.
pub fn rows(k: usize, rng: &mut Rng) -> usize {
    if k % 5 == 3 {
        0
    } else {
        1 + rng.below(300) as usize
    }
}

/// Whether two batches hold the same values. `RecordBatch`'s `==` treats
/// NaN as unequal to itself; this compares floats bit for bit instead.
pub fn same(a: &RecordBatch, b: &RecordBatch) -> bool {
    a.schema() == b.schema()
        && a.num_rows() == b.num_rows()
        && a.columns().iter().zip(b.columns()).all(|(x, y)| {
            x.to_data() == y.to_data()
                || (matches!(x.data_type(), DataType::Float32 | DataType::Float64)
                    && x.to_data().buffers()[0] == y.to_data().buffers()[0]
                    && x.logical_nulls() == y.logical_nulls())
        })
}

/// Sends batches of `rows` rows of [`narrow`] through `out` until the
/// receiver closes (then returns how many were sent) or anything fails.
pub async fn send_until_closed(
    out: weft_runtime::Outbox,
    rows: usize,
    seed: u64,
) -> Result<usize, weft_runtime::RuntimeError> {
    let mut tx = weft_runtime::BatchSender::new(out, &narrow())?;
    let mut rng = Rng::new(seed);
    let mut sent = 0;
    loop {
        match tx.send(&batch(&narrow(), rows, &mut rng)).await {
            Ok(()) => sent += 1,
            Err(weft_runtime::RuntimeError::ReceiverClosed) => return Ok(sent),
            Err(e) => return Err(e),
        }
    }
}
