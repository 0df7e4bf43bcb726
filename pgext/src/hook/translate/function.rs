//! Operators and functions: the allowlist of Postgres functions (by OID)
//! that DataFusion computes exactly as Postgres does, each translated to
//! its DataFusion counterpart, or refused.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::Like;
use datafusion::logical_expr::{binary_expr, cast, lit, Expr, Operator};
use std::sync::Arc;

use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::ScalarUDF;
use pgrx::pg_sys::{self, NodeTag, Oid};

use super::args::{function_name, one, two};
use super::collation::{collation_is_c, deterministic};
use super::scope::Scope;
use super::{df, Refusal, Translator};
use crate::nodes::{cast as node_cast, list};
use crate::plan::bridge::{bridgeable, Callee, PgCall, PgFunction};
use crate::plan::collate::compare::CollatedComparison;
use crate::plan::pgfn::{self, IntOp};

impl Translator {
    /// An operator's or function's call, by function OID.
    pub(super) unsafe fn function(
        &mut self,
        funcid: Oid,
        collation: Oid,
        args: Vec<Expr>,
        node: *mut pg_sys::Node,
        scope: &Scope,
    ) -> Result<Expr, Refusal> {
        // SAFETY: per the caller.
        let nodes = unsafe { arg_nodes(node) };
        let image = |(&n, value): (&*mut pg_sys::Node, &Expr)| {
            // SAFETY: as above.
            unsafe { self.numeric_image(n, value, scope) }
        };
        if nodes.iter().zip(&args).any(image) {
            // A numeric carried as its image: Postgres computes with it.
            // SAFETY: as above.
            return unsafe { bridged(funcid, collation, args, node) };
        }
        let f = funcid.to_u32();
        if let Some(op) = comparison(f) {
            let [l, r] = two(args)?;
            if !deterministic(collation) {
                return Err(Refusal::inexact("text compared under a nondeterministic collation"));
            }
            if text_ordering(f) && !collation_is_c(collation) {
                // Postgres's comparison under the collation.
                let compare = CollatedComparison::new(op, collation).ok_or("an ordering that is not one")?;
                return Ok(ScalarUDF::new_from_impl(compare).call(vec![l, r]));
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
            let [l, r] = two(args)?;
            if self.value_only == 0 {
                // Shown, or computed with: Postgres's quotient itself.
                let operands = vec![(l, pg_sys::NUMERICOID), (r, pg_sys::NUMERICOID)];
                // SAFETY: on the backend thread.
                return unsafe { numeric_call(f, operands, "numeric division") };
            }
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
        if f == pg_sys::F_CONCAT {
            // SAFETY: per the caller.
            return unsafe { concat(&nodes, args) };
        }
        if f == pg_sys::F_NUMERIC_UMINUS {
            // Exact, at the operand's scale.
            return Ok(Expr::Negative(Box::new(one(args)?)));
        }
        Ok(match f {
            // Characters of valid UTF-8 (a bpchar without its padding, as
            // bpcharlen counts), and bytes.
            pg_sys::F_LENGTH_TEXT
            | pg_sys::F_CHAR_LENGTH_TEXT
            | pg_sys::F_CHARACTER_LENGTH_TEXT
            | pg_sys::F_LENGTH_BPCHAR
            | pg_sys::F_CHAR_LENGTH_BPCHAR
            | pg_sys::F_CHARACTER_LENGTH_BPCHAR => {
                datafusion::functions::unicode::expr_fn::character_length(one(args)?)
            }
            pg_sys::F_OCTET_LENGTH_TEXT => datafusion::functions::string::expr_fn::octet_length(one(args)?),
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
            // SAFETY: per the caller.
            _ => return unsafe { bridged(funcid, collation, args, node) },
        })
    }
}

/// The DataFusion comparison of a Postgres comparison function weft
/// takes, by function OID.
pub(super) fn comparison(f: u32) -> Option<Operator> {
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
        | pg_sys::F_TEXT_LT
        | pg_sys::F_BPCHARLT => Operator::Lt,
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
        | pg_sys::F_TEXT_LE
        | pg_sys::F_BPCHARLE => Operator::LtEq,
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
        | pg_sys::F_TEXT_GT
        | pg_sys::F_BPCHARGT => Operator::Gt,
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
        | pg_sys::F_TEXT_GE
        | pg_sys::F_BPCHARGE => Operator::GtEq,
        _ => return None,
    })
}

/// Text orderings, which depend on the collation.
pub(super) fn text_ordering(f: u32) -> bool {
    matches!(
        f,
        pg_sys::F_TEXT_LT
            | pg_sys::F_TEXT_LE
            | pg_sys::F_TEXT_GT
            | pg_sys::F_TEXT_GE
            | pg_sys::F_BPCHARLT
            | pg_sys::F_BPCHARLE
            | pg_sys::F_BPCHARGT
            | pg_sys::F_BPCHARGE
    )
}

/// Whether `f` is an equality (Some(true)) or inequality (Some(false))
/// weft compares exactly.
pub(super) fn equality_kind(f: Oid) -> Option<bool> {
    match comparison(f.to_u32()) {
        Some(Operator::Eq) => Some(true),
        Some(Operator::NotEq) => Some(false),
        _ => None,
    }
}

/// The integer arithmetic functions, as [`IntOp`]s.
pub(super) fn int_arithmetic(f: u32) -> Option<IntOp> {
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
        pg_sys::F_INT2MOD
        | pg_sys::F_INT4MOD
        | pg_sys::F_INT8MOD
        | pg_sys::F_MOD_INT2_INT2
        | pg_sys::F_MOD_INT4_INT4
        | pg_sys::F_MOD_INT8_INT8 => IntOp::Mod,
        _ => return None,
    })
}

/// The argument nodes of a call: a FuncExpr's, an OpExpr's (and of the
/// nodes shaped as one: NullIfExpr, DistinctExpr); none for others.
///
/// # Safety
/// `node` is a valid expression node.
unsafe fn arg_nodes(node: *mut pg_sys::Node) -> Vec<*mut pg_sys::Node> {
    // SAFETY: per the caller; NullIfExpr and DistinctExpr are OpExprs.
    unsafe {
        let args = match crate::nodes::tag(node) {
            NodeTag::T_FuncExpr => (*node.cast::<pg_sys::FuncExpr>()).args,
            NodeTag::T_OpExpr | NodeTag::T_NullIfExpr | NodeTag::T_DistinctExpr => {
                (*node.cast::<pg_sys::OpExpr>()).args
            }
            _ => return Vec::new(),
        };
        list::<pg_sys::Node>(args)
    }
}

/// `concat(...)` of `args` (translated from `nodes`): each non-NULL
/// argument as Postgres's output function writes it, which DataFusion's
/// `concat` does for text and integers; a char of known length padded to
/// it, as bpcharout shows it.
///
/// # Safety
/// `nodes` are valid expressions, on the backend thread.
unsafe fn concat(nodes: &[*mut pg_sys::Node], args: Vec<Expr>) -> Result<Expr, Refusal> {
    use datafusion::functions::unicode::expr_fn::rpad;
    let mut parts = Vec::with_capacity(args.len());
    for (&node, arg) in nodes.iter().zip(args) {
        // SAFETY: per the caller.
        let (typid, typmod) = unsafe { (pg_sys::exprType(node), pg_sys::exprTypmod(node)) };
        parts.push(match typid {
            pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::UNKNOWNOID => arg,
            pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID => cast(arg, DataType::Utf8),
            pg_sys::BPCHAROID if typmod > pg_sys::VARHDRSZ as i32 => {
                rpad(vec![arg, lit(i64::from(typmod - pg_sys::VARHDRSZ as i32))])
            }
            _ => {
                return Err(Refusal::Function(
                    "concat of a type other than text and integers".into(),
                ))
            }
        });
    }
    Ok(datafusion::functions::string::expr_fn::concat(parts))
}

/// A call of `funcid` on `args` (the translated arguments of `node`, an
/// OpExpr or FuncExpr) that Postgres evaluates itself, in each
/// participant ([`crate::plan::bridge`]), or why it cannot.
///
/// # Safety
/// `node` is the call's valid expression node, on the backend thread.
unsafe fn bridged(funcid: Oid, collation: Oid, args: Vec<Expr>, node: *mut pg_sys::Node) -> Result<Expr, Refusal> {
    // SAFETY: per the caller: a function OID and expression nodes.
    unsafe {
        let name = function_name(funcid.to_u32());
        if !crate::guc::FUNCTION_BRIDGE.get() {
            return Err(Refusal::Function(format!("function {name}")));
        }
        bridgeable(funcid).map_err(|why| Refusal::Function(format!("function {name}: {why}")))?;
        let arg_nodes = match node_cast::<pg_sys::FuncExpr>(node, NodeTag::T_FuncExpr) {
            // The bridge's call expression never says VARIADIC, which a
            // function of "any" reads.
            Some(func) if (*func).funcvariadic => {
                return Err(Refusal::shape(format!("a call of {name} with VARIADIC")))
            }
            Some(func) => (*func).args,
            None => match node_cast::<pg_sys::OpExpr>(node, NodeTag::T_OpExpr) {
                Some(op) => (*op).args,
                None => {
                    return Err(Refusal::shape(format!(
                        "a call of {name} that is neither a function nor an operator"
                    )))
                }
            },
        };
        let call = PgCall {
            callee: Callee::Function(funcid),
            args: list::<pg_sys::Node>(arg_nodes)
                .into_iter()
                .map(|arg| (pg_sys::exprType(arg), pg_sys::exprTypmod(arg)))
                .collect(),
            result: (pg_sys::exprType(node), pg_sys::exprTypmod(node)),
            collation,
        };
        bridge_call(call, args).map_err(|why| Refusal::inexact(format!("function {name}: {why}")))
    }
}

/// `call` on `args` through the bridge, or why the bridge cannot carry
/// its types.
///
/// # Safety
/// On the backend thread.
pub(super) unsafe fn bridge_call(call: PgCall, args: Vec<Expr>) -> Result<Expr, String> {
    // SAFETY: per the caller.
    let function = unsafe { PgFunction::new(call) }?;
    Ok(Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(function)),
        args,
    )))
}

/// Postgres's numeric function `funcid` on `args` (each with its
/// Postgres type), in each participant, for a numeric whose display scale
/// Postgres picks per value (a quotient, an average): the result is
/// Postgres's numeric itself, carried as its image, so that whatever reads
/// it (a result column, arithmetic, a comparison, through the bridge)
/// sees Postgres's display scale.
///
/// # Safety
/// On the backend thread.
pub(super) unsafe fn numeric_call(funcid: u32, args: Vec<(Expr, Oid)>, what: &str) -> Result<Expr, Refusal> {
    if !crate::guc::FUNCTION_BRIDGE.get() {
        return Err(Refusal::inexact(format!(
            "{what} whose display scale Postgres picks per value"
        )));
    }
    let (values, types): (Vec<Expr>, Vec<(Oid, i32)>) =
        args.into_iter().map(|(value, typid)| (value, (typid, -1))).unzip();
    let call = PgCall {
        callee: Callee::Function(Oid::from(funcid)),
        args: types,
        result: (pg_sys::NUMERICOID, -1),
        collation: Oid::INVALID,
    };
    // SAFETY: per the caller.
    unsafe { bridge_call(call, values) }.map_err(|why| Refusal::inexact(format!("{what}: {why}")))
}
