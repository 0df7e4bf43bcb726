//! UNION, INTERSECT and EXCEPT: a query level whose rows are a set
//! operation's over subqueries (Postgres's `setOperations` tree, whose
//! leaves are subquery entries of the level's range table).
//!
//! Postgres resolves each output column's type and coerces the leaves'
//! columns to it when it plans; weft puts both sides' columns in one
//! Arrow form where that changes no value and no display scale
//! ([`coerced`]), and refuses the others.
//! Duplicates are removed (UNION, INTERSECT, EXCEPT) by equality of the
//! bytes, so only over types whose equal values have equal bytes, with
//! NULLs equal to each other as in Postgres; numerics whose display scale
//! is each value's by value ([`by_value`]). INTERSECT ALL and EXCEPT ALL,
//! whose multiplicities DataFusion's own do not keep, are INTERSECT and
//! EXCEPT of rows numbered among their equals ([`numbered`]).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{lit, not, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder};
use pgrx::pg_sys::{self, NodeTag};

use super::{df, expr, rt_fetch, Refusal, Translator};
use crate::nodes::{cast as node_cast, oid_list};
use crate::plan::pgfn;

impl Translator {
    /// The rows of the current level's set operation, `node` (a
    /// SetOperationStmt or a leaf's RangeTblRef).
    ///
    /// # Safety
    /// `node` is a node of the current level's `setOperations` tree.
    pub(super) unsafe fn set_operation(&mut self, node: *mut pg_sys::Node) -> Result<LogicalPlan, Refusal> {
        // SAFETY: per the caller.
        unsafe {
            if let Some(leaf) = node_cast::<pg_sys::RangeTblRef>(node, NodeTag::T_RangeTblRef) {
                let query = self.level().query;
                let rte = &*rt_fetch(query, (*leaf).rtindex)?;
                if rte.rtekind != pg_sys::RTEKind::RTE_SUBQUERY {
                    return Err(Refusal::shape("a set operation over something other than subqueries"));
                }
                return self.query(rte.subquery);
            }
            let op = node_cast::<pg_sys::SetOperationStmt>(node, NodeTag::T_SetOperationStmt)
                .ok_or("an unusual set operation")?;
            let op = &*op;
            let left = self.set_operation(op.larg)?;
            let right = self.set_operation(op.rarg)?;
            let (left, right) = coerced(&oid_list(op.colTypes), left, right)?;
            let left_fields = left.schema().fields();
            if !op.all || op.op != pg_sys::SetOperation::SETOP_UNION {
                // Duplicates removed by the bytes, or numerics by value.
                let types = oid_list(op.colTypes);
                let collations = oid_list(op.colCollations);
                let mut images = Vec::with_capacity(types.len());
                for ((&typid, &collation), field) in types.iter().zip(&collations).zip(left_fields.iter()) {
                    let image = typid == pg_sys::NUMERICOID && field.data_type() == &DataType::Binary;
                    if !image {
                        expr::equal_as_bytes(typid, collation, field.data_type(), "a set operation")?;
                    }
                    images.push(image);
                }
                if images.contains(&true) {
                    if op.all {
                        return Err(Refusal::inexact(
                            "INTERSECT ALL or EXCEPT ALL over numerics whose display scale is each value's",
                        ));
                    }
                    return by_value(op.op, left, right, &images);
                }
            }
            match (op.op, op.all) {
                (pg_sys::SetOperation::SETOP_UNION, true) => LogicalPlanBuilder::from(left)
                    .union(right)
                    .map_err(df)?
                    .build()
                    .map_err(df),
                (pg_sys::SetOperation::SETOP_UNION, false) => LogicalPlanBuilder::from(left)
                    .union_distinct(right)
                    .map_err(df)?
                    .build()
                    .map_err(df),
                (pg_sys::SetOperation::SETOP_INTERSECT, false) => {
                    LogicalPlanBuilder::intersect(left, right, false).map_err(df)
                }
                (pg_sys::SetOperation::SETOP_EXCEPT, false) => {
                    LogicalPlanBuilder::except(left, right, false).map_err(df)
                }
                (pg_sys::SetOperation::SETOP_INTERSECT, true) => {
                    let intersection = LogicalPlanBuilder::intersect(numbered(left)?, numbered(right)?, false);
                    unnumbered(intersection.map_err(df)?)
                }
                (pg_sys::SetOperation::SETOP_EXCEPT, true) => {
                    let difference = LogicalPlanBuilder::except(numbered(left)?, numbered(right)?, false);
                    unnumbered(difference.map_err(df)?)
                }
                _ => Err(Refusal::shape("an unusual set operation")),
            }
        }
    }
}

/// `left` and `right` with their columns in one Arrow form, as Postgres
/// coerces them to the set operation's column types (`types`) without
/// changing a value or how it shows: integers widened, numerics of one
/// display scale in one Decimal128, and numerics of different scales (or
/// some carried as images) all as Postgres's numerics, carried as images
/// (each value keeps its own display scale, as Postgres's column of
/// numerics without a declared scale shows it).
///
/// # Safety
/// On the backend thread.
unsafe fn coerced(
    types: &[pg_sys::Oid],
    left: LogicalPlan,
    right: LogicalPlan,
) -> Result<(LogicalPlan, LogicalPlan), Refusal> {
    let (l, r) = (left.schema().fields().clone(), right.schema().fields().clone());
    if l.len() != r.len() || l.len() != types.len() {
        return Err(Refusal::shape("a set operation whose sides differ in width"));
    }
    if l.iter().zip(r.iter()).all(|(a, b)| a.data_type() == b.data_type()) {
        return Ok((left, right));
    }
    let refused = || Refusal::shape("a set operation whose sides' columns Postgres coerces to a common type");
    // The form of each column on both sides.
    let mut forms = Vec::with_capacity(types.len());
    for ((a, b), &typid) in l.iter().zip(r.iter()).zip(types) {
        let (a, b) = (a.data_type(), b.data_type());
        forms.push(match (typid, a, b) {
            _ if a == b => None,
            (
                pg_sys::INT8OID,
                DataType::Int16 | DataType::Int32 | DataType::Int64,
                DataType::Int16 | DataType::Int32 | DataType::Int64,
            )
            | (pg_sys::INT4OID, DataType::Int16 | DataType::Int32, DataType::Int16 | DataType::Int32) => {
                Some(Form::Cast(if typid == pg_sys::INT8OID {
                    DataType::Int64
                } else {
                    DataType::Int32
                }))
            }
            (pg_sys::NUMERICOID, &DataType::Decimal128(_, x), &DataType::Decimal128(_, y)) if x == y => {
                Some(Form::Cast(DataType::Decimal128(38, x)))
            }
            (
                pg_sys::NUMERICOID,
                DataType::Decimal128(..) | DataType::Binary,
                DataType::Decimal128(..) | DataType::Binary,
            ) => Some(Form::Image),
            _ => return Err(refused()),
        });
    }
    let side = |rows: LogicalPlan| -> Result<LogicalPlan, Refusal> {
        let columns = rows
            .schema()
            .iter()
            .zip(&forms)
            .map(|((qualifier, field), form)| {
                let value = Expr::Column(Column::from((qualifier, field)));
                let value = match form {
                    None => value,
                    Some(Form::Cast(to)) => datafusion::logical_expr::cast(value, to.clone()),
                    Some(Form::Image) if field.data_type() == &DataType::Binary => value,
                    // SAFETY: per the caller.
                    Some(Form::Image) => unsafe {
                        super::function::numeric_call(
                            pg_sys::F_NUMERIC_UPLUS,
                            vec![(value, pg_sys::NUMERICOID)],
                            "a set operation over numerics of different display scales",
                        )?
                    },
                };
                Ok(value.alias(field.name()))
            })
            .collect::<Result<Vec<_>, Refusal>>()?;
        LogicalPlanBuilder::from(rows)
            .project(columns)
            .map_err(df)?
            .build()
            .map_err(df)
    };
    Ok((side(left)?, side(right)?))
}

/// How [`coerced`] puts a column in one form.
enum Form {
    /// A cast that keeps every value and how it shows.
    Cast(DataType),
    /// Postgres's numeric, carried as its image.
    Image,
}

/// UNION, INTERSECT or EXCEPT (`op`, without ALL) of `left` and `right`
/// whose columns marked in `images` are numerics carried as their images,
/// compared by value: rows grouped by the other columns and the numerics'
/// keys ([`pgfn::numeric_key`]), and kept by the sides they came from.
/// Of equal numerics Postgres shows whichever its plan met first, so a
/// group whose numerics differ in display scale (`1.0` and `1.00`) hands
/// the query back to Postgres ([`pgfn::one_form`]); every other group has
/// one form to show.
fn by_value(
    op: pg_sys::SetOperation::Type,
    left: LogicalPlan,
    right: LogicalPlan,
    images: &[bool],
) -> Result<LogicalPlan, Refusal> {
    use datafusion::functions_aggregate::expr_fn::{bool_or, max, min};
    let names: Vec<String> = left.schema().fields().iter().map(|f| f.name().clone()).collect();
    let column = |i: usize| format!("__weft_c{i}");
    // Each side's columns under one set of names, and which side it is.
    let side = |rows: LogicalPlan, is_left: bool| -> Result<LogicalPlan, Refusal> {
        let mut columns: Vec<Expr> = rows
            .schema()
            .columns()
            .into_iter()
            .enumerate()
            .map(|(i, c)| Expr::Column(c).alias(column(i)))
            .collect();
        columns.push(lit(is_left).alias(SIDE));
        LogicalPlanBuilder::from(rows)
            .project(columns)
            .map_err(df)?
            .build()
            .map_err(df)
    };
    let both = LogicalPlanBuilder::from(side(left, true)?)
        .union(side(right, false)?)
        .map_err(df)?
        .build()
        .map_err(df)?;
    let read = |i: usize| Expr::Column(Column::from_name(column(i)));
    let mut groups = Vec::new();
    let mut aggregates = Vec::new();
    for (i, &image) in images.iter().enumerate() {
        if image {
            groups.push(pgfn::numeric_key(read(i)).alias(format!("__weft_k{i}")));
            aggregates.push(min(read(i)).alias(format!("__weft_min{i}")));
            aggregates.push(max(read(i)).alias(format!("__weft_max{i}")));
        } else {
            groups.push(read(i).alias(column(i)));
        }
    }
    let side = Expr::Column(Column::from_name(SIDE));
    aggregates.push(bool_or(side.clone()).alias("__weft_in_left"));
    aggregates.push(bool_or(not(side)).alias("__weft_in_right"));
    let grouped = LogicalPlanBuilder::from(both)
        .aggregate(groups, aggregates)
        .map_err(df)?;
    let (in_left, in_right) = (col_named("__weft_in_left"), col_named("__weft_in_right"));
    let kept = match op {
        pg_sys::SetOperation::SETOP_UNION => None,
        pg_sys::SetOperation::SETOP_INTERSECT => Some(in_left.and(in_right)),
        pg_sys::SetOperation::SETOP_EXCEPT => Some(in_left.and(not(in_right))),
        _ => return Err(Refusal::shape("an unusual set operation")),
    };
    let grouped = match kept {
        Some(condition) => grouped.filter(condition).map_err(df)?,
        None => grouped,
    };
    let columns: Vec<Expr> = names
        .iter()
        .enumerate()
        .map(|(i, name)| match images[i] {
            true => pgfn::one_form(
                col_named(&format!("__weft_min{i}")),
                col_named(&format!("__weft_max{i}")),
            )
            .alias(name),
            false => read(i).alias(name),
        })
        .collect();
    grouped.project(columns).map_err(df)?.build().map_err(df)
}

/// An unqualified column.
fn col_named(name: &str) -> Expr {
    Expr::Column(Column::from_name(name))
}

/// The column telling [`by_value`]'s rows of the left side from the
/// right's.
const SIDE: &str = "__weft_side";

/// The column numbering a side's equal rows for INTERSECT ALL and EXCEPT
/// ALL.
const OCCURRENCE: &str = "__weft_occurrence";

/// `rows` with each row's occurrence among the rows equal to it (1, 2,
/// ...) beside it: with it, no two rows are equal, so that INTERSECT and
/// EXCEPT without ALL keep each row as often as Postgres's ALL keeps it
/// (min(m, n) and max(m - n, 0) of m equal rows on the left and n on the
/// right).
fn numbered(rows: LogicalPlan) -> Result<LogicalPlan, Refusal> {
    let partition: Vec<Expr> = rows.schema().columns().into_iter().map(Expr::Column).collect();
    let occurrence = row_number().partition_by(partition).build().map_err(df)?;
    let name = occurrence.schema_name().to_string();
    let mut columns: Vec<Expr> = rows.schema().columns().into_iter().map(Expr::Column).collect();
    let windowed = LogicalPlanBuilder::window_plan(rows, vec![occurrence]).map_err(df)?;
    columns.push(Expr::Column(Column::from_name(name)).alias(OCCURRENCE));
    LogicalPlanBuilder::from(windowed)
        .project(columns)
        .map_err(df)?
        .build()
        .map_err(df)
}

/// `rows` of [`numbered`] sides without their occurrences.
fn unnumbered(rows: LogicalPlan) -> Result<LogicalPlan, Refusal> {
    let columns: Vec<Expr> = rows
        .schema()
        .columns()
        .into_iter()
        .filter(|c| c.name != OCCURRENCE)
        .map(Expr::Column)
        .collect();
    LogicalPlanBuilder::from(rows)
        .project(columns)
        .map_err(df)?
        .build()
        .map_err(df)
}

/// The range table index of the leftmost leaf of set operation `node`,
/// whose entry the level's target list reads the rows as.
///
/// # Safety
/// `node` is a node of a valid `setOperations` tree.
pub(super) unsafe fn leftmost(node: *mut pg_sys::Node) -> Result<i32, Refusal> {
    // SAFETY: per the caller.
    unsafe {
        if let Some(leaf) = node_cast::<pg_sys::RangeTblRef>(node, NodeTag::T_RangeTblRef) {
            return Ok((*leaf).rtindex);
        }
        let op = node_cast::<pg_sys::SetOperationStmt>(node, NodeTag::T_SetOperationStmt)
            .ok_or("an unusual set operation")?;
        leftmost((*op).larg)
    }
}
