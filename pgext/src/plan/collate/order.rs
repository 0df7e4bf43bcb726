//! ORDER BY in Postgres's order where DataFusion's differs: each value's
//! place among the distinct values of the whole input.
//!
//! A window function over the whole input (no PARTITION BY, no ORDER BY)
//! sees every row at once, so the numbers it gives are one order across
//! all of them: sorting the rows by the number is sorting them as
//! Postgres would, and DataFusion's sort, its top-k for a LIMIT, and a
//! sort's later keys all work unchanged. Values Postgres holds equal get
//! one number (floats' -0 and 0, intervals' '1 mon' and '30 days'), so a
//! later key breaks their ties as it does in Postgres. Only distinct
//! values are compared.
//!
//! Two comparisons: text under a collation by `varstr_cmp` directly
//! ([`Comparator::Collation`]), any other type by its btree opclass's
//! comparison function through fmgr ([`Comparator::Btree`]), on Datums the
//! result writers make of the Arrow values.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{exec_err, DataFusionError, Result};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{PartitionEvaluator, Signature, Volatility, WindowUDFImpl};
use pgrx::pg_sys::{self, Oid};

use crate::pgcall;
use crate::plan::bridge::STOP_CHECK_ROWS;
use crate::types::{ColumnWriter, PgType};

/// The text order's name in plans and EXPLAIN.
pub const NAME: &str = "pg:collation_order";
/// The btree order's name in plans and EXPLAIN.
pub const BTREE_NAME: &str = "pg:order";

/// How values are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Comparator {
    /// Text under a deterministic collation, by `varstr_cmp`.
    Collation(Oid),
    /// Values of `typid(typmod)` by btree comparison function `function`
    /// under `collation`.
    Btree {
        /// The comparison function (btree support function 1).
        function: Oid,
        /// The compared values' type (never a domain).
        typid: Oid,
        /// Its modifier.
        typmod: i32,
        /// The collation the function is called with.
        collation: Oid,
    },
}

/// The place of each value of the input among its distinct values, in
/// Postgres's order (NULL for NULL).
///
/// ```ignore
/// // ORDER BY name under en_US.UTF-8, as a plan writes it:
/// let place = WindowUDF::new_from_impl(PgOrder::new(Comparator::Collation(collation))?).call(vec![col("name")]);
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgOrder {
    comparator: Comparator,
    signature: Signature,
}

impl PgOrder {
    /// The order `comparator` gives; an error for a type weft does not
    /// carry.
    pub fn new(comparator: Comparator) -> Result<PgOrder, String> {
        let input = match comparator {
            Comparator::Collation(_) => DataType::Utf8,
            Comparator::Btree { typid, typmod, .. } => PgType::of(typid, typmod)?.arrow(),
        };
        Ok(PgOrder {
            comparator,
            signature: Signature::exact(vec![input], Volatility::Immutable),
        })
    }

    /// How it compares.
    pub fn comparator(&self) -> Comparator {
        self.comparator
    }
}

impl WindowUDFImpl for PgOrder {
    fn name(&self) -> &str {
        match self.comparator {
            Comparator::Collation(_) => NAME,
            Comparator::Btree { .. } => BTREE_NAME,
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(&self, _args: PartitionEvaluatorArgs) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(Places {
            comparator: self.comparator,
        }))
    }

    fn field(&self, args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(args.name(), DataType::UInt64, true)))
    }
}

/// Numbers one partition (the whole input).
#[derive(Debug)]
struct Places {
    comparator: Comparator,
}

impl PartitionEvaluator for Places {
    fn evaluate_all(&mut self, values: &[ArrayRef], _rows: usize) -> Result<ArrayRef> {
        match self.comparator {
            Comparator::Collation(collation) => text_places(values[0].as_ref(), collation),
            Comparator::Btree {
                function,
                typid,
                typmod,
                collation,
            } => btree_places(&values[0], function, typid, typmod, collation),
        }
    }
}

/// Each string's place under `collation`.
fn text_places(values: &dyn Array, collation: Oid) -> Result<ArrayRef> {
    let strings = super::strings(values)?;
    let mut places: HashMap<&str, u64> = HashMap::new();
    let mut distinct = Vec::new();
    for value in strings.iter().flatten() {
        places.entry(value).or_insert_with(|| {
            distinct.push(value);
            0
        });
    }
    pgcall::call("text ordered under a collation", || {
        if pgcall::should_stop() {
            return Err(pgcall::stopped());
        }
        // SAFETY: DataFusion runs a participant's plan on its backend
        // thread, and this is inside pgcall::call.
        distinct.sort_unstable_by(|a, b| unsafe { super::compare(collation, a, b) });
        Ok(())
    })?;
    // Under a deterministic collation only equal strings compare equal,
    // and the strings are distinct: each its own place.
    for (place, value) in distinct.into_iter().enumerate() {
        places.insert(value, place as u64);
    }
    let numbered: UInt64Array = strings.iter().map(|value| value.map(|v| places[v])).collect();
    Ok(Arc::new(numbered))
}

/// Each value's place by btree comparison function `function`.
fn btree_places(values: &ArrayRef, function: Oid, typid: Oid, typmod: i32, collation: Oid) -> Result<ArrayRef> {
    // The distinct values by their bytes (Arrow's row format: equal rows
    // are equal values of any type), each as its first row.
    let converter = RowConverter::new(vec![SortField::new(values.data_type().clone())])?;
    let rows = converter.convert_columns(std::slice::from_ref(values))?;
    let mut first: HashMap<&[u8], usize> = HashMap::new();
    let mut of_row = vec![usize::MAX; values.len()];
    let mut distinct = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if values.is_null(i) {
            continue;
        }
        of_row[i] = *first.entry(row.data()).or_insert_with(|| {
            distinct.push(i);
            distinct.len() - 1
        });
    }
    let places = pgcall::call("values ordered by Postgres's comparison", || {
        // SAFETY: DataFusion runs a participant's plan on its backend
        // thread, and this is inside pgcall::call.
        unsafe { compare_sorted(values.as_ref(), &distinct, function, typid, typmod, collation) }
    })?;
    let numbered: UInt64Array = of_row.iter().map(|&d| (d != usize::MAX).then(|| places[d])).collect();
    Ok(Arc::new(numbered))
}

/// The place of each of `distinct` (rows of `values`) in the order of
/// `function`: values it holds equal share a place.
///
/// # Safety
/// On the backend thread, inside [`pgcall::call`].
unsafe fn compare_sorted(
    values: &dyn Array,
    distinct: &[usize],
    function: Oid,
    typid: Oid,
    typmod: i32,
    collation: Oid,
) -> Result<Vec<u64>> {
    // SAFETY: per the caller: memory contexts and fmgr on the backend
    // thread; every Datum lives in `memory` until it is deleted below.
    unsafe {
        crate::pgcall::in_scratch_memory(c"weft ordering", || -> Result<Vec<u64>> {
            let Some(mut writer) = ColumnWriter::new(values.data_type(), typid, typmod) else {
                return exec_err!("weft: {} values have no Postgres form", values.data_type());
            };
            let mut datums = Vec::with_capacity(distinct.len());
            for (k, &row) in distinct.iter().enumerate() {
                if k % STOP_CHECK_ROWS == STOP_CHECK_ROWS - 1 && pgcall::should_stop() {
                    return Err(pgcall::stopped());
                }
                datums.push(
                    writer
                        .datum(values, row)
                        .ok_or_else(|| DataFusionError::Internal("weft: a NULL among the values to order".into()))?,
                );
            }
            let flinfo = pg_sys::palloc0(std::mem::size_of::<pg_sys::FmgrInfo>()).cast::<pg_sys::FmgrInfo>();
            pg_sys::fmgr_info(function, flinfo);
            let compare = |a: usize, b: usize| {
                let result = pg_sys::FunctionCall2Coll(flinfo, collation, datums[a], datums[b]);
                (result.value() as i32).cmp(&0)
            };
            let mut order: Vec<usize> = (0..datums.len()).collect();
            order.sort_unstable_by(|&a, &b| compare(a, b));
            if pgcall::should_stop() {
                return Err(pgcall::stopped());
            }
            let mut places = vec![0; datums.len()];
            let mut place = 0;
            for (k, pair) in order.windows(2).enumerate() {
                if compare(pair[0], pair[1]) != Ordering::Equal {
                    place = k as u64 + 1;
                }
                places[pair[1]] = place;
            }
            Ok(places)
        })
    }
}

/// Whether `plan` (its subqueries included) orders by [`PgOrder`], on
/// one participant.
pub fn orders_by_postgres(plan: &datafusion::logical_expr::LogicalPlan) -> bool {
    use datafusion::logical_expr::expr::WindowFunctionDefinition;
    use datafusion::logical_expr::Expr;
    crate::plan::any_expr(plan, |e| {
        matches!(e, Expr::WindowFunction(window)
            if matches!(&window.fun, WindowFunctionDefinition::WindowUDF(udwf)
                if udwf.inner().downcast_ref::<PgOrder>().is_some()))
    })
}
