//! [`Refusal`]: why weft leaves a query to Postgres's own plan.
//!
//! A refusal is never an error: the stock plan runs, and the reason is
//! what EXPLAIN shows with `weft.explain_fallback`. The kinds say where
//! the line was drawn, which is what a user can act on (a setting, the
//! cost gate) or what a later version of weft may take (a shape, a
//! function).

use std::borrow::Cow;
use std::fmt;

/// Why weft leaves a query to Postgres.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// weft may not consider the query: a setting, the statement's kind,
    /// or one of Postgres's own conditions for a parallel plan.
    NotEligible(&'static str),
    /// The stock plan is cheap enough to keep (`weft.min_cost`,
    /// `weft.scan_cost_ratio`).
    Cheap(String),
    /// A shape of SQL weft does not translate.
    Shape(Cow<'static, str>),
    /// A function, operator or aggregate outside weft's allowlist.
    Function(String),
    /// A meaning weft cannot reproduce exactly: an order under a
    /// collation, equality of floats or intervals, a display scale
    /// Postgres picks per value.
    Inexact(Cow<'static, str>),
    /// DataFusion cannot plan what the translation built.
    DataFusion(String),
}

impl Refusal {
    /// A shape of SQL weft does not translate.
    pub fn shape(what: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal::Shape(what.into())
    }

    /// A meaning weft cannot reproduce exactly.
    pub fn inexact(what: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal::Inexact(what.into())
    }

    /// DataFusion's error, as a refusal.
    pub fn datafusion(e: impl fmt::Display) -> Refusal {
        Refusal::DataFusion(e.to_string())
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotEligible(why) => f.write_str(why),
            Refusal::Cheap(why) | Refusal::Function(why) => f.write_str(why),
            Refusal::Shape(why) | Refusal::Inexact(why) => f.write_str(why),
            Refusal::DataFusion(e) => write!(f, "DataFusion cannot plan it: {e}"),
        }
    }
}

/// A condition of the translation's own (an empty list, a missing
/// argument) met where the Query has a shape weft does not expect.
impl From<&'static str> for Refusal {
    fn from(what: &'static str) -> Refusal {
        Refusal::Shape(what.into())
    }
}

/// A constant or parameter weft cannot carry as Postgres holds it (the
/// value conversions of [`crate::nodes`] fail with their reason).
impl From<String> for Refusal {
    fn from(why: String) -> Refusal {
        Refusal::Inexact(why.into())
    }
}
