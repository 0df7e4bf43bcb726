//! Expressions Postgres evaluates in each participant that are not calls
//! of one function: casts through text (`CoerceViaIO`) and `x op ANY/ALL
//! (array)` over any array ([`crate::plan::bridge::Callee`]).

use datafusion::logical_expr::Expr;
use pgrx::pg_sys::{self, Oid};

use super::args::function_name;
use super::function::bridge_call;
use super::scope::Scope;
use super::{Refusal, Translator};
use crate::nodes::list;
use crate::plan::bridge::{bridgeable, castable_via_text, Callee, PgCall};

impl Translator {
    /// A cast through text (Postgres's CoerceViaIO: `x::text` of an enum,
    /// `s::int` of a string), by the types' I/O functions in each
    /// participant.
    ///
    /// # Safety
    /// `c` is a valid CoerceViaIO of the current level.
    pub(super) unsafe fn via_text(&mut self, c: &pg_sys::CoerceViaIO, scope: &Scope) -> Result<Expr, Refusal> {
        if !crate::guc::FUNCTION_BRIDGE.get() {
            return Err(Refusal::Function("a cast through text".into()));
        }
        // SAFETY: per the caller: expression nodes, catalog lookups.
        unsafe {
            let arg: *mut pg_sys::Node = c.arg.cast();
            let from = (pg_sys::exprType(arg), pg_sys::exprTypmod(arg));
            castable_via_text(from.0, c.resulttype).map_err(|why| Refusal::Function(why.into()))?;
            let value = self.expr(arg, scope)?;
            let call = PgCall {
                callee: Callee::ViaText,
                args: vec![from],
                result: (c.resulttype, -1),
                collation: Oid::INVALID,
            };
            bridge_call(call, vec![value]).map_err(|why| Refusal::inexact(format!("a cast through text: {why}")))
        }
    }

    /// `x op ANY (array)` or `x op ALL (array)` by Postgres in each
    /// participant: any operator, any array (a column, an expression).
    ///
    /// # Safety
    /// `s` is a valid ScalarArrayOpExpr of the current level.
    pub(super) unsafe fn array_call(&mut self, s: &pg_sys::ScalarArrayOpExpr, scope: &Scope) -> Result<Expr, Refusal> {
        // SAFETY: per the caller: expression nodes, catalog lookups.
        unsafe {
            let name = function_name(s.opfuncid.to_u32());
            if !crate::guc::FUNCTION_BRIDGE.get() {
                return Err(Refusal::Function(format!("ANY/ALL with {name}")));
            }
            bridgeable(s.opfuncid).map_err(|why| Refusal::Function(format!("ANY/ALL with {name}: {why}")))?;
            let nodes = list::<pg_sys::Node>(s.args);
            let [left, right] = nodes[..] else {
                return Err(Refusal::shape("an unusual ANY/ALL"));
            };
            let call = PgCall {
                callee: Callee::Array {
                    funcid: s.opfuncid,
                    any: s.useOr,
                },
                args: vec![
                    (pg_sys::exprType(left), pg_sys::exprTypmod(left)),
                    (pg_sys::exprType(right), pg_sys::exprTypmod(right)),
                ],
                result: (pg_sys::BOOLOID, -1),
                collation: s.inputcollid,
            };
            let args = vec![self.expr(left, scope)?, self.expr(right, scope)?];
            bridge_call(call, args).map_err(|why| Refusal::inexact(format!("ANY/ALL with {name}: {why}")))
        }
    }
}

/// The most arguments a GREATEST or LEAST over Postgres's comparison
/// takes: each argument past the first nests the expression so far in a
/// CASE that reads it three times.
const MIN_MAX_ARGS: usize = 4;

/// btree's less-than strategy (`stratnum.h`).
const BT_LESS_STRATEGY: i16 = 1;

impl Translator {
    /// GREATEST or LEAST (`m`, its arguments translated as `args`) over a
    /// type DataFusion does not order as Postgres does, by the type's own
    /// `<` in each participant, as Postgres's executor evaluates it
    /// (`ExecEvalMinMax`): NULLs skipped, the running result replaced only
    /// by a value strictly beyond it, so that of equal values the first
    /// stays.
    ///
    /// # Safety
    /// `m` is a valid MinMaxExpr of the current level.
    pub(super) unsafe fn min_max_bridged(&mut self, m: &pg_sys::MinMaxExpr, args: Vec<Expr>) -> Result<Expr, Refusal> {
        use datafusion::logical_expr::when;
        if args.len() > MIN_MAX_ARGS {
            return Err(Refusal::shape(format!(
                "GREATEST or LEAST of more than {MIN_MAX_ARGS} values weft does not order natively"
            )));
        }
        if !crate::guc::FUNCTION_BRIDGE.get() {
            return Err(Refusal::Function("GREATEST or LEAST by Postgres's comparison".into()));
        }
        if m.minmaxtype == pg_sys::BPCHAROID {
            // weft carries char(n) without its padding, and the result
            // keeps the padding of whichever argument it is.
            return Err(Refusal::inexact("GREATEST or LEAST of char(n) values"));
        }
        // SAFETY: per the caller; catalog lookups of an existing type.
        let less = unsafe {
            let (typid, typmod) = crate::types::base_type(m.minmaxtype, -1);
            let opclass = pg_sys::GetDefaultOpClass(typid, pg_sys::BTREE_AM_OID);
            if opclass == Oid::INVALID {
                return Err(Refusal::shape("GREATEST or LEAST over a type without a btree order"));
            }
            let (opfamily, input) = (
                pg_sys::get_opclass_family(opclass),
                pg_sys::get_opclass_input_type(opclass),
            );
            let operator = pg_sys::get_opfamily_member(opfamily, input, input, BT_LESS_STRATEGY);
            let funcid = pg_sys::get_opcode(operator);
            bridgeable(funcid).map_err(|why| Refusal::Function(format!("GREATEST or LEAST: {why}")))?;
            PgCall {
                callee: Callee::Function(funcid),
                args: vec![(typid, typmod), (typid, typmod)],
                result: (pg_sys::BOOLOID, -1),
                collation: m.inputcollid,
            }
        };
        let greatest = m.op == pg_sys::MinMaxOp::IS_GREATEST;
        let mut values = args.into_iter();
        let mut result = values.next().ok_or("GREATEST or LEAST without arguments")?;
        for value in values {
            let (small, large) = if greatest {
                (result.clone(), value.clone())
            } else {
                (value.clone(), result.clone())
            };
            // SAFETY: on the backend thread.
            let beyond = unsafe { bridge_call(less.clone(), vec![small, large]) }
                .map_err(|why| Refusal::inexact(format!("GREATEST or LEAST: {why}")))?;
            result = when(value.clone().is_null(), result.clone())
                .when(result.clone().is_null(), value.clone())
                .when(beyond, value)
                .otherwise(result)
                .map_err(super::df)?;
        }
        Ok(result)
    }
}
