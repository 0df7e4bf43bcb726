//! What ANALYZE left in pg_statistic about a table's columns, as the
//! leader plans with it.
//!
//! Scans report each column's distinct values to DataFusion's statistics
//! (scaled to the rows their filter keeps, [`kept_distinct`]), so that a
//! join of two scans is estimated as Postgres's `eqjoinsel` estimates one
//! without most-common values: the product of the sides' rows over the
//! larger of their keys' distinct counts (`weft_runtime::estimated_rows`).
//! Index lookups weigh the rows per key they fetch by the same count.

use pgrx::pg_sys;

/// The distinct values of column `attnum` of `relid` (a table of `rows`
/// rows, as pg_class estimates them), from pg_statistic; None without
/// statistics (never analyzed) or without a row count.
///
/// # Safety
/// On the backend thread.
pub unsafe fn distinct(relid: pg_sys::Oid, attnum: i16, rows: Option<f64>) -> Option<f64> {
    let rows = rows.filter(|r| *r > 0.0)?;
    // SAFETY: per the caller; a syscache entry, read and released.
    let stadistinct = unsafe {
        let tuple = pg_sys::SearchSysCache3(
            pg_sys::SysCacheIdentifier::STATRELATTINH as i32,
            pg_sys::Datum::from(relid),
            pg_sys::Datum::from(attnum),
            pg_sys::Datum::from(false),
        );
        if tuple.is_null() {
            return None;
        }
        let header = (*tuple).t_data;
        let form = header
            .cast::<u8>()
            .add(usize::from((*header).t_hoff))
            .cast::<pg_sys::FormData_pg_statistic>();
        let stadistinct = f64::from((*form).stadistinct);
        pg_sys::ReleaseSysCache(tuple);
        stadistinct
    };
    // Negative: minus the fraction of the rows (it scales with the
    // table); zero: unknown.
    let distinct = if stadistinct < 0.0 {
        -stadistinct * rows
    } else {
        stadistinct
    };
    (distinct >= 1.0).then(|| distinct.min(rows))
}

/// The distinct values left among `kept` of a column's `rows` rows that
/// held `distinct` values, the rows kept at random: each value has
/// `rows / distinct` rows and is left unless all of them go (the reasoning
/// of Postgres's `estimate_num_groups`). A unique column keeps a value per
/// row kept; a column of a few values keeps nearly all of them.
pub fn kept_distinct(distinct: f64, rows: f64, kept: f64) -> f64 {
    if rows <= 0.0 || kept >= rows {
        return distinct;
    }
    let gone = 1.0 - (kept / rows).max(0.0);
    (distinct * (1.0 - gone.powf(rows / distinct))).min(kept).max(1.0)
}
