//! A call's arguments taken apart, and a function's name for refusals.

use datafusion::logical_expr::Expr;
use pgrx::pg_sys::{self, Oid};

use super::Refusal;

/// A function's name, for refusals.
///
/// # Safety
/// On the backend thread.
pub(super) unsafe fn function_name(f: u32) -> String {
    // SAFETY: per the caller; get_func_name returns NULL for no function.
    unsafe { crate::nodes::text(pg_sys::get_func_name(Oid::from(f))) }
}

pub(super) fn two(args: Vec<Expr>) -> Result<[Expr; 2], Refusal> {
    <[Expr; 2]>::try_from(args).map_err(|_| "an operator without two arguments".into())
}

pub(super) fn one(args: Vec<Expr>) -> Result<Expr, Refusal> {
    let [value] = <[Expr; 1]>::try_from(args).map_err(|_| "a cast with extra arguments")?;
    Ok(value)
}
