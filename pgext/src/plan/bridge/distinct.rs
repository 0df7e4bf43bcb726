//! Each distinct row of a call's arguments evaluated once per batch: a
//! column of few distinct values (a status, a country, a day) costs one
//! call of Postgres's function per distinct value, not one per row. A
//! bridged function is never volatile, so within a statement the same
//! arguments give the same result (or the same error).

use std::collections::{HashMap, HashSet};

use datafusion::arrow::array::{ArrayRef, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::Result;

/// Rows at the head of a batch whose distinct count decides whether the
/// whole batch is deduplicated: finding the distinct rows costs a hash of
/// each row, worth it only where values repeat.
const SAMPLE_ROWS: usize = 256;

/// The distinct argument rows of a batch of `rows` rows (each distinct
/// row's arguments, as arrays) and, for each row, the index of its
/// distinct row; None where the batch is small or its first rows are
/// mostly distinct.
pub(super) fn distinct_rows(args: &[ArrayRef], rows: usize) -> Result<Option<(Vec<ArrayRef>, UInt32Array)>> {
    if args.is_empty() || rows < 2 * SAMPLE_ROWS {
        return Ok(None);
    }
    let fields = args.iter().map(|a| SortField::new(a.data_type().clone())).collect();
    let converter = RowConverter::new(fields)?;
    let head: Vec<ArrayRef> = args.iter().map(|a| a.slice(0, SAMPLE_ROWS)).collect();
    let sampled = converter.convert_columns(&head)?;
    if sampled.iter().collect::<HashSet<_>>().len() * 2 > SAMPLE_ROWS {
        return Ok(None);
    }
    let converted = converter.convert_columns(args)?;
    let mut first = HashMap::new();
    let mut representatives = Vec::new();
    let mut of_row = Vec::with_capacity(rows);
    for (i, row) in converted.iter().enumerate() {
        // A batch holds far fewer than 2^32 rows.
        let next = representatives.len() as u32;
        of_row.push(*first.entry(row).or_insert_with(|| {
            representatives.push(i as u32);
            next
        }));
    }
    let representatives = UInt32Array::from(representatives);
    let distinct = args
        .iter()
        .map(|a| take(a.as_ref(), &representatives, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((distinct, UInt32Array::from(of_row))))
}
