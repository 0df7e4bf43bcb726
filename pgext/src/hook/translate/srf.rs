//! Set-returning functions in FROM whose rows are known when the query is
//! translated: `generate_series` of integers with constant bounds, and
//! `unnest` of a constant array (WITH ORDINALITY too). Every participant
//! makes every row, as of any constant; LATERAL calls, which read columns
//! beside them, stay with Postgres.

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::catalog::TableFunctionImpl;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::functions_table::generate_series::GenerateSeriesFunc;
use datafusion::logical_expr::{col, lit, EmptyRelation, Expr, LogicalPlan, LogicalPlanBuilder};
use pgrx::pg_sys::{self, NodeTag};

use super::{args, df, Refusal, Translator};
use crate::nodes::{cast, list};
use crate::types::{ColumnReader, PgType};

impl Translator {
    /// The rows of a set-returning function in FROM: `generate_series` of
    /// integers with constant bounds and step, by DataFusion's own table
    /// function, and `unnest` of a constant array (each participant makes
    /// every row, as of a constant).
    ///
    /// # Safety
    /// `rte` is a valid RTE_FUNCTION entry of the current level.
    pub(super) unsafe fn function_scan(
        &mut self,
        rte: &pg_sys::RangeTblEntry,
        alias: &str,
    ) -> Result<LogicalPlan, Refusal> {
        if rte.lateral {
            return Err(Refusal::shape("a function in FROM reading columns beside it (LATERAL)"));
        }
        // SAFETY: per the caller.
        let functions = unsafe { list::<pg_sys::RangeTblFunction>(rte.functions) };
        let [function] = functions[..] else {
            return Err(Refusal::shape("ROWS FROM of several functions"));
        };
        // SAFETY: as above.
        let call = unsafe { cast::<pg_sys::FuncExpr>((*function).funcexpr, NodeTag::T_FuncExpr) }
            .ok_or_else(|| Refusal::shape("a function in FROM that is not a function call"))?;
        // SAFETY: as above.
        let call = unsafe { &*call };
        if call.funcid.to_u32() == pg_sys::F_UNNEST_ANYARRAY {
            // SAFETY: as above.
            return unsafe { self.unnest(call, rte.funcordinality) };
        }
        if rte.funcordinality {
            return Err(Refusal::shape("WITH ORDINALITY of a function other than unnest"));
        }
        // SAFETY: as above.
        unsafe { self.series(call, alias) }
    }

    /// `generate_series` of integers with constant bounds and step.
    ///
    /// # Safety
    /// `call` is a valid function call of the current level's FROM.
    unsafe fn series(&mut self, call: &pg_sys::FuncExpr, alias: &str) -> Result<LogicalPlan, Refusal> {
        let result = match call.funcid.to_u32() {
            pg_sys::F_GENERATE_SERIES_INT4_INT4 | pg_sys::F_GENERATE_SERIES_INT4_INT4_INT4 => DataType::Int32,
            pg_sys::F_GENERATE_SERIES_INT8_INT8 | pg_sys::F_GENERATE_SERIES_INT8_INT8_INT8 => DataType::Int64,
            other => {
                // SAFETY: a function OID.
                let name = unsafe { args::function_name(other) };
                return Err(Refusal::Function(format!("set-returning function {name} in FROM")));
            }
        };
        let mut bounds = Vec::new();
        // SAFETY: as above.
        for arg in unsafe { list::<pg_sys::Node>(call.args) } {
            // SAFETY: as above.
            let Some(value) = (unsafe { self.constant_of(arg) }) else {
                return Err(Refusal::shape("generate_series of bounds that are not constants"));
            };
            bounds.push(match value.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(None)) => ScalarValue::Null,
                // Within what DataFusion's series steps through without
                // overflowing.
                Ok(ScalarValue::Int64(Some(v))) if v.unsigned_abs() < 1 << 62 => ScalarValue::Int64(Some(v)),
                _ => return Err(Refusal::shape("generate_series of bounds near the integers' edges")),
            });
        }
        if bounds.get(2) == Some(&ScalarValue::Int64(Some(0))) {
            // Postgres's error for a step of zero.
            return Err(Refusal::shape("generate_series with a step of zero"));
        }
        let bounds: Vec<Expr> = bounds.into_iter().map(datafusion::logical_expr::lit).collect();
        let session = datafusion::execution::SessionStateBuilder::new().build();
        let series = GenerateSeriesFunc {}
            .call_with_args(datafusion::catalog::TableFunctionArgs::new(&bounds, &session))
            .map_err(df)?;
        let scan = LogicalPlanBuilder::scan(format!("{alias}_series"), provider_as_source(series), None)
            .map_err(df)?
            .build()
            .map_err(df)?;
        let value = col("value");
        let value = if result == DataType::Int32 {
            datafusion::logical_expr::cast(value, DataType::Int32)
        } else {
            value
        };
        LogicalPlanBuilder::from(scan)
            .project(vec![value.alias("value")])
            .map_err(df)?
            .build()
            .map_err(df)
    }

    /// `unnest` of a constant array: its elements in storage order (a
    /// multi-dimensional array flattened, NULL elements as NULL rows, no row
    /// of a NULL or empty array), and with `ordinality` their numbers from 1.
    ///
    /// # Safety
    /// `call` is a valid `unnest(anyarray)` call of the current level's FROM.
    unsafe fn unnest(&mut self, call: &pg_sys::FuncExpr, ordinality: bool) -> Result<LogicalPlan, Refusal> {
        // SAFETY: per the caller.
        let [arg] = unsafe { list::<pg_sys::Node>(call.args) }[..] else {
            return Err(Refusal::shape("unnest of several arrays"));
        };
        // SAFETY: as above; the planner folds constant expressions.
        let folded = unsafe { pg_sys::eval_const_expressions(std::ptr::null_mut(), arg) };
        // SAFETY: as above.
        let Some(array) = (unsafe { cast::<pg_sys::Const>(folded, NodeTag::T_Const) }) else {
            return Err(Refusal::shape("unnest of an array that is not a constant"));
        };
        // SAFETY: a Const node.
        let array = unsafe { &*array };
        // SAFETY: a catalog lookup.
        let element = unsafe { pg_sys::get_element_type(array.consttype) };
        if element == pg_sys::InvalidOid {
            return Err(Refusal::shape("unnest of a value that is not an array"));
        }
        let ty = PgType::of(element, array.consttypmod).map_err(|why| Refusal::shape(format!("unnest: {why}")))?;
        let values = if array.constisnull {
            Vec::new()
        } else {
            // SAFETY: a non-NULL array constant, deconstructed on the
            // backend thread; the reader copies each element out.
            unsafe { elements(array.constvalue, element, ty)? }
        };
        let mut fields = vec![Field::new("c1", ty.arrow(), true)];
        if ordinality {
            fields.push(Field::new("c2", DataType::Int64, false));
        }
        if values.is_empty() {
            let schema = DFSchema::from_unqualified_fields(fields.into(), Default::default()).map_err(df)?;
            return Ok(LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema: schema.into(),
            }));
        }
        let rows = values
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                let mut row = vec![lit(value)];
                if ordinality {
                    row.push(lit(i as i64 + 1));
                }
                row
            })
            .collect();
        let plan = LogicalPlanBuilder::values(rows).map_err(df)?.build().map_err(df)?;
        // The VALUES plan names its columns column1, ...: the array's
        // element type on every row (NULLs typed).
        let columns = fields
            .iter()
            .enumerate()
            .map(|(i, field)| {
                datafusion::logical_expr::cast(col(format!("column{}", i + 1)), field.data_type().clone())
                    .alias(field.name())
            })
            .collect::<Vec<Expr>>();
        LogicalPlanBuilder::from(plan)
            .project(columns)
            .map_err(df)?
            .build()
            .map_err(df)
    }
}

/// The elements of array `datum` (of element type `element`, read as `ty`)
/// in storage order.
///
/// # Safety
/// `datum` is a valid, non-NULL array of `element` values; on the backend
/// thread.
unsafe fn elements(datum: pg_sys::Datum, element: pg_sys::Oid, ty: PgType) -> Result<Vec<ScalarValue>, Refusal> {
    let (mut length, mut by_value, mut align) = (0i16, false, 0 as std::ffi::c_char);
    let (mut values, mut nulls, mut count) = (std::ptr::null_mut(), std::ptr::null_mut(), 0i32);
    // SAFETY: per the caller; deconstruct_array palloc's its outputs in the
    // current memory context, which outlives this call.
    unsafe {
        pg_sys::get_typlenbyvalalign(element, &mut length, &mut by_value, &mut align);
        let array = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()).cast::<pg_sys::ArrayType>();
        pg_sys::deconstruct_array(
            array,
            element,
            length.into(),
            by_value,
            align,
            &mut values,
            &mut nulls,
            &mut count,
        );
    }
    let count = usize::try_from(count).unwrap_or(0);
    let mut reader = ColumnReader::new(ty, count);
    for i in 0..count {
        // SAFETY: deconstruct_array made `count` values and flags.
        let (value, null) = unsafe { (*values.add(i), *nulls.add(i)) };
        // SAFETY: per the caller, each non-NULL value is an `element`.
        unsafe { reader.push(value, null) }.map_err(|e| Refusal::shape(format!("unnest: {e}")))?;
    }
    let array = reader.finish().map_err(|e| Refusal::shape(format!("unnest: {e}")))?;
    (0..array.len())
        .map(|i| ScalarValue::try_from_array(&array, i).map_err(df))
        .collect()
}
