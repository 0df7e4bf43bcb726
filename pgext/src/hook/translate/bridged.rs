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
