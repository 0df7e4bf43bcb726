//! What an expression's Vars and Aggrefs mean where it is translated
//! ([`Scope`]), and the aggregates computed in parts that Postgres
//! finishes ([`Parted`]).

use datafusion::logical_expr::Expr;
use pgrx::pg_sys;

/// What an expression's Vars and Aggrefs mean.
pub enum Scope {
    /// Rows of the FROM clause.
    Rows,
    /// Rows after GROUP BY: a grouping expression is its group column, an
    /// aggregate the expression reading its result (its column, or a
    /// check over its columns), or two columns where only Postgres's
    /// finishing expression gives the value its display scale.
    Grouped {
        groups: Vec<(*mut pg_sys::Node, String)>,
        aggs: Vec<(*mut pg_sys::Aggref, Expr)>,
        parted: Vec<Parted>,
    },
}

/// An aggregate DataFusion computes as two columns, which Postgres's
/// finishing expression combines into the value with Postgres's display
/// scale (see `Translator::lift`).
pub struct Parted {
    /// The aggregate.
    pub aggref: *mut pg_sys::Aggref,
    /// How its columns combine.
    pub kind: Parts,
    /// The numeric sum's column.
    pub sum: String,
    /// The count's column ([`Parts::Avg`]) or the display scale's
    /// ([`Parts::ScaledSum`]).
    pub other: String,
}

/// How a [`Parted`] aggregate's columns combine.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    /// avg: `numeric_div(sum, count::numeric)`, which numeric_avg and
    /// int8_avg compute.
    Avg,
    /// sum of numeric values of different display scales (a CASE with a
    /// 0 branch): `round(sum, scale)`, the sum shown with the largest
    /// display scale among the summed values, as numeric addition keeps.
    ScaledSum,
}
