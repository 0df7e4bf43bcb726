//! Result columns that Postgres finishes.
//!
//! Some values are cheap for Postgres and hard to get exactly right in
//! DataFusion: numeric division and avg, whose result scale Postgres picks
//! per value, or any function off the allowlist applied to a result row.
//! When such an expression is a visible result column of the top-level
//! query, and nothing inside DataFusion depends on it (no ORDER BY, GROUP
//! BY or DISTINCT on it), DataFusion computes its largest translatable
//! parts as columns and the Custom Scan's projection evaluates the rest
//! with Postgres's own functions, over those columns, once per result row:
//! exactly what the stock executor computes.

use datafusion::logical_expr::Expr;
use pgrx::pg_sys::{self, NodeTag};

use super::scope::{Parts, Scope};
use super::Translator;
use crate::hook::refusal::Refusal;
use crate::nodes::{cast, list};

/// A column of the plan's output, as Postgres types it.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// Its type.
    pub typid: pg_sys::Oid,
    /// Its type modifier.
    pub typmod: i32,
    /// Its collation.
    pub collation: pg_sys::Oid,
}

impl Output {
    /// The type of expression `node` (a domain's own: the client is told
    /// the type the query has).
    ///
    /// # Safety
    /// `node` is a valid expression.
    pub unsafe fn of(node: *mut pg_sys::Node) -> Output {
        // SAFETY: per the caller.
        unsafe {
            Output {
                typid: pg_sys::exprType(node),
                typmod: pg_sys::exprTypmod(node),
                collation: pg_sys::exprCollation(node),
            }
        }
    }

    /// Refuses a result column whose values weft does not carry whole: a
    /// char of unknown length (a bpchar expression without a type
    /// modifier, as `COALESCE(c, '')` or a CASE over char columns of
    /// different lengths is), whose padding Postgres shows as it came
    /// from the row and weft, carrying chars without their padding,
    /// cannot give back.
    pub fn carried(&self) -> Result<(), Refusal> {
        if self.typid == pg_sys::BPCHAROID && self.typmod < 0 {
            return Err(Refusal::inexact(
                "a char result of unknown length, whose padding weft does not carry",
            ));
        }
        if self.typid == pg_sys::UNKNOWNOID {
            // An untyped literal has no column type; it stays in
            // Postgres's expression.
            return Err(Refusal::shape("an untyped literal as a column"));
        }
        Ok(())
    }

    /// A column of type `typid`, without a modifier or collation
    /// (numeric, int8 and int4 columns of an aggregate's parts).
    fn plain(typid: pg_sys::Oid) -> Output {
        Output {
            typid,
            typmod: -1,
            collation: pg_sys::InvalidOid,
        }
    }

    /// A Var of this type reading the scan tuple's column `attno`.
    ///
    /// # Safety
    /// On the backend thread (allocates in the current memory context).
    pub unsafe fn var(&self, attno: usize) -> *mut pg_sys::Node {
        // SAFETY: per the caller.
        unsafe {
            pg_sys::makeVar(
                pg_sys::INDEX_VAR,
                attno as i16,
                self.typid,
                self.typmod,
                self.collation,
                0,
            )
            .cast()
        }
    }
}

impl Translator {
    /// `node` as a Postgres expression over DataFusion columns: each
    /// translatable subexpression becomes a column (appended to `leaves`,
    /// the scan tuple's column `offset + its position`), the rest is
    /// copied with Postgres's own functions.
    ///
    /// # Safety
    /// `node` is a valid expression of the top level, on the backend
    /// thread.
    pub(super) unsafe fn lift(
        &mut self,
        node: *mut pg_sys::Node,
        scope: &Scope,
        offset: usize,
        leaves: &mut Vec<(Expr, Output)>,
    ) -> Result<*mut pg_sys::Node, Refusal> {
        // SAFETY: per the caller.
        unsafe {
            // The leader evaluates once per result row, as the stock
            // executor's projection would; volatile functions aside.
            if pg_sys::contain_volatile_functions(node) {
                return Err(Refusal::Function("a volatile function".into()));
            }
            if let Ok(value) = self.expr(node, scope) {
                let output = Output::of(node);
                // A char of unknown length or an untyped literal is no
                // leaf: its parts may be.
                if output.carried().is_ok() {
                    leaves.push((value, output));
                    return Ok(output.var(offset + leaves.len()));
                }
            }
            if let Some(aggref) = cast::<pg_sys::Aggref>(node, NodeTag::T_Aggref) {
                return self.lift_parted(aggref, scope, offset, leaves);
            }
            if let Some(func) = cast::<pg_sys::FuncExpr>(node, NodeTag::T_FuncExpr) {
                // They look at the stored value (its compression, its size
                // on disk), which the finishing projection never sees: it
                // reads the value from DataFusion's column.
                if matches!(
                    (*func).funcid.to_u32(),
                    pg_sys::F_PG_COLUMN_COMPRESSION | pg_sys::F_PG_COLUMN_SIZE
                ) {
                    return Err(Refusal::Function("a function of a value's stored form".into()));
                }
            }
            match (*node).type_ {
                NodeTag::T_OpExpr | NodeTag::T_FuncExpr => {
                    let copy = pg_sys::copyObjectImpl(node.cast()).cast::<pg_sys::Node>();
                    let args = if (*node).type_ == NodeTag::T_OpExpr {
                        &mut (*copy.cast::<pg_sys::OpExpr>()).args
                    } else {
                        &mut (*copy.cast::<pg_sys::FuncExpr>()).args
                    };
                    let mut lifted = std::ptr::null_mut();
                    for arg in list::<pg_sys::Node>(*args) {
                        let arg = self.lift(arg, scope, offset, leaves)?;
                        lifted = pg_sys::lappend(lifted, arg.cast());
                    }
                    *args = lifted;
                    Ok(copy)
                }
                // A constant of a type DataFusion has no column for (a
                // tsquery, a regconfig): Postgres's own, as it is.
                NodeTag::T_Const => Ok(pg_sys::copyObjectImpl(node.cast()).cast()),
                NodeTag::T_CoalesceExpr => {
                    let copy = pg_sys::copyObjectImpl(node.cast()).cast::<pg_sys::CoalesceExpr>();
                    let mut lifted = std::ptr::null_mut();
                    for arg in list::<pg_sys::Node>((*copy).args) {
                        let arg = self.lift(arg, scope, offset, leaves)?;
                        lifted = pg_sys::lappend(lifted, arg.cast());
                    }
                    (*copy).args = lifted;
                    Ok(copy.cast())
                }
                NodeTag::T_RelabelType => {
                    let copy = pg_sys::copyObjectImpl(node.cast()).cast::<pg_sys::RelabelType>();
                    (*copy).arg = self.lift((*copy).arg.cast(), scope, offset, leaves)?.cast();
                    Ok(copy.cast())
                }
                NodeTag::T_CoerceViaIO => {
                    let copy = pg_sys::copyObjectImpl(node.cast()).cast::<pg_sys::CoerceViaIO>();
                    (*copy).arg = self.lift((*copy).arg.cast(), scope, offset, leaves)?.cast();
                    Ok(copy.cast())
                }
                _ => Err(Refusal::shape("an expression Postgres cannot finish from columns")),
            }
        }
    }

    /// An aggregate DataFusion computed in two parts ([`Parts`]),
    /// finished by Postgres: an avg as `numeric_div(sum, count::numeric)`
    /// (numeric_avg and int8_avg do exactly that; both are NULL over no
    /// rows, as is the division of a NULL sum), a sum of values of
    /// different display scales as `round(sum, scale)`, the largest
    /// scale among them (NULL over no values, as the sum).
    ///
    /// # Safety
    /// As [`Translator::lift`].
    unsafe fn lift_parted(
        &mut self,
        aggref: *mut pg_sys::Aggref,
        scope: &Scope,
        offset: usize,
        leaves: &mut Vec<(Expr, Output)>,
    ) -> Result<*mut pg_sys::Node, Refusal> {
        let Scope::Grouped { parted, .. } = scope else {
            return Err(Refusal::shape("an aggregate outside an aggregation"));
        };
        // SAFETY: per the caller.
        let p = parted
            .iter()
            .find(|p| unsafe { pg_sys::equal(p.aggref.cast(), aggref.cast()) })
            .ok_or("an aggregate weft does not finish")?;
        leaves.push((Expr::Column(p.sum.as_str().into()), Output::plain(pg_sys::NUMERICOID)));
        // SAFETY: on the backend thread.
        let sum = unsafe { Output::plain(pg_sys::NUMERICOID).var(offset + leaves.len()) };
        let (other, function) = match p.kind {
            Parts::Avg => (Output::plain(pg_sys::INT8OID), pg_sys::F_NUMERIC_DIV),
            Parts::ScaledSum => (Output::plain(pg_sys::INT4OID), pg_sys::F_ROUND_NUMERIC_INT4),
        };
        leaves.push((Expr::Column(p.other.as_str().into()), other));
        // SAFETY: as above.
        unsafe {
            let mut other = other.var(offset + leaves.len());
            if p.kind == Parts::Avg {
                other = pg_sys::makeFuncExpr(
                    pg_sys::Oid::from(pg_sys::F_NUMERIC_INT8),
                    pg_sys::NUMERICOID,
                    pg_sys::lappend(std::ptr::null_mut(), other.cast()),
                    pg_sys::InvalidOid,
                    pg_sys::InvalidOid,
                    pg_sys::CoercionForm::COERCE_EXPLICIT_CAST,
                )
                .cast();
            }
            let args = pg_sys::lappend(pg_sys::lappend(std::ptr::null_mut(), sum.cast()), other.cast());
            Ok(pg_sys::makeFuncExpr(
                pg_sys::Oid::from(function),
                pg_sys::NUMERICOID,
                args,
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
                pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
            )
            .cast())
        }
    }
}
