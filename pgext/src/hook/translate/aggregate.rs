//! Aggregate calls: the aggregates weft computes as Postgres does (count,
//! sum, min, max, avg over the types where DataFusion's results are
//! Postgres's), and the Aggrefs of a query level collected for its
//! aggregation.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions::math::expr_fn::{abs, isnan};
use datafusion::functions_aggregate::expr_fn::{avg, bool_or, count, max, min, sum};
use datafusion::logical_expr::{cast, lit, when, AggregateUDF, Expr};
use pgrx::pg_sys::{self, NodeTag};

use super::args::function_name;
use super::collation::{collation_is_c, deterministic};
use super::expr::{decimal_type, groupable};
use super::scope::{Parts, Scope};
use super::{Refusal, Translator};
use crate::nodes::{cast as node_cast, list};
use crate::plan::bridge::{foldable, Fold, PgFold};
use crate::plan::collate::extreme::CollatedExtreme;
use crate::plan::decimal_sum::{decimal_sum, squares_sum};
use crate::plan::moments::{statistic, Statistic};
use crate::plan::spread::{Spread, Summed};

impl Translator {
    /// One aggregate call, with its FILTER.
    ///
    /// # Safety
    /// `aggref` is an Aggref of the current level.
    pub(super) unsafe fn aggref(&mut self, aggref: *mut pg_sys::Aggref) -> Result<Expr, Refusal> {
        // SAFETY: per the caller.
        let filter = unsafe { self.aggregate_filter(aggref)? };
        self.one_scale += 1;
        // SAFETY: as above.
        let call = unsafe { self.aggregate_call(aggref) };
        self.one_scale -= 1;
        filtered(call?, filter)
    }

    /// A second aggregate computed beside `aggref`, and how the two give
    /// Postgres's value, where DataFusion's aggregate alone does not: a
    /// float8 sum or average beside the largest magnitude among its values,
    /// which tells an overflow from a sum of infinities
    /// ([`crate::plan::pgfn::float8_checked`]); a float min or max (of the
    /// numbers: DataFusion's grouped max passes over NaN) beside whether a
    /// NaN was among the values. None for any other aggregate.
    ///
    /// # Safety
    /// `aggref` is an Aggref of the current level.
    pub(super) unsafe fn companion(&mut self, aggref: *mut pg_sys::Aggref) -> Result<Option<Companion>, Refusal> {
        // SAFETY: per the caller.
        let a = unsafe { &*aggref };
        let f = a.aggfnoid.to_u32();
        let combine = match f {
            _ if Spread::of(f).is_some() && a.aggdistinct.is_null() => {
                let (kind, summed) = Spread::of(f).expect("a spread");
                Combine::Spread(kind, summed)
            }
            pg_sys::F_SUM_FLOAT8 | pg_sys::F_AVG_FLOAT8 | pg_sys::F_AVG_FLOAT4 => Combine::Overflow,
            pg_sys::F_MAX_FLOAT4 => Combine::Largest(ScalarValue::Float32(Some(f32::NAN))),
            pg_sys::F_MAX_FLOAT8 => Combine::Largest(ScalarValue::Float64(Some(f64::NAN))),
            pg_sys::F_MIN_FLOAT4 => Combine::Smallest(ScalarValue::Float32(Some(f32::NAN))),
            pg_sys::F_MIN_FLOAT8 => Combine::Smallest(ScalarValue::Float64(Some(f64::NAN))),
            _ => return Ok(None),
        };
        // SAFETY: an Aggref's args are TargetEntries.
        let [arg] = unsafe { list::<pg_sys::TargetEntry>(a.args) }[..] else {
            return Err(Refusal::shape("a float aggregate of several arguments"));
        };
        // A numeric of one display scale, as the aggregate reads it.
        self.one_scale += 1;
        // SAFETY: as above.
        let value = unsafe { self.expr((*arg).expr.cast(), &Scope::Rows) };
        self.one_scale -= 1;
        let value = value?;
        let beside = match combine {
            Combine::Overflow => vec![max(abs(cast(value, DataType::Float64)))],
            Combine::Largest(_) | Combine::Smallest(_) => vec![bool_or(isnan(value))],
            // The sum and the sum of squares, exactly (an int4's square
            // fits in int8).
            Combine::Spread(_, Summed::Narrow) => {
                let wide = cast(value, DataType::Int64);
                vec![
                    sum(cast(wide.clone(), DataType::Decimal128(38, 0))),
                    sum(cast(wide.clone() * wide, DataType::Decimal128(38, 0))),
                ]
            }
            Combine::Spread(_, Summed::Int8) => vec![decimal_sum(value.clone(), 19, 0), squares_sum(value, 0)],
            Combine::Spread(_, Summed::Numeric) => {
                let (precision, scale) = decimal_type(&value, self)?;
                vec![decimal_sum(value.clone(), precision, scale), squares_sum(value, scale)]
            }
        };
        // SAFETY: as above.
        let filter = unsafe { self.aggregate_filter(aggref)? };
        Ok(Some(Companion {
            aggregates: beside
                .into_iter()
                .map(|aggregate| filtered(aggregate, filter.clone()))
                .collect::<Result<_, _>>()?,
            combine,
        }))
    }

    /// An aggregate's `FILTER (WHERE ...)`, over the rows it aggregates.
    ///
    /// # Safety
    /// `aggref` is an Aggref of the current level.
    unsafe fn aggregate_filter(&mut self, aggref: *mut pg_sys::Aggref) -> Result<Option<Expr>, Refusal> {
        // SAFETY: per the caller.
        let filter = unsafe { (*aggref).aggfilter };
        if filter.is_null() {
            return Ok(None);
        }
        // SAFETY: as above; the filter is an expression of the level's rows.
        Ok(Some(unsafe { self.expr(filter.cast(), &Scope::Rows)? }))
    }

    /// One aggregate call, without its FILTER.
    ///
    /// # Safety
    /// `aggref` is an Aggref of the current level.
    unsafe fn aggregate_call(&mut self, aggref: *mut pg_sys::Aggref) -> Result<Expr, Refusal> {
        // SAFETY: per the caller.
        let a = unsafe { &*aggref };
        if a.agglevelsup != 0 {
            return Err(Refusal::shape("an outer-level aggregate"));
        }
        if !a.aggorder.is_null() || !a.aggdirectargs.is_null() {
            return Err(Refusal::shape("an aggregate with ORDER BY or direct arguments"));
        }
        let distinct = !a.aggdistinct.is_null();
        let mut args = Vec::new();
        let mut images = false;
        // SAFETY: an Aggref's args are TargetEntries.
        for target in unsafe { list::<pg_sys::TargetEntry>(a.args) } {
            // SAFETY: as above.
            let arg: *mut pg_sys::Node = unsafe { (*target).expr.cast() };
            // SAFETY: as above.
            if let Some(row) = unsafe { node_cast::<pg_sys::RowExpr>(arg, NodeTag::T_RowExpr) } {
                // SAFETY: as above.
                args.push(unsafe { self.distinct_row(a, row)? });
                continue;
            }
            if distinct {
                // SAFETY: as above.
                unsafe { groupable(arg, "DISTINCT in an aggregate")? };
            }
            // SAFETY: as above.
            let value = unsafe { self.expr(arg, &Scope::Rows)? };
            // SAFETY: as above.
            images |= unsafe { self.numeric_image(arg, &value, &Scope::Rows) };
            args.push(value);
        }
        if images {
            // A numeric carried as its image: counted, or folded by
            // Postgres (its sum by numeric_add, as numeric's sum adds).
            let f = a.aggfnoid.to_u32();
            return match f {
                _ if distinct => Err(Refusal::inexact(
                    "DISTINCT over numerics without a declared scale, whose equal values may differ in their bytes",
                )),
                pg_sys::F_COUNT_ANY => Ok(count(args.into_iter().next().ok_or("count without an argument")?)),
                pg_sys::F_SUM_NUMERIC => {
                    // SAFETY: as above.
                    unsafe { self.folded(a, pg_sys::Oid::from(pg_sys::F_NUMERIC_ADD), args) }
                }
                // SAFETY: as above.
                _ => unsafe { self.fold_of(a, args) },
            };
        }
        let one = || {
            args.first()
                .cloned()
                .ok_or(Refusal::shape("an aggregate without arguments"))
        };
        let f = a.aggfnoid.to_u32();
        let call = if let Some(build) = ordinary(f) {
            build(one()?)
        } else {
            match f {
                pg_sys::F_COUNT_ if a.aggstar => count(lit(1i64)),
                // The count beside which `companion` sums the values and
                // their squares.
                _ if Spread::of(f).is_some() && !distinct => count(one()?),
                // Statistics of floats, accumulated and combined as
                // Postgres's float8_accum and float8_combine do.
                _ if Statistic::of_floats(f).is_some() && !distinct => {
                    let kind = Statistic::of_floats(f).expect("a statistic");
                    statistic(kind, args.into_iter().map(|a| cast(a, DataType::Float64)).collect())
                }
                pg_sys::F_SUM_NUMERIC => {
                    let value = one()?;
                    let (precision, scale) = decimal_type(&value, self)?;
                    decimal_sum(value, precision, scale)
                }
                pg_sys::F_MIN_NUMERIC => min(one()?),
                pg_sys::F_MAX_NUMERIC => max(one()?),
                // Floats: min and max of the numbers, NaN (above every
                // number in Postgres) put back by `companion`; which of
                // -0 and 0 they return follows the order of the rows, in
                // Postgres too. Sums and averages add in whichever order
                // the rows come, as Postgres's parallel plans do, raising
                // Postgres's overflow error (`companion` again).
                pg_sys::F_MIN_FLOAT4 | pg_sys::F_MIN_FLOAT8 => min(not_nan(one()?)),
                pg_sys::F_MAX_FLOAT4 | pg_sys::F_MAX_FLOAT8 => max(not_nan(one()?)),
                pg_sys::F_SUM_FLOAT8 => sum(one()?),
                pg_sys::F_AVG_FLOAT8 | pg_sys::F_AVG_FLOAT4 => avg(cast(one()?, DataType::Float64)),
                // Text: by its bytes under C, else by Postgres's comparison.
                pg_sys::F_MIN_TEXT | pg_sys::F_MAX_TEXT => {
                    let largest = a.aggfnoid.to_u32() == pg_sys::F_MAX_TEXT;
                    if collation_is_c(a.inputcollid) {
                        if largest {
                            max(one()?)
                        } else {
                            min(one()?)
                        }
                    } else if deterministic(a.inputcollid) {
                        AggregateUDF::new_from_impl(CollatedExtreme::new(a.inputcollid, largest)).call(vec![one()?])
                    } else {
                        return Err(Refusal::inexact(
                            "min or max of text under a nondeterministic collation",
                        ));
                    }
                }
                // Any other aggregate Postgres folds with one function.
                // SAFETY: as above.
                _ if !distinct => return unsafe { self.fold_of(a, args) },
                other => {
                    // SAFETY: a function OID.
                    let name = unsafe { function_name(other) };
                    return Err(Refusal::Function(format!("aggregate {name}")));
                }
            }
        };
        if distinct {
            // Over values whose equal ones have equal bytes (`groupable`
            // above): counts, exact sums, and min and max (where DISTINCT
            // changes nothing).
            let exact = matches!(
                a.aggfnoid.to_u32(),
                pg_sys::F_COUNT_ANY
                    | pg_sys::F_SUM_INT2
                    | pg_sys::F_SUM_INT4
                    | pg_sys::F_SUM_INT8
                    | pg_sys::F_SUM_NUMERIC
                    | pg_sys::F_MIN_NUMERIC
                    | pg_sys::F_MAX_NUMERIC
            ) || ordinary(a.aggfnoid.to_u32()).is_some();
            return match call {
                call if crate::plan::decimal_sum::is_checked(&call) => Err(Refusal::shape(format!(
                    "sum(DISTINCT) of numerics of more than {} digits",
                    crate::plan::decimal_sum::NATIVE_DIGITS
                ))),
                Expr::AggregateFunction(mut f) if exact => {
                    f.params.distinct = true;
                    Ok(Expr::AggregateFunction(f))
                }
                _ => Err(Refusal::shape(
                    "DISTINCT in an aggregate other than count, sum, min and max",
                )),
            };
        }
        Ok(call)
    }

    /// The row `row` counted by `count(DISTINCT (a, b, ...))` (`a`), as a
    /// struct of its fields: a row is never NULL, whatever its fields, and
    /// two rows are the same where each field is (NULL the same as NULL),
    /// as Postgres's record equality has it, so every field must be one
    /// whose equal values have equal bytes.
    ///
    /// # Safety
    /// `a` is an Aggref of the current level, `row` one of its arguments.
    unsafe fn distinct_row(&mut self, a: &pg_sys::Aggref, row: *mut pg_sys::RowExpr) -> Result<Expr, Refusal> {
        if a.aggfnoid.to_u32() != pg_sys::F_COUNT_ANY || a.aggdistinct.is_null() {
            return Err(Refusal::shape(
                "a row value in an aggregate other than count(DISTINCT ...)",
            ));
        }
        let mut fields = Vec::new();
        // SAFETY: per the caller; a RowExpr's args are expressions.
        for field in unsafe { list::<pg_sys::Node>((*row).args) } {
            // SAFETY: as above.
            unsafe { groupable(field, "DISTINCT in an aggregate")? };
            // SAFETY: as above.
            let value = unsafe { self.expr(field, &Scope::Rows)? };
            // SAFETY: as above.
            if unsafe { self.numeric_image(field, &value, &Scope::Rows) } {
                return Err(Refusal::inexact(
                    "DISTINCT over numerics without a declared scale, whose equal values may differ in their bytes",
                ));
            }
            fields.push(value);
        }
        if fields.is_empty() {
            return Err(Refusal::shape("count(DISTINCT ()) of an empty row"));
        }
        Ok(datafusion::functions::core::expr_fn::r#struct(fields))
    }

    /// Aggregate `a` over `args` folded by Postgres with its own
    /// transition function ([`crate::plan::bridge::PgFold`]), or why it cannot
    /// be.
    ///
    /// # Safety
    /// `a` is an Aggref of the current level.
    unsafe fn fold_of(&mut self, a: &pg_sys::Aggref, args: Vec<Expr>) -> Result<Expr, Refusal> {
        // SAFETY: per the caller; a function OID.
        let name = unsafe { function_name(a.aggfnoid.to_u32()) };
        // SAFETY: an Aggref's args are TargetEntries.
        let nodes = unsafe { list::<pg_sys::TargetEntry>(a.args) };
        let [arg] = nodes[..] else {
            return Err(Refusal::Function(format!("aggregate {name} of several arguments")));
        };
        if !crate::guc::FUNCTION_BRIDGE.get() {
            return Err(Refusal::Function(format!("aggregate {name}")));
        }
        if !deterministic(a.inputcollid) {
            return Err(Refusal::inexact(format!(
                "aggregate {name} under a nondeterministic collation"
            )));
        }
        // SAFETY: as above; a catalog lookup.
        let typid = unsafe { pg_sys::exprType((*arg).expr.cast()) };
        if typid == pg_sys::BPCHAROID {
            // weft carries char(n) without its padding, and min and max
            // return the padding of the value they keep.
            return Err(Refusal::inexact(format!("aggregate {name} of char(n) values")));
        }
        // SAFETY: as above.
        let transition = unsafe { foldable(a.aggfnoid, typid) }
            .map_err(|why| Refusal::Function(format!("aggregate {name}: {why}")))?;
        // min and max keep one of the values they compare: which one of
        // equal values with different forms (-0 and 0, 1.0 and 1.00,
        // '1 mon' and '30 days') depends on the order of the rows, which
        // differs across participants. Sums by exact arithmetic do not.
        let exact_sum = matches!(
            transition.to_u32(),
            pg_sys::F_NUMERIC_ADD | pg_sys::F_INTERVAL_PL | pg_sys::F_CASH_PL
        );
        // SAFETY: catalog lookups on the backend thread.
        if !exact_sum && !unsafe { super::image::equal_images(typid, a.inputcollid) } {
            return Err(Refusal::inexact(format!(
                "aggregate {name} over a type whose equal values may differ in form, where the order of the rows picks one"
            )));
        }
        // SAFETY: as above.
        unsafe { self.folded(a, transition, args) }
    }

    /// Aggregate `a` over `args` folded by Postgres with `transition`.
    ///
    /// # Safety
    /// `a` is an Aggref of the current level with one argument.
    unsafe fn folded(&mut self, a: &pg_sys::Aggref, transition: pg_sys::Oid, args: Vec<Expr>) -> Result<Expr, Refusal> {
        // SAFETY: per the caller.
        let (typid, typmod) = unsafe {
            let arg = list::<pg_sys::TargetEntry>(a.args)
                .first()
                .map(|&t| (*t).expr.cast::<pg_sys::Node>())
                .ok_or("an aggregate without arguments")?;
            crate::types::base_type(pg_sys::exprType(arg), pg_sys::exprTypmod(arg))
        };
        let fold = Fold {
            aggregate: a.aggfnoid,
            transition,
            typid,
            typmod,
            collation: a.inputcollid,
        };
        // SAFETY: on the backend thread.
        let aggregate = unsafe { PgFold::new(fold) }.map_err(Refusal::inexact)?;
        Ok(AggregateUDF::new_from_impl(aggregate).call(args))
    }

    /// The two parts DataFusion computes of an aggregate whose display
    /// scale Postgres picks per value (see [`Parts`]): an avg's sum and
    /// count (sums in Decimal128, as numeric's avg sums), and a numeric
    /// sum's total and largest display scale where the summed values'
    /// scales differ. None for every other aggregate.
    ///
    /// # Safety
    /// `aggref` is an Aggref of the current level.
    pub(super) unsafe fn parts(&mut self, aggref: *mut pg_sys::Aggref) -> Result<Option<(Parts, Expr, Expr)>, Refusal> {
        self.one_scale += 1;
        // SAFETY: per the caller.
        let parts = unsafe { self.unfiltered_parts(aggref) };
        self.one_scale -= 1;
        let Some((kind, sum, other)) = parts? else {
            return Ok(None);
        };
        // SAFETY: per the caller.
        let filter = unsafe { self.aggregate_filter(aggref)? };
        Ok(Some((kind, filtered(sum, filter.clone())?, filtered(other, filter)?)))
    }

    /// [`Translator::parts`] without the aggregate's FILTER.
    ///
    /// # Safety
    /// `aggref` is an Aggref of the current level.
    unsafe fn unfiltered_parts(&mut self, aggref: *mut pg_sys::Aggref) -> Result<Option<(Parts, Expr, Expr)>, Refusal> {
        // SAFETY: per the caller.
        let a = unsafe { &*aggref };
        let f = a.aggfnoid.to_u32();
        let avg = matches!(
            f,
            pg_sys::F_AVG_INT2 | pg_sys::F_AVG_INT4 | pg_sys::F_AVG_INT8 | pg_sys::F_AVG_NUMERIC
        );
        if !avg && f != pg_sys::F_SUM_NUMERIC {
            return Ok(None);
        }
        if !a.aggorder.is_null() || !a.aggdistinct.is_null() || a.agglevelsup != 0 {
            if !avg {
                // The plain aggregate's path refuses it, saying why.
                return Ok(None);
            }
            return Err(Refusal::shape("avg with ORDER BY, DISTINCT or of an outer level"));
        }
        // SAFETY: an Aggref's args are TargetEntries.
        let args = unsafe { list::<pg_sys::TargetEntry>(a.args) };
        let [arg] = args[..] else {
            return Err(Refusal::shape("avg or sum of several arguments"));
        };
        // SAFETY: as above.
        let arg: *mut pg_sys::Node = unsafe { (*arg).expr.cast() };
        if avg {
            // SAFETY: as above.
            let value = unsafe { self.expr(arg, &Scope::Rows)? };
            // SAFETY: as above.
            if unsafe { self.numeric_image(arg, &value, &Scope::Rows) } {
                // Summed by Postgres; Postgres divides (as numeric_avg
                // does).
                // SAFETY: as above.
                let total = unsafe { self.folded(a, pg_sys::Oid::from(pg_sys::F_NUMERIC_ADD), vec![value.clone()])? };
                return Ok(Some((Parts::Avg, total, count(value))));
            }
            let (precision, scale) = if f == pg_sys::F_AVG_NUMERIC {
                decimal_type(&value, self)?
            } else {
                (19, 0)
            };
            return Ok(Some((
                Parts::Avg,
                decimal_sum(value.clone(), precision, scale),
                count(value),
            )));
        }
        // A sum whose values have one display scale is an ordinary
        // aggregate.
        // SAFETY: as above.
        let refusal = match unsafe { self.expr(arg, &Scope::Rows) } {
            Ok(_) => return Ok(None),
            Err(refusal) => refusal,
        };
        // Each value at the largest scale (exactly), and its own display
        // scale beside it.
        self.value_only += 1;
        // SAFETY: as above.
        let value = unsafe { self.expr(arg, &Scope::Rows) };
        self.value_only -= 1;
        let Ok(value) = value else { return Err(refusal) };
        // SAFETY: as above.
        let Ok(scale) = (unsafe { self.display_scale(arg, &value) }) else {
            return Err(refusal);
        };
        let (precision, total_scale) = decimal_type(&value, self)?;
        Ok(Some((
            Parts::ScaledSum,
            decimal_sum(value, precision, total_scale),
            max(scale),
        )))
    }
}

/// How DataFusion computes aggregate `f` as Postgres does, alike as a plain
/// aggregate and over a window: `count(x)`, integer sums (int2 and int4
/// into int8, exactly; int8 into numeric, summed in Decimal128, which
/// cannot wrap: an overflow past 38 digits is an error), min and max of
/// integers, dates and timestamps. None for any other aggregate.
pub(super) fn ordinary(f: u32) -> Option<fn(Expr) -> Expr> {
    Some(match f {
        pg_sys::F_COUNT_ANY => count,
        pg_sys::F_SUM_INT2 | pg_sys::F_SUM_INT4 => |v| sum(cast(v, DataType::Int64)),
        pg_sys::F_SUM_INT8 => |v| sum(cast(v, DataType::Decimal128(38, 0))),
        pg_sys::F_MIN_INT2
        | pg_sys::F_MIN_INT4
        | pg_sys::F_MIN_INT8
        | pg_sys::F_MIN_DATE
        | pg_sys::F_MIN_TIMESTAMP
        | pg_sys::F_MIN_TIMESTAMPTZ => min,
        pg_sys::F_MAX_INT2
        | pg_sys::F_MAX_INT4
        | pg_sys::F_MAX_INT8
        | pg_sys::F_MAX_DATE
        | pg_sys::F_MAX_TIMESTAMP
        | pg_sys::F_MAX_TIMESTAMPTZ => max,
        _ => return None,
    })
}

/// Aggregates computed beside another and how they combine with it into
/// Postgres's value; see [`Translator::companion`].
pub(super) struct Companion {
    /// The aggregates beside it.
    pub aggregates: Vec<Expr>,
    combine: Combine,
}

/// How a [`Companion`] combines with its aggregate.
enum Combine {
    /// A float8 total and the largest magnitude among its values: the
    /// total, or Postgres's overflow error.
    Overflow,
    /// The largest number and whether a NaN was among the values: NaN (of
    /// this value) if one was.
    Largest(ScalarValue),
    /// The smallest number and whether a NaN was among the values: NaN
    /// (of this value) if there was no number but a NaN.
    Smallest(ScalarValue),
    /// A count of integers or numerics, beside their sum and sum of
    /// squares: their variance or standard deviation
    /// ([`crate::plan::spread`]).
    Spread(Spread, Summed),
}

impl Companion {
    /// Postgres's value, of the aggregate's result `first` and the
    /// companions' `beside` (one per aggregate of [`Companion::aggregates`]).
    pub(super) fn read(&self, first: Expr, mut beside: Vec<Expr>) -> Expr {
        if let Combine::Spread(kind, _) = self.combine {
            let squares = beside.pop().expect("a sum of squares");
            let sum = beside.pop().expect("a sum");
            return crate::plan::spread::spread(kind, first, sum, squares);
        }
        let second = beside.pop().expect("a companion");
        match &self.combine {
            Combine::Overflow => crate::plan::pgfn::float8_checked(first, second),
            Combine::Largest(nan) => when(second, lit(nan.clone()))
                .otherwise(first)
                .expect("a CASE with a WHEN"),
            Combine::Smallest(nan) => when(first.clone().is_null().and(second), lit(nan.clone()))
                .otherwise(first)
                .expect("a CASE with a WHEN"),
            Combine::Spread(..) => unreachable!("read above"),
        }
    }
}

/// A float `value`, NULL where it is NaN.
fn not_nan(value: Expr) -> Expr {
    when(isnan(value.clone()), lit(ScalarValue::Null))
        .otherwise(value)
        .expect("a CASE with a WHEN")
}

/// `call` (an aggregate) counting only the rows `filter` holds for, as
/// Postgres's FILTER does (a NULL condition excludes the row).
fn filtered(call: Expr, filter: Option<Expr>) -> Result<Expr, Refusal> {
    match (call, filter) {
        (call, None) => Ok(call),
        (Expr::AggregateFunction(mut f), Some(filter)) => {
            f.params.filter = Some(Box::new(filter));
            Ok(Expr::AggregateFunction(f))
        }
        _ => Err(Refusal::shape("FILTER on an aggregate weft computes otherwise")),
    }
}

/// Collects the Aggrefs of this level in `node` (not inside sublinks).
///
/// # Safety
/// `node` is NULL or a valid expression.
pub(super) unsafe fn collect_aggrefs(
    node: *mut pg_sys::Node,
    out: &mut Vec<*mut pg_sys::Aggref>,
) -> Result<(), Refusal> {
    if node.is_null() {
        return Ok(());
    }
    // SAFETY: per the caller; pull_var_clause-like walk done by Postgres:
    // list every Aggref (including nested ones, which Postgres forbids).
    unsafe {
        let found = pg_sys::pull_var_clause(
            node,
            // Aggregates inside window functions (`sum(count(*)) OVER
            // (...)`) are the level's too.
            pg_sys::PVC_INCLUDE_AGGREGATES as i32
                | pg_sys::PVC_RECURSE_WINDOWFUNCS as i32
                | pg_sys::PVC_RECURSE_PLACEHOLDERS as i32,
        );
        for item in list::<pg_sys::Node>(found) {
            if let Some(aggref) = node_cast::<pg_sys::Aggref>(item, NodeTag::T_Aggref) {
                out.push(aggref);
            }
        }
    }
    Ok(())
}
