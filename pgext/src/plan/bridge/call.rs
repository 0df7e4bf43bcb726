//! What a bridged call is ([`PgCall`]), as the translation makes it and a
//! shipped plan carries it to every participant, and the expression a
//! called function reads its arguments' types from.

use datafusion::common::{DataFusionError, Result};
use pgrx::pg_sys::{self, Oid};

/// What Postgres computes for a bridged call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Callee {
    /// A function or an operator's function, by OID, on the arguments.
    Function(Oid),
    /// A cast through text (Postgres's `CoerceViaIO`): the argument type's
    /// output function, then the result type's input function.
    ViaText,
    /// `x op ANY (array)` (`any`) or `x op ALL (array)` (Postgres's
    /// `ScalarArrayOpExpr`): boolean function `funcid` on the first
    /// argument and each element of the second, an array.
    Array {
        /// The operator's function.
        funcid: Oid,
        /// ANY rather than ALL.
        any: bool,
    },
}

/// What a bridged call is, as the plan ships it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PgCall {
    /// What is called.
    pub callee: Callee,
    /// Each argument's type and type modifier.
    pub args: Vec<(Oid, i32)>,
    /// The result's type and type modifier.
    pub result: (Oid, i32),
    /// The collation the function is called with (Postgres's
    /// `inputcollid`).
    pub collation: Oid,
}

/// A [`PgCall`] as the plan ships it.
#[derive(Clone, PartialEq, prost::Message)]
struct PgCallNode {
    /// The function; 0 for a cast through text.
    #[prost(uint32, tag = "1")]
    funcid: u32,
    #[prost(uint32, repeated, tag = "2")]
    arg_types: Vec<u32>,
    #[prost(int32, repeated, tag = "3")]
    arg_typmods: Vec<i32>,
    #[prost(uint32, tag = "4")]
    result_type: u32,
    #[prost(int32, tag = "5")]
    result_typmod: i32,
    #[prost(uint32, tag = "6")]
    collation: u32,
    /// [`KIND_FUNCTION`], [`KIND_VIA_TEXT`], [`KIND_ANY`] or [`KIND_ALL`].
    #[prost(uint32, tag = "7")]
    kind: u32,
}

const KIND_FUNCTION: u32 = 0;
const KIND_VIA_TEXT: u32 = 1;
const KIND_ANY: u32 = 2;
const KIND_ALL: u32 = 3;

impl PgCall {
    /// The call's bytes in a shipped plan.
    pub fn encode(&self) -> Vec<u8> {
        use prost::Message;
        let (funcid, kind) = match self.callee {
            Callee::Function(funcid) => (funcid, KIND_FUNCTION),
            Callee::ViaText => (Oid::INVALID, KIND_VIA_TEXT),
            Callee::Array { funcid, any: true } => (funcid, KIND_ANY),
            Callee::Array { funcid, any: false } => (funcid, KIND_ALL),
        };
        PgCallNode {
            funcid: funcid.to_u32(),
            arg_types: self.args.iter().map(|(typid, _)| typid.to_u32()).collect(),
            arg_typmods: self.args.iter().map(|&(_, typmod)| typmod).collect(),
            result_type: self.result.0.to_u32(),
            result_typmod: self.result.1,
            collation: self.collation.to_u32(),
            kind,
        }
        .encode_to_vec()
    }

    /// The call `bytes` ship.
    pub fn decode(bytes: &[u8]) -> Result<PgCall> {
        use prost::Message;
        let corrupt = || DataFusionError::Internal("weft: a shipped Postgres function call is corrupt".into());
        let node = PgCallNode::decode(bytes)
            .map_err(|e| DataFusionError::Internal(format!("weft: a shipped Postgres function call: {e}")))?;
        if node.arg_types.len() != node.arg_typmods.len() {
            return Err(corrupt());
        }
        let funcid = Oid::from(node.funcid);
        let callee = match node.kind {
            KIND_FUNCTION => Callee::Function(funcid),
            KIND_VIA_TEXT => Callee::ViaText,
            KIND_ANY | KIND_ALL => Callee::Array {
                funcid,
                any: node.kind == KIND_ANY,
            },
            _ => return Err(corrupt()),
        };
        Ok(PgCall {
            callee,
            args: node
                .arg_types
                .into_iter()
                .zip(node.arg_typmods)
                .map(|(typid, typmod)| (Oid::from(typid), typmod))
                .collect(),
            result: (Oid::from(node.result_type), node.result_typmod),
            collation: Oid::from(node.collation),
        })
    }
}

/// An expression of a call of `funcid` on arguments of `args`' types
/// returning `result`, for the function to read its arguments' and
/// result's actual types from (`get_fn_expr_argtype`), as the executor
/// hands a function its call's expression: the function over one
/// executor parameter per argument. Parameters, not constants, so that no
/// function takes an argument for constant across the calls
/// (`get_fn_expr_arg_stable`).
///
/// # Safety
/// On the backend thread; allocates in the current memory context.
pub(super) unsafe fn call_expression(funcid: Oid, args: &[Oid], result: Oid, collation: Oid) -> *mut pg_sys::Node {
    // SAFETY: per the caller; every node is fully initialized.
    unsafe {
        let mut list = std::ptr::null_mut::<pg_sys::List>();
        for (id, &typid) in args.iter().enumerate() {
            let param = pg_sys::palloc0(std::mem::size_of::<pg_sys::Param>()).cast::<pg_sys::Param>();
            (*param).xpr.type_ = pg_sys::NodeTag::T_Param;
            (*param).paramkind = pg_sys::ParamKind::PARAM_EXEC;
            (*param).paramid = id as i32;
            (*param).paramtype = typid;
            (*param).paramtypmod = -1;
            (*param).paramcollid = pg_sys::get_typcollation(typid);
            (*param).location = -1;
            list = pg_sys::lappend(list, param.cast());
        }
        pg_sys::makeFuncExpr(
            funcid,
            result,
            list,
            Oid::INVALID,
            collation,
            pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
        )
        .cast()
    }
}
