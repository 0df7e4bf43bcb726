//! Expressions: the allowlist, keyed by the OIDs of Postgres's functions
//! (an operator by its function, `opfuncid`), each entry computing exactly
//! what Postgres computes for the Arrow types weft reads.
//!
//! What is on it, and why it is exact:
//! - comparisons of integers (any mix of widths), numerics, dates,
//!   timestamps and booleans: the values are exact in Arrow and compare
//!   the same way;
//! - text and bpchar equality: a UTF8 database with deterministic
//!   collations compares equal strings byte for byte, and bpchar values are
//!   read without their padding, which is what bpchar equality ignores;
//!   text ordering only under the C collation (byte order);
//! - integer + - * / and unary minus through [`pgfn`], which raises
//!   Postgres's own errors on overflow and division by zero; numeric + - *
//!   in Decimal128, whose scale rules (max of the scales, sum of the
//!   scales) are numeric's;
//! - numeric division and avg only where their value alone matters (a
//!   comparison's operands, a subquery compared with: `value_only`),
//!   through `pg_numeric_div`; as result columns Postgres finishes them
//!   ([`super::finish`]);
//! - LIKE on text with Postgres's default escape (backslash), substring
//!   with constant positive bounds, EXTRACT(year|month|day FROM date),
//!   casts that widen exactly, IN lists;
//! - count (also DISTINCT), sum over integers and numerics (int8 and
//!   numeric sums in Decimal128, never wrapping), min and max of integers,
//!   numerics, dates and timestamps.
//!
//! Everything else (float comparisons, where -0 = 0 and NaN sorts last in
//! Postgres; text min/max and ordering under collations other than C;
//! nondeterministic collations) is refused.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::logical_expr::expr::{Case, Like};
use datafusion::logical_expr::{
    binary_expr, cast, exists, in_list, in_subquery, lit, not, scalar_subquery, Expr, ExprSchemable, Operator,
};
use pgrx::pg_sys::{self, NodeTag, Oid};

use super::{df, Refusal, Translator};
use crate::nodes::{array_elements, cast as node_cast, constant, list, tag};
use crate::plan::pgfn::{self, IntOp};

/// What an expression's Vars and Aggrefs mean.
pub enum Scope {
    /// Rows of the FROM clause.
    Rows,
    /// Rows after GROUP BY: a grouping expression is its group column, an
    /// aggregate its result column; an avg is computed as a sum and a
    /// count column, which only Postgres's finishing expression divides.
    Grouped {
        groups: Vec<(*mut pg_sys::Node, String)>,
        aggs: Vec<(*mut pg_sys::Aggref, String)>,
        avgs: Vec<(*mut pg_sys::Aggref, String, String)>,
    },
}

impl Translator {
    /// Translates one expression.
    ///
    /// # Safety
    /// `node` is a valid expression of the current level, on the backend
    /// thread.
    pub(super) unsafe fn expr(&mut self, node: *mut pg_sys::Node, scope: &Scope) -> Result<Expr, Refusal> {
        if let Scope::Grouped { groups, aggs, .. } = scope {
            // SAFETY: per the caller; equal() compares parse trees.
            unsafe {
                if let Some((_, name)) = groups.iter().find(|(g, _)| pg_sys::equal(g.cast(), node.cast())) {
                    return Ok(Expr::Column(name.as_str().into()));
                }
                if let Some(aggref) = node_cast::<pg_sys::Aggref>(node, NodeTag::T_Aggref) {
                    if let Scope::Grouped { avgs, .. } = scope {
                        if let Some((_, sum, count)) =
                            avgs.iter().find(|(a, _, _)| pg_sys::equal(a.cast(), aggref.cast()))
                        {
                            if self.value_only == 0 {
                                return Err(Refusal::inexact("avg whose display scale Postgres picks per value"));
                            }
                            let count = cast(Expr::Column(count.as_str().into()), DataType::Decimal128(38, 0));
                            return Ok(pgfn::numeric_div(Expr::Column(sum.as_str().into()), count));
                        }
                    }
                    let (_, name) = aggs
                        .iter()
                        .find(|(a, _)| pg_sys::equal(a.cast(), aggref.cast()))
                        .ok_or("an aggregate weft did not compute")?;
                    return Ok(Expr::Column(name.as_str().into()));
                }
            }
        }
        // SAFETY: per the caller.
        unsafe {
            match tag(node) {
                NodeTag::T_Var => {
                    if matches!(scope, Scope::Grouped { .. }) {
                        return Err(Refusal::shape("a column neither grouped nor aggregated"));
                    }
                    self.var(&*node.cast())
                }
                NodeTag::T_Const => Ok(lit(constant(node.cast())?)),
                NodeTag::T_RelabelType => {
                    // Binary-compatible (varchar as text): the same Arrow value.
                    let relabel = &*node.cast::<pg_sys::RelabelType>();
                    self.expr(relabel.arg.cast(), scope)
                }
                NodeTag::T_OpExpr => {
                    let op = &*node.cast::<pg_sys::OpExpr>();
                    // A comparison's operands matter only by value, not
                    // by how Postgres would display them.
                    let compares = comparison(op.opfuncid.to_u32()).is_some();
                    self.value_only += usize::from(compares);
                    let args = self.exprs(op.args, scope);
                    self.value_only -= usize::from(compares);
                    self.function(op.opfuncid, op.inputcollid, args?, node)
                }
                NodeTag::T_FuncExpr => {
                    let func = &*node.cast::<pg_sys::FuncExpr>();
                    if func.funcretset {
                        return Err(Refusal::shape("a set-returning function"));
                    }
                    let args = self.exprs(func.args, scope)?;
                    self.function(func.funcid, func.inputcollid, args, node)
                }
                NodeTag::T_BoolExpr => {
                    let b = &*node.cast::<pg_sys::BoolExpr>();
                    let args = self.exprs(b.args, scope)?;
                    match b.boolop {
                        pg_sys::BoolExprType::AND_EXPR => Ok(args.into_iter().reduce(Expr::and).ok_or("empty AND")?),
                        pg_sys::BoolExprType::OR_EXPR => Ok(args.into_iter().reduce(Expr::or).ok_or("empty OR")?),
                        _ => Ok(not(args.into_iter().next().ok_or("empty NOT")?)),
                    }
                }
                NodeTag::T_NullTest => {
                    let t = &*node.cast::<pg_sys::NullTest>();
                    if t.argisrow {
                        return Err(Refusal::shape("IS NULL on a row"));
                    }
                    let arg = self.expr(t.arg.cast(), scope)?;
                    Ok(match t.nulltesttype {
                        pg_sys::NullTestType::IS_NULL => arg.is_null(),
                        _ => arg.is_not_null(),
                    })
                }
                NodeTag::T_CaseExpr => {
                    let c = &*node.cast::<pg_sys::CaseExpr>();
                    let operand = if c.arg.is_null() {
                        None
                    } else {
                        Some(Box::new(self.expr(c.arg.cast(), scope)?))
                    };
                    let mut when_then = Vec::new();
                    for when in list::<pg_sys::CaseWhen>(c.args) {
                        let when = &*when;
                        // With an operand, Postgres's WHEN is `CaseTestExpr = value`.
                        if operand.is_some() {
                            return Err(Refusal::shape("CASE with an operand"));
                        }
                        when_then.push((
                            Box::new(self.expr(when.expr.cast(), scope)?),
                            Box::new(self.expr(when.result.cast(), scope)?),
                        ));
                    }
                    let otherwise = if c.defresult.is_null() {
                        None
                    } else {
                        Some(Box::new(self.expr(c.defresult.cast(), scope)?))
                    };
                    let results = when_then.iter().map(|(_, then)| &**then).chain(otherwise.as_deref());
                    self.one_display_scale(node, results)?;
                    Ok(Expr::Case(Case::new(operand, when_then, otherwise)))
                }
                NodeTag::T_CoalesceExpr => {
                    let c = &*node.cast::<pg_sys::CoalesceExpr>();
                    let args = self.exprs(c.args, scope)?;
                    self.one_display_scale(node, args.iter())?;
                    Ok(datafusion::functions::core::expr_fn::coalesce(args))
                }
                NodeTag::T_ScalarArrayOpExpr => {
                    let s = &*node.cast::<pg_sys::ScalarArrayOpExpr>();
                    self.in_list(s, scope)
                }
                NodeTag::T_SubLink => self.sublink(&*node.cast(), scope),
                NodeTag::T_Param => {
                    let param = &*node.cast::<pg_sys::Param>();
                    Ok(lit(self.param(param)?))
                }
                NodeTag::T_Aggref => Err(Refusal::shape("an aggregate outside the select list and HAVING")),
                other => Err(Refusal::shape(format!("an expression of node type {other:?}"))),
            }
        }
    }

    /// Refuses a numeric CASE or COALESCE (`node`) whose `results` have
    /// different scales, where the value may be shown. Postgres keeps each
    /// value's own display scale (`CASE WHEN .. THEN price ELSE 0 END` is
    /// `0` in its ELSE rows, and a sum of only those is `0`), while
    /// DataFusion gives the whole column one scale (`0.00`).
    fn one_display_scale<'a>(
        &self,
        node: *mut pg_sys::Node,
        results: impl Iterator<Item = &'a Expr>,
    ) -> Result<(), Refusal> {
        // SAFETY: per the caller of `expr`.
        if self.value_only > 0 || unsafe { pg_sys::exprType(node) } != pg_sys::NUMERICOID {
            return Ok(());
        }
        let schema = self.levels.last().and_then(|l| l.schema.clone());
        let mut scales = Vec::new();
        for result in results {
            let scale = match result {
                Expr::Literal(value, _) if value.is_null() => continue,
                Expr::Literal(value, _) => Some(value.data_type()),
                other => schema.as_ref().and_then(|schema| other.get_type(schema.as_ref()).ok()),
            };
            match scale {
                Some(DataType::Decimal128(_, scale)) => scales.push(scale),
                _ => {
                    return Err(Refusal::inexact(
                        "a numeric CASE or COALESCE whose display scale weft cannot tell",
                    ))
                }
            }
        }
        scales.dedup();
        if scales.len() > 1 {
            return Err(Refusal::inexact(
                "a numeric CASE or COALESCE of different scales, whose display scale Postgres picks per value",
            ));
        }
        Ok(())
    }

    /// A parameter's value, when the statement's parameters are known
    /// (a custom plan of a prepared statement, and its execution).
    ///
    /// # Safety
    /// `self.params` is NULL or valid.
    unsafe fn param(&self, param: &pg_sys::Param) -> Result<ScalarValue, Refusal> {
        let params = self.params;
        // SAFETY: per the caller.
        let known = !params.is_null() && unsafe { (*params).paramFetch.is_none() };
        if param.paramkind != pg_sys::ParamKind::PARAM_EXTERN || !known {
            return Err(Refusal::shape("a parameter whose value is not known when planning"));
        }
        // SAFETY: as above; `numParams` entries follow the header.
        unsafe {
            let count = (*params).numParams;
            if param.paramid < 1 || param.paramid > count {
                return Err(Refusal::shape(format!("parameter ${} has no value", param.paramid)));
            }
            let entry = &*(*params).params.as_ptr().add(param.paramid as usize - 1);
            if entry.ptype != param.paramtype {
                return Err(Refusal::shape(format!("parameter ${} has another type", param.paramid)));
            }
            Ok(crate::nodes::value(
                param.paramtype,
                param.paramtypmod,
                entry.value,
                entry.isnull,
            )?)
        }
    }

    /// Translates a list of expressions.
    unsafe fn exprs(&mut self, args: *mut pg_sys::List, scope: &Scope) -> Result<Vec<Expr>, Refusal> {
        // SAFETY: per the caller.
        unsafe { list::<pg_sys::Node>(args) }
            .into_iter()
            // SAFETY: as above.
            .map(|arg| unsafe { self.expr(arg, scope) })
            .collect()
    }

    /// `x IN (constants)` / `x = ANY(array constant)`, and NOT IN's
    /// `<> ALL`.
    unsafe fn in_list(&mut self, s: &pg_sys::ScalarArrayOpExpr, scope: &Scope) -> Result<Expr, Refusal> {
        // SAFETY: per the caller.
        let args = unsafe { list::<pg_sys::Node>(s.args) };
        let [left, right] = args[..] else {
            return Err(Refusal::shape("an unusual ANY/ALL"));
        };
        if !deterministic(s.inputcollid) {
            return Err(Refusal::inexact("IN under a nondeterministic collation"));
        }
        let negated = match (s.useOr, equality_kind(s.opfuncid)) {
            (true, Some(true)) => false,
            (false, Some(false)) => true,
            _ => return Err(Refusal::shape("ANY/ALL other than IN and NOT IN")),
        };
        // SAFETY: per the caller.
        let value = unsafe { self.expr(left, scope)? };
        // SAFETY: as above.
        let items: Vec<Expr> = unsafe {
            if let Some(array) = node_cast::<pg_sys::ArrayExpr>(right, NodeTag::T_ArrayExpr) {
                list::<pg_sys::Node>((*array).elements)
                    .into_iter()
                    .map(|item| self.expr(item, scope))
                    .collect::<Result<_, _>>()?
            } else if let Some(array) = node_cast::<pg_sys::Const>(right, NodeTag::T_Const) {
                // What the planner folds `x IN ('a', 'b')` into.
                array_elements(array)?.into_iter().map(lit).collect()
            } else {
                return Err(Refusal::shape("IN over an array that is not a constant list"));
            }
        };
        if items.is_empty() {
            return Err(Refusal::shape("IN over an empty array"));
        }
        Ok(in_list(value, items, negated))
    }

    /// EXISTS, IN (subquery), and scalar subqueries.
    unsafe fn sublink(&mut self, link: &pg_sys::SubLink, scope: &Scope) -> Result<Expr, Refusal> {
        // SAFETY: per the caller; a SubLink's subselect is a Query.
        let plan = Arc::new(unsafe { self.query(link.subselect.cast())? });
        match link.subLinkType {
            pg_sys::SubLinkType::EXISTS_SUBLINK => Ok(exists(plan)),
            pg_sys::SubLinkType::EXPR_SUBLINK => Ok(scalar_subquery(plan)),
            pg_sys::SubLinkType::ANY_SUBLINK => {
                // testexpr is `outer = Param(sub's column)`.
                // SAFETY: as above.
                let op = unsafe { node_cast::<pg_sys::OpExpr>(link.testexpr, NodeTag::T_OpExpr) }
                    .ok_or("IN with a row or an unusual test")?;
                // SAFETY: as above.
                let op = unsafe { &*op };
                if equality_kind(op.opfuncid) != Some(true) {
                    return Err(Refusal::shape("ANY with an operator other than ="));
                }
                // SAFETY: as above.
                let args = unsafe { list::<pg_sys::Node>(op.args) };
                let outer = *args.first().ok_or("an empty IN test")?;
                // SAFETY: as above.
                let value = unsafe { self.expr(outer, scope)? };
                if plan.schema().fields().len() != 1 {
                    return Err(Refusal::shape("IN over several columns"));
                }
                // DataFusion's IN (subquery) is not NULL-aware under NOT
                // (Postgres: NULL, not true, when the subquery holds a NULL
                // and nothing matches), so weft takes it only where no NULL
                // can occur on either side.
                let nullable = match &self.levels.last().and_then(|l| l.schema.clone()) {
                    Some(schema) => value.nullable(schema.as_ref()).map_err(df)?,
                    None => true,
                };
                if nullable || plan.schema().field(0).is_nullable() {
                    return Err(Refusal::inexact("IN (subquery) over columns that may be NULL"));
                }
                Ok(in_subquery(value, plan))
            }
            _ => Err(Refusal::shape("ALL, ARRAY or row subqueries")),
        }
    }

    /// One aggregate call.
    ///
    /// # Safety
    /// `aggref` is an Aggref of the current level.
    pub(super) unsafe fn aggref(&mut self, aggref: *mut pg_sys::Aggref) -> Result<Expr, Refusal> {
        // SAFETY: per the caller.
        let a = unsafe { &*aggref };
        if a.agglevelsup != 0 {
            return Err(Refusal::shape("an outer-level aggregate"));
        }
        if !a.aggorder.is_null() || !a.aggfilter.is_null() || !a.aggdirectargs.is_null() {
            return Err(Refusal::shape("an aggregate with ORDER BY, FILTER or direct arguments"));
        }
        let distinct = !a.aggdistinct.is_null();
        let mut args = Vec::new();
        // SAFETY: an Aggref's args are TargetEntries.
        for target in unsafe { list::<pg_sys::TargetEntry>(a.args) } {
            // SAFETY: as above.
            let arg: *mut pg_sys::Node = unsafe { (*target).expr.cast() };
            if distinct {
                // SAFETY: as above.
                unsafe { groupable(arg, "DISTINCT in an aggregate")? };
            }
            // SAFETY: as above.
            args.push(unsafe { self.expr(arg, &Scope::Rows)? });
        }
        let one = || {
            args.first()
                .cloned()
                .ok_or(Refusal::shape("an aggregate without arguments"))
        };
        let call = match a.aggfnoid.to_u32() {
            pg_sys::F_COUNT_ if a.aggstar => count(lit(1i64)),
            pg_sys::F_COUNT_ANY => count(one()?),
            // Postgres sums int2 and int4 into int8, exactly.
            pg_sys::F_SUM_INT2 | pg_sys::F_SUM_INT4 => sum(cast(one()?, DataType::Int64)),
            // int8 sums to numeric: sum in Decimal128, which cannot wrap
            // (an overflow past 38 digits is an error).
            pg_sys::F_SUM_INT8 => sum(cast(one()?, DataType::Decimal128(38, 0))),
            pg_sys::F_SUM_NUMERIC => {
                let value = one()?;
                let scale = decimal_scale(&value, self)?;
                sum(cast(value, DataType::Decimal128(38, scale)))
            }
            pg_sys::F_MIN_INT2
            | pg_sys::F_MIN_INT4
            | pg_sys::F_MIN_INT8
            | pg_sys::F_MIN_NUMERIC
            | pg_sys::F_MIN_DATE
            | pg_sys::F_MIN_TIMESTAMP
            | pg_sys::F_MIN_TIMESTAMPTZ => min(one()?),
            pg_sys::F_MAX_INT2
            | pg_sys::F_MAX_INT4
            | pg_sys::F_MAX_INT8
            | pg_sys::F_MAX_NUMERIC
            | pg_sys::F_MAX_DATE
            | pg_sys::F_MAX_TIMESTAMP
            | pg_sys::F_MAX_TIMESTAMPTZ => max(one()?),
            other => {
                // SAFETY: a function OID.
                let name = unsafe { function_name(other) };
                return Err(Refusal::Function(format!("aggregate {name}")));
            }
        };
        if distinct {
            return match call {
                Expr::AggregateFunction(mut f) if a.aggfnoid.to_u32() == pg_sys::F_COUNT_ANY => {
                    f.params.distinct = true;
                    Ok(Expr::AggregateFunction(f))
                }
                _ => Err(Refusal::shape("DISTINCT in an aggregate other than count")),
            };
        }
        Ok(call)
    }

    /// An avg's sum and count, when `aggref` is an avg weft computes so
    /// (sums in Decimal128, as numeric's avg sums).
    ///
    /// # Safety
    /// `aggref` is an Aggref of the current level.
    pub(super) unsafe fn avg_parts(&mut self, aggref: *mut pg_sys::Aggref) -> Result<Option<(Expr, Expr)>, Refusal> {
        // SAFETY: per the caller.
        let a = unsafe { &*aggref };
        let f = a.aggfnoid.to_u32();
        if !matches!(
            f,
            pg_sys::F_AVG_INT2 | pg_sys::F_AVG_INT4 | pg_sys::F_AVG_INT8 | pg_sys::F_AVG_NUMERIC
        ) {
            return Ok(None);
        }
        if !a.aggorder.is_null() || !a.aggfilter.is_null() || !a.aggdistinct.is_null() || a.agglevelsup != 0 {
            return Err(Refusal::shape(
                "avg with ORDER BY, FILTER, DISTINCT or of an outer level",
            ));
        }
        // SAFETY: an Aggref's args are TargetEntries.
        let args = unsafe { list::<pg_sys::TargetEntry>(a.args) };
        let [arg] = args[..] else {
            return Err(Refusal::shape("avg of several arguments"));
        };
        // SAFETY: as above.
        let value = unsafe { self.expr((*arg).expr.cast(), &Scope::Rows)? };
        let scale = if f == pg_sys::F_AVG_NUMERIC {
            decimal_scale(&value, self)?
        } else {
            0
        };
        Ok(Some((
            sum(cast(value.clone(), DataType::Decimal128(38, scale))),
            count(value),
        )))
    }

    /// An operator's or function's call, by function OID.
    unsafe fn function(
        &mut self,
        funcid: Oid,
        collation: Oid,
        args: Vec<Expr>,
        node: *mut pg_sys::Node,
    ) -> Result<Expr, Refusal> {
        let f = funcid.to_u32();
        if let Some(op) = comparison(f) {
            let [l, r] = two(args)?;
            if text_ordering(f) && !collation_is_c(collation) {
                return Err(Refusal::inexact("text ordered under a collation other than C"));
            }
            if !deterministic(collation) {
                return Err(Refusal::inexact("text compared under a nondeterministic collation"));
            }
            return Ok(binary_expr(l, op, r));
        }
        if matches!(f, pg_sys::F_INT2UM | pg_sys::F_INT4UM | pg_sys::F_INT8UM) {
            // -x as 0 - x: the same value, and the same error for the
            // smallest integer.
            // SAFETY: per the caller.
            let result = unsafe { pg_sys::exprType(node) };
            return pgfn::int_op(IntOp::Sub, result, lit(0i64), one(args)?).map_err(df);
        }
        if let Some(op) = int_arithmetic(f) {
            // SAFETY: per the caller.
            let result = unsafe { pg_sys::exprType(node) };
            let [l, r] = two(args)?;
            return pgfn::int_op(op, result, l, r).map_err(df);
        }
        if f == pg_sys::F_NUMERIC_DIV {
            if self.value_only == 0 {
                return Err(Refusal::inexact(
                    "numeric division whose display scale Postgres picks per value",
                ));
            }
            let [l, r] = two(args)?;
            return Ok(pgfn::numeric_div(l, r));
        }
        let op = match f {
            pg_sys::F_NUMERIC_ADD => Some(Operator::Plus),
            pg_sys::F_NUMERIC_SUB => Some(Operator::Minus),
            pg_sys::F_NUMERIC_MUL => Some(Operator::Multiply),
            _ => None,
        };
        if let Some(op) = op {
            let [l, r] = two(args)?;
            return Ok(binary_expr(l, op, r));
        }
        Ok(match f {
            pg_sys::F_TEXTLIKE | pg_sys::F_TEXTNLIKE if deterministic(collation) => {
                let [l, r] = two(args)?;
                Expr::Like(Like::new(
                    f == pg_sys::F_TEXTNLIKE,
                    Box::new(l),
                    Box::new(r),
                    Some('\\'),
                    false,
                ))
            }
            // Casts that widen exactly.
            pg_sys::F_INT8_INT4 => cast(one(args)?, DataType::Int64),
            pg_sys::F_NUMERIC_INT2 | pg_sys::F_NUMERIC_INT4 | pg_sys::F_NUMERIC_INT8 => {
                cast(one(args)?, DataType::Decimal128(38, 0))
            }
            pg_sys::F_TIMESTAMP_DATE => cast(
                one(args)?,
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None),
            ),
            // EXTRACT(field FROM date) is a numeric in Postgres 15, an
            // integer for these fields.
            pg_sys::F_EXTRACT_TEXT_DATE => {
                let [field, value] = two(args)?;
                let field = match &field {
                    Expr::Literal(ScalarValue::Utf8(Some(f)), _) => f.to_ascii_lowercase(),
                    _ => return Err(Refusal::shape("EXTRACT of a field that is not a constant")),
                };
                if !matches!(field.as_str(), "year" | "month" | "day") {
                    return Err(Refusal::Function(format!("EXTRACT({field} FROM date)")));
                }
                cast(
                    datafusion::functions::datetime::expr_fn::date_part(lit(field), value),
                    DataType::Decimal128(38, 0),
                )
            }
            // substring(s FROM start FOR count) with constant start >= 1
            // and count >= 0: the same characters in both (Postgres's
            // special cases are all about other starts and counts).
            pg_sys::F_SUBSTRING_TEXT_INT4_INT4 | pg_sys::F_SUBSTR_TEXT_INT4_INT4 => {
                let [value, start, count] =
                    <[Expr; 3]>::try_from(args).map_err(|_| "substring without three arguments")?;
                let constant = |e: &Expr| match e {
                    Expr::Literal(ScalarValue::Int32(Some(v)), _) => Some(i64::from(*v)),
                    _ => None,
                };
                match (constant(&start), constant(&count)) {
                    (Some(start), Some(count)) if start >= 1 && count >= 0 => {
                        datafusion::functions::unicode::expr_fn::substring(value, lit(start), lit(count))
                    }
                    _ => {
                        return Err(Refusal::shape(
                            "substring with a start or length that is not a positive constant",
                        ))
                    }
                }
            }
            // bpchar values are read without their padding already.
            pg_sys::F_TEXT_BPCHAR => one(args)?,
            _ => {
                // SAFETY: a function OID.
                let name = unsafe { function_name(funcid.to_u32()) };
                return Err(Refusal::Function(format!("function {name}")));
            }
        })
    }
}

/// The DataFusion comparison of a Postgres comparison function weft
/// takes, by function OID.
fn comparison(f: u32) -> Option<Operator> {
    Some(match f {
        pg_sys::F_INT2EQ
        | pg_sys::F_INT4EQ
        | pg_sys::F_INT8EQ
        | pg_sys::F_INT24EQ
        | pg_sys::F_INT42EQ
        | pg_sys::F_INT28EQ
        | pg_sys::F_INT82EQ
        | pg_sys::F_INT48EQ
        | pg_sys::F_INT84EQ
        | pg_sys::F_NUMERIC_EQ
        | pg_sys::F_DATE_EQ
        | pg_sys::F_TIMESTAMP_EQ
        | pg_sys::F_TIMESTAMPTZ_EQ
        | pg_sys::F_DATE_EQ_TIMESTAMP
        | pg_sys::F_TIMESTAMP_EQ_DATE
        | pg_sys::F_BOOLEQ
        | pg_sys::F_TEXTEQ
        | pg_sys::F_BPCHAREQ => Operator::Eq,
        pg_sys::F_INT2NE
        | pg_sys::F_INT4NE
        | pg_sys::F_INT8NE
        | pg_sys::F_INT24NE
        | pg_sys::F_INT42NE
        | pg_sys::F_INT28NE
        | pg_sys::F_INT82NE
        | pg_sys::F_INT48NE
        | pg_sys::F_INT84NE
        | pg_sys::F_NUMERIC_NE
        | pg_sys::F_DATE_NE
        | pg_sys::F_TIMESTAMP_NE
        | pg_sys::F_TIMESTAMPTZ_NE
        | pg_sys::F_DATE_NE_TIMESTAMP
        | pg_sys::F_TIMESTAMP_NE_DATE
        | pg_sys::F_BOOLNE
        | pg_sys::F_TEXTNE
        | pg_sys::F_BPCHARNE => Operator::NotEq,
        pg_sys::F_INT2LT
        | pg_sys::F_INT4LT
        | pg_sys::F_INT8LT
        | pg_sys::F_INT24LT
        | pg_sys::F_INT42LT
        | pg_sys::F_INT28LT
        | pg_sys::F_INT82LT
        | pg_sys::F_INT48LT
        | pg_sys::F_INT84LT
        | pg_sys::F_NUMERIC_LT
        | pg_sys::F_DATE_LT
        | pg_sys::F_TIMESTAMP_LT
        | pg_sys::F_TIMESTAMPTZ_LT
        | pg_sys::F_DATE_LT_TIMESTAMP
        | pg_sys::F_TIMESTAMP_LT_DATE
        | pg_sys::F_TEXT_LT => Operator::Lt,
        pg_sys::F_INT2LE
        | pg_sys::F_INT4LE
        | pg_sys::F_INT8LE
        | pg_sys::F_INT24LE
        | pg_sys::F_INT42LE
        | pg_sys::F_INT28LE
        | pg_sys::F_INT82LE
        | pg_sys::F_INT48LE
        | pg_sys::F_INT84LE
        | pg_sys::F_NUMERIC_LE
        | pg_sys::F_DATE_LE
        | pg_sys::F_TIMESTAMP_LE
        | pg_sys::F_TIMESTAMPTZ_LE
        | pg_sys::F_DATE_LE_TIMESTAMP
        | pg_sys::F_TIMESTAMP_LE_DATE
        | pg_sys::F_TEXT_LE => Operator::LtEq,
        pg_sys::F_INT2GT
        | pg_sys::F_INT4GT
        | pg_sys::F_INT8GT
        | pg_sys::F_INT24GT
        | pg_sys::F_INT42GT
        | pg_sys::F_INT28GT
        | pg_sys::F_INT82GT
        | pg_sys::F_INT48GT
        | pg_sys::F_INT84GT
        | pg_sys::F_NUMERIC_GT
        | pg_sys::F_DATE_GT
        | pg_sys::F_TIMESTAMP_GT
        | pg_sys::F_TIMESTAMPTZ_GT
        | pg_sys::F_DATE_GT_TIMESTAMP
        | pg_sys::F_TIMESTAMP_GT_DATE
        | pg_sys::F_TEXT_GT => Operator::Gt,
        pg_sys::F_INT2GE
        | pg_sys::F_INT4GE
        | pg_sys::F_INT8GE
        | pg_sys::F_INT24GE
        | pg_sys::F_INT42GE
        | pg_sys::F_INT28GE
        | pg_sys::F_INT82GE
        | pg_sys::F_INT48GE
        | pg_sys::F_INT84GE
        | pg_sys::F_NUMERIC_GE
        | pg_sys::F_DATE_GE
        | pg_sys::F_TIMESTAMP_GE
        | pg_sys::F_TIMESTAMPTZ_GE
        | pg_sys::F_DATE_GE_TIMESTAMP
        | pg_sys::F_TIMESTAMP_GE_DATE
        | pg_sys::F_TEXT_GE => Operator::GtEq,
        _ => return None,
    })
}

/// Text orderings, which depend on the collation.
fn text_ordering(f: u32) -> bool {
    matches!(
        f,
        pg_sys::F_TEXT_LT | pg_sys::F_TEXT_LE | pg_sys::F_TEXT_GT | pg_sys::F_TEXT_GE
    )
}

/// Whether `f` is an equality (Some(true)) or inequality (Some(false))
/// weft compares exactly.
fn equality_kind(f: Oid) -> Option<bool> {
    match comparison(f.to_u32()) {
        Some(Operator::Eq) => Some(true),
        Some(Operator::NotEq) => Some(false),
        _ => None,
    }
}

/// The integer arithmetic functions, as [`IntOp`]s.
fn int_arithmetic(f: u32) -> Option<IntOp> {
    Some(match f {
        pg_sys::F_INT2PL
        | pg_sys::F_INT4PL
        | pg_sys::F_INT8PL
        | pg_sys::F_INT24PL
        | pg_sys::F_INT42PL
        | pg_sys::F_INT28PL
        | pg_sys::F_INT82PL
        | pg_sys::F_INT48PL
        | pg_sys::F_INT84PL => IntOp::Add,
        pg_sys::F_INT2MI
        | pg_sys::F_INT4MI
        | pg_sys::F_INT8MI
        | pg_sys::F_INT24MI
        | pg_sys::F_INT42MI
        | pg_sys::F_INT28MI
        | pg_sys::F_INT82MI
        | pg_sys::F_INT48MI
        | pg_sys::F_INT84MI => IntOp::Sub,
        pg_sys::F_INT2MUL
        | pg_sys::F_INT4MUL
        | pg_sys::F_INT8MUL
        | pg_sys::F_INT24MUL
        | pg_sys::F_INT42MUL
        | pg_sys::F_INT28MUL
        | pg_sys::F_INT82MUL
        | pg_sys::F_INT48MUL
        | pg_sys::F_INT84MUL => IntOp::Mul,
        pg_sys::F_INT2DIV
        | pg_sys::F_INT4DIV
        | pg_sys::F_INT8DIV
        | pg_sys::F_INT24DIV
        | pg_sys::F_INT42DIV
        | pg_sys::F_INT28DIV
        | pg_sys::F_INT82DIV
        | pg_sys::F_INT48DIV
        | pg_sys::F_INT84DIV => IntOp::Div,
        _ => return None,
    })
}

/// Whether equal strings under `collation` are equal bytes (every
/// collation but ICU's nondeterministic ones), so that DataFusion's
/// equality, grouping and hashing agree with Postgres's.
pub(super) fn deterministic(collation: Oid) -> bool {
    // SAFETY: a catalog lookup on the backend thread.
    collation == Oid::INVALID || unsafe { pg_sys::get_collation_isdeterministic(collation) }
}

/// Refuses to group (GROUP BY, DISTINCT, count(DISTINCT)) by `node` where
/// values Postgres deems equal may differ in their Arrow bits, which is
/// what DataFusion groups by: float -0 and 0, NaNs of other payloads,
/// interval '1 mon' and '30 days', strings under a nondeterministic
/// collation. `what` names the grouping for the refusal.
///
/// # Safety
/// `node` is a valid expression, on the backend thread.
pub(super) unsafe fn groupable(node: *mut pg_sys::Node, what: &str) -> Result<(), Refusal> {
    // SAFETY: per the caller.
    let (typid, collation) = unsafe { (pg_sys::exprType(node), pg_sys::exprCollation(node)) };
    match typid {
        pg_sys::FLOAT4OID | pg_sys::FLOAT8OID => Err(Refusal::inexact(format!(
            "{what} over floats, where -0 equals 0 and every NaN equals NaN"
        ))),
        pg_sys::INTERVALOID => Err(Refusal::inexact(format!(
            "{what} over intervals, which are equal by their span ('1 mon' = '30 days')"
        ))),
        _ if !deterministic(collation) => Err(Refusal::inexact(format!("{what} under a nondeterministic collation"))),
        _ => Ok(()),
    }
}

/// Whether `collation` sorts text in byte order: Postgres's own answer,
/// which knows the database's default collation and its provider (an ICU
/// default is never C, whatever lc_collate says).
fn collation_is_c(collation: Oid) -> bool {
    // SAFETY: a catalog lookup on the backend thread, guarded (it raises
    // for an unknown collation).
    collation != Oid::INVALID
        && unsafe { pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| locale::lc_collate_is_c(collation)) }
}

/// Postgres functions of pg_locale.h, which pgrx does not bind; call them
/// through `pg_guard_ffi_boundary`.
mod locale {
    use pgrx::pg_sys::Oid;

    unsafe extern "C-unwind" {
        /// Whether the collation compares as strcmp does.
        pub fn lc_collate_is_c(collation: Oid) -> bool;
    }
}

/// The direction of an ORDER BY on `expr` with `sortop`: true for
/// descending. Refuses text under a non-C collation.
///
/// # Safety
/// `expr` is a valid expression node.
pub(super) unsafe fn sort_direction(sortop: Oid, expr: *mut pg_sys::Node) -> Result<bool, Refusal> {
    let mut reverse = false;
    // SAFETY: a catalog lookup on the backend thread.
    let eq = unsafe { pg_sys::get_equality_op_for_ordering_op(sortop, &mut reverse) };
    if eq == Oid::INVALID {
        return Err(Refusal::shape("an ORDER BY operator that is not a btree ordering"));
    }
    // SAFETY: per the caller.
    let (typid, _, collation) = unsafe { crate::nodes::expr_type(expr) };
    let sortable = matches!(
        typid,
        pg_sys::INT2OID
            | pg_sys::INT4OID
            | pg_sys::INT8OID
            | pg_sys::NUMERICOID
            | pg_sys::DATEOID
            | pg_sys::TIMESTAMPOID
            | pg_sys::TIMESTAMPTZOID
            | pg_sys::BOOLOID
    ) || (matches!(typid, pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID)
        && collation_is_c(collation));
    if !sortable {
        return Err(Refusal::inexact(
            "ORDER BY on a type or collation weft does not sort as Postgres does",
        ));
    }
    Ok(reverse)
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
            pg_sys::PVC_INCLUDE_AGGREGATES as i32 | pg_sys::PVC_RECURSE_PLACEHOLDERS as i32,
        );
        for item in list::<pg_sys::Node>(found) {
            if let Some(aggref) = node_cast::<pg_sys::Aggref>(item, NodeTag::T_Aggref) {
                out.push(aggref);
            }
        }
    }
    Ok(())
}

/// The scale of a Decimal128 expression.
fn decimal_scale(value: &Expr, translator: &Translator) -> Result<i8, Refusal> {
    let schema = translator
        .levels
        .last()
        .and_then(|l| l.schema.clone())
        .ok_or("an aggregate without a FROM clause")?;
    match value.get_type(&schema).map_err(df)? {
        DataType::Decimal128(_, scale) => Ok(scale),
        other => Err(Refusal::Function(format!("sum over {other}"))),
    }
}

/// A function's name, for refusals.
///
/// # Safety
/// On the backend thread.
unsafe fn function_name(f: u32) -> String {
    // SAFETY: per the caller; get_func_name returns NULL for no function.
    unsafe { crate::nodes::text(pg_sys::get_func_name(Oid::from(f))) }
}

fn two(args: Vec<Expr>) -> Result<[Expr; 2], Refusal> {
    <[Expr; 2]>::try_from(args).map_err(|_| "an operator without two arguments".into())
}

fn one(args: Vec<Expr>) -> Result<Expr, Refusal> {
    let [value] = <[Expr; 1]>::try_from(args).map_err(|_| "a cast with extra arguments")?;
    Ok(value)
}
