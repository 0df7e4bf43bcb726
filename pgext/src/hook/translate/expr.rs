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

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::Case;
use datafusion::logical_expr::{cast, in_list, lit, not, Expr, ExprSchemable};
use pgrx::pg_sys::{self, NodeTag, Oid};

use super::collation::{collation_is_c, deterministic};
use super::function::{comparison, equality_kind};
use super::scope::{Parts, Scope};
use super::{df, Refusal, Translator};
use crate::nodes::{array_elements, cast as node_cast, constant, list, tag};
use crate::plan::collate::order::Comparator;
use crate::plan::pgfn::{self};
use crate::types::PgType;

impl Translator {
    /// The value of an aggregate DataFusion computed in two parts
    /// (`sum` and `other`, see [`Parts`]).
    ///
    /// # Safety
    /// On the backend thread.
    pub(super) unsafe fn parted_value(
        &self,
        kind: Parts,
        sum: Expr,
        other: Expr,
        scope: &Scope,
    ) -> Result<Expr, Refusal> {
        let decimal = matches!(self.arrow_type(&sum, scope), Some(DataType::Decimal128(..)));
        if self.value_only == 0 || !decimal {
            // Shown, computed with, or of numerics carried as images:
            // Postgres's value itself, as Postgres would finish it
            // (`finish`), in each participant.
            // SAFETY: per the caller.
            return unsafe {
                match kind {
                    Parts::Avg => super::function::numeric_call(
                        pg_sys::F_NUMERIC_DIV,
                        vec![
                            (sum, pg_sys::NUMERICOID),
                            (cast(other, DataType::Decimal128(38, 0)), pg_sys::NUMERICOID),
                        ],
                        "an average",
                    ),
                    Parts::ScaledSum => super::function::numeric_call(
                        pg_sys::F_ROUND_NUMERIC_INT4,
                        vec![
                            (sum, pg_sys::NUMERICOID),
                            (cast(other, DataType::Int32), pg_sys::INT4OID),
                        ],
                        "a sum of numerics of different display scales",
                    ),
                }
            };
        }
        Ok(match kind {
            Parts::Avg => pgfn::numeric_div(sum, cast(other, DataType::Decimal128(38, 0))),
            Parts::ScaledSum => sum,
        })
    }

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
                    if let Scope::Grouped { parted, .. } = scope {
                        if let Some(p) = parted.iter().find(|p| pg_sys::equal(p.aggref.cast(), aggref.cast())) {
                            let sum = Expr::Column(p.sum.as_str().into());
                            let other = Expr::Column(p.other.as_str().into());
                            return self.parted_value(p.kind, sum, other, scope);
                        }
                    }
                    let (_, read) = aggs
                        .iter()
                        .find(|(a, _)| pg_sys::equal(a.cast(), aggref.cast()))
                        .ok_or("an aggregate weft did not compute")?;
                    return Ok(read.clone());
                }
            }
        }
        // SAFETY: per the caller.
        unsafe {
            if let Some(folded) = super::fold::folded(node, self.params) {
                if let Ok(value) = constant(folded) {
                    return Ok(lit(value));
                }
            }
            match tag(node) {
                NodeTag::T_Var => {
                    if matches!(scope, Scope::Grouped { .. }) {
                        return Err(Refusal::shape("a column neither grouped nor aggregated"));
                    }
                    self.var(&*node.cast())
                }
                NodeTag::T_Const => Ok(lit(constant(node.cast())?)),
                NodeTag::T_CoerceViaIO => self.via_text(&*node.cast(), scope),
                NodeTag::T_RelabelType => {
                    // Binary-compatible (varchar as text): the same Arrow value.
                    let relabel = &*node.cast::<pg_sys::RelabelType>();
                    self.expr(relabel.arg.cast(), scope)
                }
                NodeTag::T_OpExpr => {
                    let op = &*node.cast::<pg_sys::OpExpr>();
                    if let [left, right] = list::<pg_sys::Node>(op.args)[..] {
                        let (left_type, right_type) =
                            (crate::nodes::expr_type(left).0, crate::nodes::expr_type(right).0);
                        let bytes = super::image::byte_comparison(op.opno, left_type, right_type, op.inputcollid);
                        if let Some(operator) = bytes {
                            // Equal values of the type are equal images:
                            // DataFusion compares (and joins, hashes) the
                            // bytes.
                            let [l, r] = super::args::two(self.exprs(op.args, scope)?)?;
                            return Ok(datafusion::logical_expr::binary_expr(l, operator, r));
                        }
                    }
                    // A comparison's operands matter only by value, not
                    // by how Postgres would display them.
                    let compares = comparison(op.opfuncid.to_u32()).is_some();
                    self.value_only += usize::from(compares);
                    let args = self.exprs(op.args, scope);
                    self.value_only -= usize::from(compares);
                    self.function(op.opfuncid, op.inputcollid, args?, node, scope)
                }
                NodeTag::T_FuncExpr => {
                    let func = &*node.cast::<pg_sys::FuncExpr>();
                    if func.funcretset {
                        return Err(Refusal::shape("a set-returning function"));
                    }
                    let args = self.exprs(func.args, scope)?;
                    self.function(func.funcid, func.inputcollid, args, node, scope)
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
                    // With an operand, each WHEN is `CaseTestExpr = value`
                    // in Postgres's tree: the operand stands in for the
                    // CaseTestExpr, evaluated once per WHEN (the same value,
                    // as it is not volatile).
                    if !c.arg.is_null() {
                        if pg_sys::contain_volatile_functions(c.arg.cast()) {
                            return Err(Refusal::Function("a volatile CASE operand".into()));
                        }
                        let operand = self.expr(c.arg.cast(), scope)?;
                        self.case_operands.push(operand);
                    }
                    let whens = list::<pg_sys::CaseWhen>(c.args)
                        .into_iter()
                        .map(|when| {
                            Ok((
                                Box::new(self.expr((*when).expr.cast(), scope)?),
                                Box::new(self.expr((*when).result.cast(), scope)?),
                            ))
                        })
                        .collect::<Result<Vec<_>, Refusal>>();
                    if !c.arg.is_null() {
                        self.case_operands.pop();
                    }
                    let when_then = whens?;
                    let otherwise = if c.defresult.is_null() {
                        None
                    } else {
                        Some(self.expr(c.defresult.cast(), scope)?)
                    };
                    let (conditions, mut results): (Vec<_>, Vec<_>) =
                        when_then.into_iter().map(|(when, then)| (when, *then)).unzip();
                    let has_otherwise = otherwise.is_some();
                    results.extend(otherwise);
                    let mut results = self.one_display_scale(node, results, scope)?;
                    let otherwise = if has_otherwise {
                        results.pop().map(Box::new)
                    } else {
                        None
                    };
                    let when_then = conditions.into_iter().zip(results.into_iter().map(Box::new)).collect();
                    Ok(Expr::Case(Case::new(None, when_then, otherwise)))
                }
                NodeTag::T_CoalesceExpr => {
                    let c = &*node.cast::<pg_sys::CoalesceExpr>();
                    let args = self.exprs(c.args, scope)?;
                    let args = self.one_display_scale(node, args, scope)?;
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
                NodeTag::T_CaseTestExpr => self
                    .case_operands
                    .last()
                    .cloned()
                    .ok_or_else(|| Refusal::shape("a CaseTestExpr outside CASE x WHEN")),
                NodeTag::T_NullIfExpr => {
                    // NULLIF(a, b): CASE WHEN a = b THEN NULL ELSE a END,
                    // with the type's own equality.
                    let n = &*node.cast::<pg_sys::NullIfExpr>();
                    if equality_kind(n.opfuncid) != Some(true) {
                        return Err(Refusal::Function("NULLIF over a type weft does not compare".into()));
                    }
                    let args = self.exprs(n.args, scope)?;
                    let first = args.first().cloned().ok_or("NULLIF without arguments")?;
                    let equal = self.function(n.opfuncid, n.inputcollid, args, node, scope)?;
                    let null = lit(ScalarValue::Null);
                    Ok(Expr::Case(Case::new(
                        None,
                        vec![(Box::new(equal), Box::new(null))],
                        Some(Box::new(first)),
                    )))
                }
                NodeTag::T_DistinctExpr => {
                    // a IS DISTINCT FROM b: the type's equality, NULLs
                    // equal to each other.
                    let d = &*node.cast::<pg_sys::DistinctExpr>();
                    if equality_kind(d.opfuncid) != Some(true) {
                        return Err(Refusal::Function(
                            "IS DISTINCT FROM over a type weft does not compare".into(),
                        ));
                    }
                    self.value_only += 1;
                    let args = self.exprs(d.args, scope);
                    self.value_only -= 1;
                    let equal = self.function(d.opfuncid, d.inputcollid, args?, node, scope)?;
                    match equal {
                        Expr::BinaryExpr(b) if b.op == datafusion::logical_expr::Operator::Eq => {
                            Ok(datafusion::logical_expr::binary_expr(
                                *b.left,
                                datafusion::logical_expr::Operator::IsDistinctFrom,
                                *b.right,
                            ))
                        }
                        _ => Err(Refusal::shape(
                            "IS DISTINCT FROM over an equality weft computes otherwise",
                        )),
                    }
                }
                NodeTag::T_MinMaxExpr => {
                    // GREATEST and LEAST skip NULLs, as DataFusion's do;
                    // they order as a sort does.
                    let m = &*node.cast::<pg_sys::MinMaxExpr>();
                    let natively_ordered = ordered_natively(m.minmaxtype)
                        || (matches!(m.minmaxtype, pg_sys::TEXTOID | pg_sys::VARCHAROID)
                            && collation_is_c(m.inputcollid));
                    let args = self.exprs(m.args, scope)?;
                    let args = self.one_display_scale(node, args, scope)?;
                    let images = list::<pg_sys::Node>(m.args)
                        .into_iter()
                        .zip(&args)
                        .any(|(n, value)| self.numeric_image(n, value, scope));
                    if !natively_ordered || images {
                        // By the type's own comparison, in Postgres.
                        return self.min_max_bridged(m, args);
                    }
                    Ok(if m.op == pg_sys::MinMaxOp::IS_GREATEST {
                        datafusion::functions::core::expr_fn::greatest(args)
                    } else {
                        datafusion::functions::core::expr_fn::least(args)
                    })
                }
                NodeTag::T_Aggref => Err(Refusal::shape("an aggregate outside the select list and HAVING")),
                NodeTag::T_WindowFunc => self.window_column(node.cast(), scope),
                other => Err(Refusal::shape(format!("an expression of node type {other:?}"))),
            }
        }
    }

    /// The display scale Postgres gives each value of the numeric
    /// expression `node` (`value` is its translation, every value at one
    /// scale): NULL where the value is NULL. A CASE's or COALESCE's is
    /// that of the branch that gives the value; any other expression's
    /// must be one scale for all its values.
    ///
    /// # Safety
    /// `node` is a valid expression of the current level, on the backend
    /// thread.
    pub(super) unsafe fn display_scale(&mut self, node: *mut pg_sys::Node, value: &Expr) -> Result<Expr, Refusal> {
        // SAFETY: per the caller.
        let scale = unsafe { self.scale_of(node)? };
        Ok(Expr::Case(Case::new(
            None,
            vec![(Box::new(value.clone().is_not_null()), Box::new(scale))],
            None,
        )))
    }

    /// [`Translator::display_scale`] without the NULLs.
    ///
    /// # Safety
    /// As [`Translator::display_scale`].
    unsafe fn scale_of(&mut self, node: *mut pg_sys::Node) -> Result<Expr, Refusal> {
        // SAFETY: per the caller.
        unsafe {
            if let Some(c) = node_cast::<pg_sys::CaseExpr>(node, NodeTag::T_CaseExpr) {
                // The CASE's own conditions, each result replaced by its
                // display scale.
                self.value_only += 1;
                let translated = self.expr(node, &Scope::Rows);
                self.value_only -= 1;
                let Expr::Case(case) = translated? else {
                    return Err(Refusal::shape("a CASE not translated as one"));
                };
                let mut when_then = Vec::new();
                for ((condition, _), when) in case.when_then_expr.into_iter().zip(list::<pg_sys::CaseWhen>((*c).args)) {
                    when_then.push((condition, Box::new(self.scale_of((*when).result.cast())?)));
                }
                let otherwise = if (*c).defresult.is_null() {
                    None
                } else {
                    Some(Box::new(self.scale_of((*c).defresult.cast())?))
                };
                return Ok(Expr::Case(Case::new(None, when_then, otherwise)));
            }
            if let Some(c) = node_cast::<pg_sys::CoalesceExpr>(node, NodeTag::T_CoalesceExpr) {
                let mut when_then = Vec::new();
                for arg in list::<pg_sys::Node>((*c).args) {
                    let value = self.expr(arg, &Scope::Rows)?;
                    when_then.push((Box::new(value.is_not_null()), Box::new(self.scale_of(arg)?)));
                }
                return Ok(Expr::Case(Case::new(None, when_then, None)));
            }
            if let Some(c) = node_cast::<pg_sys::Const>(node, NodeTag::T_Const) {
                if (*c).constisnull {
                    return Ok(lit(ScalarValue::Int32(None)));
                }
            }
            if let Some(op) = node_cast::<pg_sys::OpExpr>(node, NodeTag::T_OpExpr) {
                // numeric.c: a sum or difference shows the larger of its
                // operands' display scales, a product their sum, a sign
                // its operand's.
                let args = list::<pg_sys::Node>((*op).args);
                match ((*op).opfuncid.to_u32(), &args[..]) {
                    (pg_sys::F_NUMERIC_ADD | pg_sys::F_NUMERIC_SUB, &[l, r]) => {
                        let (l, r) = (self.scale_of(l)?, self.scale_of(r)?);
                        return Ok(Expr::Case(Case::new(
                            None,
                            vec![(Box::new(l.clone().gt_eq(r.clone())), Box::new(l))],
                            Some(Box::new(r)),
                        )));
                    }
                    (pg_sys::F_NUMERIC_MUL, &[l, r]) => return Ok(self.scale_of(l)? + self.scale_of(r)?),
                    (pg_sys::F_NUMERIC_UMINUS | pg_sys::F_NUMERIC_UPLUS, &[arg]) => return self.scale_of(arg),
                    _ => {}
                }
            }
            // One display scale for every value: what the translation
            // allows only where the value may be shown.
            let value_only = std::mem::replace(&mut self.value_only, 0);
            let value = self.expr(node, &Scope::Rows);
            self.value_only = value_only;
            Ok(lit(i32::from(decimal_scale(&value?, self)?)))
        }
    }

    /// The `results` of a numeric CASE, COALESCE, GREATEST or LEAST
    /// (`node`) in one Arrow form, each keeping the display scale Postgres
    /// gives it. Postgres keeps each value's own display scale (`CASE WHEN
    /// .. THEN price ELSE 0 END` is `0` in its ELSE rows), while DataFusion
    /// gives a Decimal128 column one scale (`0.00`), and cannot put
    /// Decimal128 values and numerics carried as images in one column.
    /// Where the value may be shown (or mixes the two forms), every value
    /// becomes Postgres's numeric, carried as its image (`numeric_uplus`,
    /// which returns its argument, through the bridge). Inside an
    /// aggregate's argument (`one_scale`), whose sum Postgres finishes from
    /// a Decimal128 total and the largest scale instead, such a CASE is
    /// refused.
    fn one_display_scale(
        &self,
        node: *mut pg_sys::Node,
        results: Vec<Expr>,
        scope: &Scope,
    ) -> Result<Vec<Expr>, Refusal> {
        // SAFETY: per the caller of `expr`.
        if unsafe { pg_sys::exprType(node) } != pg_sys::NUMERICOID {
            return Ok(results);
        }
        let shown = self.value_only == 0;
        let schema = self.scope_schema(scope);
        let form = |result: &Expr| match result {
            Expr::Literal(value, _) if value.is_null() => None,
            Expr::Literal(value, _) => Some(Some(value.data_type())),
            other => Some(schema.as_ref().and_then(|schema| other.get_type(schema.as_ref()).ok())),
        };
        let mut scales = Vec::new();
        let mut images = 0;
        let mut unknown = false;
        for result in &results {
            match form(result) {
                None => {}
                Some(Some(DataType::Decimal128(_, scale))) => scales.push(scale),
                Some(Some(DataType::Binary)) => images += 1,
                Some(_) => unknown = true,
            }
        }
        scales.sort_unstable();
        scales.dedup();
        let one_form = images == 0 || (scales.is_empty() && !unknown);
        if one_form && !(shown && (scales.len() > 1 || unknown)) {
            if images == 0 {
                return Ok(results);
            }
            // A NULL branch as an image's NULL, of the CASE's one type.
            let image_null = |result: Expr| match form(&result) {
                None => lit(ScalarValue::Binary(None)),
                _ => result,
            };
            return Ok(results.into_iter().map(image_null).collect());
        }
        if self.one_scale > 0 || unknown {
            return Err(Refusal::inexact(
                "a numeric CASE or COALESCE of different scales, whose display scale Postgres picks per value",
            ));
        }
        results
            .into_iter()
            .map(|result| match form(&result) {
                Some(Some(DataType::Decimal128(..))) => {
                    // SAFETY: on the backend thread.
                    unsafe {
                        super::function::numeric_call(
                            pg_sys::F_NUMERIC_UPLUS,
                            vec![(result, pg_sys::NUMERICOID)],
                            "a numeric CASE or COALESCE of different scales",
                        )
                    }
                }
                // A NULL branch as an image's NULL, of the CASE's one type.
                None => Ok(lit(ScalarValue::Binary(None))),
                _ => Ok(result),
            })
            .collect()
    }

    /// A parameter's value: from the statement's parameters where they
    /// hold it (a prepared statement's custom plan and every execution,
    /// through the list's fetch hook for PL/pgSQL's variables); while
    /// planning without it (a generic plan), a NULL of the parameter's
    /// type ([`Stage::Planning`](super::Stage)).
    ///
    /// # Safety
    /// `self.params` is NULL or valid.
    unsafe fn param(&self, param: &pg_sys::Param) -> Result<ScalarValue, Refusal> {
        if param.paramkind != pg_sys::ParamKind::PARAM_EXTERN {
            return Err(Refusal::shape("a parameter of the executor's own"));
        }
        let planning = self.stage == super::Stage::Planning;
        // SAFETY: per the caller.
        let known = unsafe { extern_param(self.params, param.paramid, planning) };
        match known {
            Some((value, null, typid)) if typid == param.paramtype => {
                // SAFETY: a value of the parameter's type.
                Ok(unsafe { crate::nodes::value(param.paramtype, param.paramtypmod, value, null) }?)
            }
            Some(_) => Err(Refusal::shape(format!("parameter ${} has another type", param.paramid))),
            None if planning => {
                // SAFETY: a NULL reads no datum.
                Ok(unsafe { crate::nodes::value(param.paramtype, param.paramtypmod, pg_sys::Datum::from(0), true) }?)
            }
            None => Err(Refusal::shape(format!("parameter ${} has no value", param.paramid))),
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
    /// `<> ALL`, natively; any other ANY/ALL through the bridge.
    unsafe fn in_list(&mut self, s: &pg_sys::ScalarArrayOpExpr, scope: &Scope) -> Result<Expr, Refusal> {
        // SAFETY: per the caller.
        let args = unsafe { list::<pg_sys::Node>(s.args) };
        let [left, right] = args[..] else {
            return Err(Refusal::shape("an unusual ANY/ALL"));
        };
        let negated = match (s.useOr, equality_kind(s.opfuncid)) {
            (true, Some(true)) => false,
            (false, Some(false)) => true,
            // Any other operator, a collation whose equality is not the
            // bytes', an array that is not a list of constants: Postgres
            // evaluates it.
            // SAFETY: per the caller.
            _ => return unsafe { self.array_call(s, scope) },
        };
        if !deterministic(s.inputcollid) {
            // SAFETY: per the caller.
            return unsafe { self.array_call(s, scope) };
        }
        // SAFETY: per the caller.
        let value = unsafe { self.expr(left, scope)? };
        // SAFETY: as above.
        if unsafe { self.numeric_image(left, &value, scope) } {
            // SAFETY: as above.
            return unsafe { self.array_call(s, scope) };
        }
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
                return self.array_call(s, scope);
            }
        };
        if items.is_empty() {
            // SAFETY: as above.
            return unsafe { self.array_call(s, scope) };
        }
        Ok(in_list(value, items, negated))
    }
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
    let (typid, _, collation) = unsafe { crate::nodes::expr_type(node) };
    // A numeric is an image only without a declared scale, which the
    // caller tells from its translation.
    equal_as_bytes(typid, collation, &DataType::Null, what)
}

/// Refuses `what` (grouping, DISTINCT, a set operation) over values of
/// type `typid` under `collation`, carried in Arrow as `arrow`, where
/// equal values may differ in their bytes: floats (-0 and 0), intervals,
/// text under a nondeterministic collation, numerics carried as their
/// images, and image types without `equalimage`.
pub(super) fn equal_as_bytes(typid: Oid, collation: Oid, arrow: &DataType, what: &str) -> Result<(), Refusal> {
    match typid {
        pg_sys::FLOAT4OID | pg_sys::FLOAT8OID => Err(Refusal::inexact(format!(
            "{what} over floats, where -0 equals 0 and every NaN equals NaN"
        ))),
        pg_sys::INTERVALOID => Err(Refusal::inexact(format!(
            "{what} over intervals, which are equal by their span ('1 mon' = '30 days')"
        ))),
        _ if !deterministic(collation) => Err(Refusal::inexact(format!("{what} under a nondeterministic collation"))),
        pg_sys::NUMERICOID if *arrow == DataType::Binary => Err(Refusal::inexact(format!(
            "{what} over numerics without a declared scale, whose equal values may differ in their bytes"
        ))),
        pg_sys::NUMERICOID => Ok(()),
        // SAFETY: catalog lookups on the backend thread.
        _ if unsafe { super::image::is_image(typid) && !super::image::equal_images(typid, collation) } => {
            Err(Refusal::inexact(format!(
                "{what} over a type whose equal values may differ in their bytes (no btree equalimage)"
            )))
        }
        _ => Ok(()),
    }
}

/// Whether DataFusion orders values of type `typid` as Postgres's btree
/// opclass does: integers, numeric, date, timestamp, timestamptz, time,
/// bool, uuid (bytes, as `uuid_cmp`'s memcmp), oid (not floats, where
/// Postgres has -0 = 0 and NaN above every number, nor intervals, equal
/// by their span).
fn ordered_natively(typid: Oid) -> bool {
    matches!(
        typid,
        pg_sys::INT2OID
            | pg_sys::INT4OID
            | pg_sys::INT8OID
            | pg_sys::NUMERICOID
            | pg_sys::DATEOID
            | pg_sys::TIMESTAMPOID
            | pg_sys::TIMESTAMPTZOID
            | pg_sys::TIMEOID
            | pg_sys::BOOLOID
            | pg_sys::UUIDOID
            | pg_sys::OIDOID
    )
}

/// How an ORDER BY sorts `expr` with `sortop`.
pub(super) struct SortKey {
    /// Descending.
    pub descending: bool,
    /// How Postgres's order is given where DataFusion's is not it: text
    /// under a deterministic collation other than C, or any other type by
    /// its btree comparison function. None where DataFusion's order is
    /// Postgres's.
    pub comparator: Option<Comparator>,
}

/// How an ORDER BY sorts `expr` with `sortop`, or why weft cannot sort
/// it as Postgres does; `image` where the value is carried as its image
/// (a numeric without a declared scale), which only Postgres compares.
///
/// # Safety
/// `expr` is a valid expression node.
pub(super) unsafe fn sort_key(sortop: Oid, expr: *mut pg_sys::Node, image: bool) -> Result<SortKey, Refusal> {
    let mut reverse = false;
    // SAFETY: a catalog lookup on the backend thread.
    let eq = unsafe { pg_sys::get_equality_op_for_ordering_op(sortop, &mut reverse) };
    if eq == Oid::INVALID {
        return Err(Refusal::shape("an ORDER BY operator that is not a btree ordering"));
    }
    // SAFETY: per the caller.
    let (typid, typmod, collation) = unsafe { crate::nodes::expr_type(expr) };
    let text = matches!(typid, pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID);
    let natively = ordered_natively(typid) && !(image && typid != pg_sys::BYTEAOID);
    let comparator = if natively || (text && collation_is_c(collation)) {
        None
    } else if text && deterministic(collation) {
        Some(Comparator::Collation(collation))
    } else if text {
        return Err(Refusal::inexact("ORDER BY on text under a nondeterministic collation"));
    } else {
        // SAFETY: a catalog lookup on the backend thread.
        let function = unsafe { super::image::comparison_function(sortop) }
            .ok_or_else(|| Refusal::shape("an ORDER BY operator without a btree comparison function"))?;
        PgType::of(typid, typmod).map_err(|e| Refusal::shape(format!("ORDER BY on a value weft cannot carry: {e}")))?;
        Some(Comparator::Btree {
            function,
            typid,
            typmod,
            collation,
        })
    };
    Ok(SortKey {
        descending: reverse,
        comparator,
    })
}

/// The scale of a Decimal128 expression.
pub(super) fn decimal_scale(value: &Expr, translator: &Translator) -> Result<i8, Refusal> {
    Ok(decimal_type(value, translator)?.1)
}

/// The precision and scale of `value`, a Decimal128 expression of the
/// current level's rows.
pub(super) fn decimal_type(value: &Expr, translator: &Translator) -> Result<(u8, i8), Refusal> {
    let schema = translator
        .levels
        .last()
        .and_then(|l| l.schema.clone())
        .ok_or("an aggregate without a FROM clause")?;
    match value.get_type(&schema).map_err(df)? {
        DataType::Decimal128(precision, scale) => Ok((precision, scale)),
        other => Err(Refusal::Function(format!("sum over {other}"))),
    }
}

/// Parameter `id`'s value, nullness and type in `params`, where the list
/// holds one: stored in it, or fetched by its hook (PL/pgSQL's variables),
/// `speculative`ly while planning (the hook then gives only values safe to
/// read, as the planner asks for them), for good when the query runs.
///
/// # Safety
/// `params` is NULL or a valid parameter list, on the backend thread.
unsafe fn extern_param(
    params: pg_sys::ParamListInfo,
    id: i32,
    speculative: bool,
) -> Option<(pg_sys::Datum, bool, pg_sys::Oid)> {
    if params.is_null() {
        return None;
    }
    // SAFETY: per the caller; `numParams` entries follow the header, and a
    // fetch hook fills the workspace (or returns an entry of the list).
    unsafe {
        if id < 1 || id > (*params).numParams {
            return None;
        }
        let entry = match (*params).paramFetch {
            Some(fetch) => {
                let mut workspace = pg_sys::ParamExternData::default();
                let entry = fetch(params, id, speculative, &mut workspace);
                if entry.is_null() {
                    return None;
                }
                *entry
            }
            None => *(*params).params.as_ptr().add(id as usize - 1),
        };
        // A list for a generic plan may have entries without values; a
        // hook says "no such value" with an invalid type.
        (entry.ptype != pg_sys::InvalidOid && (entry.pflags & pg_sys::PARAM_FLAG_CONST as u16 != 0 || !speculative))
            .then_some((entry.value, entry.isnull, entry.ptype))
    }
}
