//! Filters evaluated inside the heap scan, on each tuple's values in place,
//! before any column is converted to Arrow.
//!
//! Most analytic queries keep a small share of a large table's rows (a date
//! range, a status, a name pattern). Converting every row's columns to Arrow
//! and only then filtering spends most of the scan on rows that are thrown
//! away. DataFusion offers a query's conjuncts to the table
//! ([`crate::plan::table::HeapTable`] asks [`ScanFilter::supports`]); those this
//! module evaluates exactly as DataFusion's FilterExec would become a
//! [`ScanFilter`], and DataFusion drops them from its own plan (they are
//! pushed down as *exact*). The scan evaluates the filter per tuple, on the
//! values read in place, and converts only the tuples that pass; a column
//! only a filter reads is never converted at all.
//!
//! What is evaluated here (anything else stays in DataFusion's FilterExec):
//! - AND, OR and NOT, in SQL's three-valued logic; a boolean column;
//!   IS [NOT] NULL;
//! - `=`, `<>`, `<`, `<=`, `>`, `>=` between a column and a constant or two
//!   columns, of integers, dates, times, timestamps, oids, decimals and
//!   strings (bytes order, which is the order DataFusion compares Utf8 in);
//! - a column cast losslessly (a wider integer or decimal, a date to a
//!   timestamp): the cast is a multiplication, done in 128 bits;
//! - `[NOT] IN` lists of constants, NULLs among them;
//! - `[NOT] LIKE` with `%` wildcards only (no `_`, no escapes).
//!
//! Values are read as their Arrow values ([`crate::types::scalar`]), so
//! they compare as DataFusion would compare them. Values Arrow cannot hold
//! (infinite dates and timestamps, numeric NaN and infinities), which a
//! column reader refuses, compare here as Postgres orders them: a filter
//! on a column that only the filter reads gives Postgres's answer where
//! converting the column would have failed.

mod compile;

use datafusion::logical_expr::{Expr, Operator};
use memchr::memmem;
use pgrx::pg_sys::Datum;

use crate::error::Error;
use crate::types::{fixed_scalar, is_special, scalar, PgType, Scalar};
use compile::{flatten_all, flipped, Compiler};

/// Filters a scan evaluates on each tuple; see the module docs.
#[derive(Debug)]
pub struct ScanFilter {
    /// The conjuncts, as DataFusion pushed them (shipped to the workers,
    /// shown by EXPLAIN).
    pub exprs: Vec<Expr>,
    /// The columns the predicate reads: indexes into the column list it was
    /// compiled against.
    pub inputs: Vec<usize>,
    /// The type of each input.
    types: Vec<PgType>,
    /// The conjuncts comparing a by-value input with constants, as one
    /// range per input: a scan tests them as it reads each input
    /// ([`crate::storage::deform`]), before it walks on.
    bounds: Vec<Bound>,
    /// The other conjuncts, cheapest first.
    predicate: Predicate,
}

/// The top-level conjuncts `input op constant` (op one of `=`, `<`, `<=`,
/// `>`, `>=`; the input possibly through a lossless cast) of one input
/// passed by value (an integer, date, time, timestamp or oid) or of a
/// numeric, intersected: the input's value must lie in `lo..=hi`, as
/// [`fixed_scalar`] or [`scalar`] reads it (so a date's infinities lie
/// beyond its finite values, and a numeric's NaN above them all, as they
/// compare in the predicate).
///
/// TPC-H filters mostly this way (a date range, a bound on a key, a range
/// of quantities or discounts); tested as the scan reads the attribute,
/// such a conjunct costs two comparisons instead of a walk through the
/// predicate, and a tuple it fails is left before the walk reaches the
/// attributes after it.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// The input (an index into [`ScanFilter::inputs`]).
    pub input: usize,
    ty: PgType,
    lo: i128,
    hi: i128,
}

impl Bound {
    /// Whether a value of the input (`null` for NULL, which no comparison
    /// is TRUE for) lies in the bound; for a numeric that cannot be read
    /// (a corrupt one), why.
    ///
    /// # Safety
    /// A non-NULL `datum` is a valid value of the input's type, as
    /// [`ScanFilter::passes`] requires.
    #[inline(always)]
    pub unsafe fn admits(&self, datum: Datum, null: bool) -> Result<bool, Error> {
        if null {
            return Ok(false);
        }
        let v = match fixed_scalar(self.ty, datum) {
            Some(v) => v,
            // SAFETY: per the caller; a numeric, the one type passed by
            // reference a bound is made for.
            None => match unsafe { scalar(self.ty, datum) }? {
                Scalar::Int(v) => v,
                Scalar::Bytes(_) => return Err("weft: a scan filter's bound on a string".into()),
            },
        };
        Ok(self.lo <= v && v <= self.hi)
    }

    /// The bound of the conjunct `p`, if it is one of an input's
    /// comparisons with a constant.
    ///
    /// Through a lossless cast (`v * factor op c`, a date compared with a
    /// timestamp, as Postgres's `date < date + interval` is) the bound is
    /// the integers `v` for which it holds: `v * f < c` is `v <= floor((c
    /// - 1) / f)`, and so on. An infinity, which the cast leaves as it is,
    /// lies beyond every finite `c` and every bound alike.
    fn of(p: &Predicate, types: &[PgType]) -> Option<Bound> {
        let numeric = |input: usize| matches!(types[input], PgType::Numeric { .. });
        let (input, factor, op, c) = match *p {
            Predicate::CompareFixed {
                input,
                factor,
                op,
                constant,
            } => (input, factor, op, constant),
            // A numeric's comparisons stay Compares in the predicate (its
            // values are read, not taken from the datum).
            Predicate::Compare {
                left: Operand::Input { input, factor },
                op,
                right: Operand::Const(Value::Int(c)),
            } if numeric(input) => (input, factor, op, c),
            Predicate::Compare {
                left: Operand::Const(Value::Int(c)),
                op,
                right: Operand::Input { input, factor },
            } if numeric(input) => (input, factor, flipped(op), c),
            _ => return None,
        };
        if factor <= 0 {
            return None;
        }
        let floor = |x: i128| x.div_euclid(factor);
        let ceil = |x: i128| -(-x).div_euclid(factor);
        let (lo, hi) = match op {
            Operator::Eq if c.rem_euclid(factor) == 0 => (c / factor, c / factor),
            // No integer times the factor equals it: an empty range.
            Operator::Eq => (1, 0),
            Operator::Lt => (i128::MIN, floor(c - 1)),
            Operator::LtEq => (i128::MIN, floor(c)),
            Operator::Gt => (ceil(c + 1), i128::MAX),
            Operator::GtEq => (ceil(c), i128::MAX),
            _ => return None,
        };
        Some(Bound {
            input,
            ty: types[input],
            lo,
            hi,
        })
    }
}

/// A compiled filter. Inputs are indexes into [`ScanFilter::inputs`].
#[derive(Debug)]
pub(super) enum Predicate {
    /// A constant TRUE, FALSE or NULL.
    Const(Option<bool>),
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
    /// A boolean column.
    Input(usize),
    IsNull {
        input: usize,
        negated: bool,
    },
    Compare {
        left: Operand,
        op: Operator,
        right: Operand,
    },
    /// `input * factor op constant` for an input passed by value (integers,
    /// dates, timestamps): the commonest filter, read straight from the
    /// datum.
    CompareFixed {
        input: usize,
        factor: i128,
        op: Operator,
        constant: i128,
    },
    InList {
        input: Operand,
        list: Vec<Value>,
        /// The list holds a NULL (a miss is then NULL, not FALSE).
        has_null: bool,
        negated: bool,
    },
    Like {
        input: usize,
        pattern: Pattern,
        negated: bool,
    },
}

/// One side of a comparison.
#[derive(Debug)]
pub(super) enum Operand {
    /// An input's value times `factor` (a lossless cast; 1 for none).
    Input {
        input: usize,
        factor: i128,
    },
    Const(Value),
}

/// A constant, in the domain [`Scalar`] reads values in.
#[derive(Debug, PartialEq)]
pub(super) enum Value {
    Int(i128),
    Bytes(Vec<u8>),
}

/// A LIKE pattern whose only wildcard is `%`: the literal parts between
/// the `%`s. A value matches when it starts with the first part, ends with
/// the last, and holds the middle ones in order between them. (Matching
/// UTF-8 bytes is matching characters: no character's encoding starts
/// inside another's.)
#[derive(Debug)]
pub(super) struct Pattern {
    pub(super) first: Vec<u8>,
    /// None when the pattern has no `%` (the value must equal `first`).
    pub(super) last: Option<Vec<u8>>,
    pub(super) middle: Vec<memmem::Finder<'static>>,
}

/// A column the filter can name: its name and type.
pub type FilterColumn<'a> = (&'a str, PgType);

impl ScanFilter {
    /// Whether `expr` can be evaluated in the scan of a table with
    /// `columns`.
    pub fn supports(expr: &Expr, columns: &[FilterColumn]) -> bool {
        Compiler::new(columns).predicate(expr).is_some()
    }

    /// The filter of the conjuncts `exprs` over `columns`; an error names
    /// the first conjunct [`ScanFilter::supports`] refuses.
    pub fn compile(exprs: Vec<Expr>, columns: &[FilterColumn]) -> Result<ScanFilter, String> {
        let mut compiler = Compiler::new(columns);
        let mut conjuncts = Vec::with_capacity(exprs.len());
        for expr in &exprs {
            match compiler.predicate(expr) {
                Some(p) => conjuncts.push(p),
                None => return Err(format!("weft cannot evaluate the filter {expr} in a scan")),
            }
        }
        let types = compiler.inputs.iter().map(|&c| columns[c].1).collect::<Vec<_>>();
        let mut bounds: Vec<Bound> = Vec::new();
        let mut rest = Vec::new();
        for p in flatten_all(conjuncts) {
            match Bound::of(&p, &types) {
                Some(b) => match bounds.iter_mut().find(|o| o.input == b.input) {
                    Some(o) => (o.lo, o.hi) = (o.lo.max(b.lo), o.hi.min(b.hi)),
                    None => bounds.push(b),
                },
                None => rest.push(p),
            }
        }
        let mut predicate = Predicate::And(rest);
        predicate.order(&types);
        Ok(ScanFilter {
            exprs,
            inputs: compiler.inputs,
            types,
            bounds,
            predicate,
        })
    }

    /// The conjuncts a scan may test as it reads each input, before
    /// [`ScanFilter::passes_beyond_bounds`].
    pub fn bounds(&self) -> &[Bound] {
        &self.bounds
    }

    /// Whether the filter holds more than its bounds.
    pub fn has_more_than_bounds(&self) -> bool {
        !matches!(&self.predicate, Predicate::And(rest) if rest.is_empty())
    }

    /// Whether a tuple passes (the filter is TRUE, not FALSE or NULL).
    /// `fetch(i)` gives input i's datum and whether it is NULL; `scratch`
    /// is reused from tuple to tuple. On a value the conversion refuses,
    /// the input it belongs to and why.
    ///
    /// # Safety
    /// Every datum `fetch` gives is a valid value of its input's type, as
    /// [`crate::types::ColumnReader::push_all`] requires.
    pub unsafe fn passes(
        &self,
        scratch: &mut Scratch,
        fetch: impl Fn(usize) -> (Datum, bool),
    ) -> Result<bool, (usize, Error)> {
        for bound in &self.bounds {
            let (datum, null) = fetch(bound.input);
            // SAFETY: per the caller.
            if !unsafe { bound.admits(datum, null) }.map_err(|e| (bound.input, e))? {
                return Ok(false);
            }
        }
        // SAFETY: per the caller.
        unsafe { self.passes_beyond_bounds(scratch, fetch) }
    }

    /// Whether a tuple whose inputs lie in [`ScanFilter::bounds`] passes;
    /// as [`ScanFilter::passes`] otherwise.
    ///
    /// # Safety
    /// As for [`ScanFilter::passes`].
    pub unsafe fn passes_beyond_bounds(
        &self,
        scratch: &mut Scratch,
        fetch: impl Fn(usize) -> (Datum, bool),
    ) -> Result<bool, (usize, Error)> {
        scratch.values.clear();
        scratch.values.resize(self.inputs.len(), Cached::Pending);
        // Row's invariant (every fetched datum is valid) is the caller's.
        let mut row = Row {
            types: &self.types,
            values: &mut scratch.values,
            fetch,
        };
        Ok(self.predicate.eval(&mut row)? == Some(true))
    }
}

/// A tuple's decoded inputs, reused between tuples.
#[derive(Default)]
pub struct Scratch {
    values: Vec<Cached>,
}

/// An input of the current tuple: not read yet, NULL, or its value. The
/// bytes of a string live as long as the tuple (its page stays pinned, a
/// detoasted copy stays in the batch's memory): `'static` stands for that,
/// and [`ScanFilter::passes`] clears them before it returns to a caller
/// that could outlive them.
#[derive(Clone, Copy)]
enum Cached {
    Pending,
    Null,
    Value(Scalar<'static>),
}

/// A tuple's inputs as the predicate reads them.
///
/// Invariant: `fetch(i)` gives a valid datum of type `types[i]` (or a
/// NULL), as [`ScanFilter::passes`]'s caller promises; only
/// [`ScanFilter::passes_beyond_bounds`] makes a Row.
struct Row<'r, F> {
    types: &'r [PgType],
    values: &'r mut Vec<Cached>,
    fetch: F,
}

/// Input `input`'s integer `v` cast by `factor` (a multiplication); an
/// infinity or NaN stays what it is, beyond every finite value. The
/// compiler takes only lossless casts, so no finite value of a column
/// overflows.
fn scaled(v: i128, factor: i128, input: usize) -> Result<i128, (usize, Error)> {
    if factor == 1 || is_special(v) {
        return Ok(v);
    }
    v.checked_mul(factor)
        .ok_or_else(|| (input, "a value out of range for the scan filter's cast".into()))
}

/// Whether `op` holds between two values that compare as `ordering`.
fn holds(op: Operator, ordering: std::cmp::Ordering) -> bool {
    match op {
        Operator::Eq => ordering.is_eq(),
        Operator::NotEq => ordering.is_ne(),
        Operator::Lt => ordering.is_lt(),
        Operator::LtEq => ordering.is_le(),
        Operator::Gt => ordering.is_gt(),
        _ => ordering.is_ge(),
    }
}

impl<F: Fn(usize) -> (Datum, bool)> Row<'_, F> {
    /// Input `i`'s integer, None for NULL, for an input passed by value:
    /// read straight from its datum, uncached (that is cheaper than the
    /// cache).
    fn fixed(&mut self, i: usize) -> Result<Option<i128>, (usize, Error)> {
        let (datum, null) = (self.fetch)(i);
        if null {
            return Ok(None);
        }
        match fixed_scalar(self.types[i], datum) {
            Some(v) => Ok(Some(v)),
            None => Err((i, "weft: a scan filter read a by-value input of another type".into())),
        }
    }

    /// Whether input `i` is NULL: its value is not read (a type the filter
    /// cannot compare can still be tested for NULL).
    fn is_null(&mut self, i: usize) -> bool {
        match self.values[i] {
            Cached::Null => true,
            Cached::Value(_) => false,
            Cached::Pending => (self.fetch)(i).1,
        }
    }

    /// Input `i`'s value, None for NULL.
    fn get(&mut self, i: usize) -> Result<Option<Scalar<'static>>, (usize, Error)> {
        match self.values[i] {
            Cached::Null => Ok(None),
            Cached::Value(v) => Ok(Some(v)),
            Cached::Pending => {
                let (datum, null) = (self.fetch)(i);
                let value = if null {
                    None
                } else {
                    // SAFETY: a valid datum of this type (Row's invariant).
                    Some(unsafe { scalar(self.types[i], datum) }.map_err(|e| (i, e))?)
                };
                self.values[i] = value.map_or(Cached::Null, Cached::Value);
                Ok(value)
            }
        }
    }
}

impl Predicate {
    /// The predicate's value for the row: Some(true), Some(false) or None
    /// (NULL).
    fn eval<F: Fn(usize) -> (Datum, bool)>(&self, row: &mut Row<F>) -> Result<Option<bool>, (usize, Error)> {
        Ok(match self {
            Predicate::Const(v) => *v,
            Predicate::And(all) => kleene(all, row, false)?,
            Predicate::Or(any) => kleene(any, row, true)?,
            Predicate::Not(p) => p.eval(row)?.map(|v| !v),
            Predicate::Input(i) => row.get(*i)?.map(|v| v != Scalar::Int(0)),
            Predicate::IsNull { input, negated } => Some(row.is_null(*input) != *negated),
            Predicate::Compare { left, op, right } => {
                let (Some(l), Some(r)) = (left.get(row)?, right.get(row)?) else {
                    return Ok(None);
                };
                Some(holds(*op, l.cmp(&r)))
            }
            Predicate::CompareFixed {
                input,
                factor,
                op,
                constant,
            } => {
                let Some(v) = row.fixed(*input)? else {
                    return Ok(None);
                };
                Some(holds(*op, scaled(v, *factor, *input)?.cmp(constant)))
            }
            Predicate::InList {
                input,
                list,
                has_null,
                negated,
            } => {
                let Some(v) = input.get(row)? else {
                    return Ok(None);
                };
                if list.iter().any(|c| c.as_scalar() == v) {
                    Some(!negated)
                } else if *has_null {
                    None
                } else {
                    Some(*negated)
                }
            }
            Predicate::Like {
                input,
                pattern,
                negated,
            } => match row.get(*input)? {
                Some(Scalar::Bytes(s)) => Some(pattern.matches(s) != *negated),
                Some(Scalar::Int(_)) => unreachable!("LIKE compiles over strings only"),
                None => None,
            },
        })
    }

    /// Reorders ANDs and ORs cheapest first: their value does not depend
    /// on the order, and the first FALSE (or TRUE) spares the rest.
    fn order(&mut self, types: &[PgType]) {
        if let Predicate::And(ps) | Predicate::Or(ps) = self {
            for p in ps.iter_mut() {
                p.order(types);
            }
            ps.sort_by_key(|p| p.cost(types));
        }
        if let Predicate::Not(p) = self {
            p.order(types);
        }
    }

    /// A rough rank of the work to evaluate.
    fn cost(&self, types: &[PgType]) -> u32 {
        let input = |i: usize| match types[i] {
            PgType::Numeric { .. } => 4,
            PgType::Text | PgType::BpChar | PgType::Name => 3,
            _ => 1,
        };
        let operand = |o: &Operand| match o {
            Operand::Input { input: i, .. } => input(*i),
            Operand::Const(_) => 0,
        };
        match self {
            Predicate::Const(_) => 0,
            Predicate::Input(i) | Predicate::IsNull { input: i, .. } => input(*i),
            Predicate::Compare { left, right, .. } => operand(left) + operand(right),
            Predicate::CompareFixed { .. } => 1,
            Predicate::InList { input, list, .. } => operand(input) + list.len() as u32 / 4,
            Predicate::Like { input: i, .. } => input(*i) + 4,
            Predicate::Not(p) => p.cost(types),
            Predicate::And(ps) | Predicate::Or(ps) => ps.iter().map(|p| p.cost(types)).sum(),
        }
    }
}

/// AND (`decisive` false) or OR (`decisive` true) of `ps` in three-valued
/// logic: the decisive value as soon as one operand has it, else NULL if
/// any operand is NULL, else the other value.
fn kleene<F: Fn(usize) -> (Datum, bool)>(
    ps: &[Predicate],
    row: &mut Row<F>,
    decisive: bool,
) -> Result<Option<bool>, (usize, Error)> {
    let mut result = Some(!decisive);
    for p in ps {
        match p.eval(row)? {
            Some(v) if v == decisive => return Ok(Some(decisive)),
            None => result = None,
            Some(_) => {}
        }
    }
    Ok(result)
}

impl Value {
    /// The constant as the values it is compared with.
    fn as_scalar(&self) -> Scalar<'_> {
        match self {
            Value::Int(v) => Scalar::Int(*v),
            Value::Bytes(b) => Scalar::Bytes(b),
        }
    }
}

impl Operand {
    /// The operand's value for the row, None for NULL.
    fn get<'v, F: Fn(usize) -> (Datum, bool)>(
        &'v self,
        row: &mut Row<F>,
    ) -> Result<Option<Scalar<'v>>, (usize, Error)> {
        Ok(match self {
            Operand::Const(v) => Some(v.as_scalar()),
            Operand::Input { input, factor } => match row.get(*input)? {
                Some(Scalar::Int(v)) => Some(Scalar::Int(scaled(v, *factor, *input)?)),
                other => other,
            },
        })
    }
}

impl Pattern {
    /// The pattern of a LIKE literal; None if it has a wildcard other than
    /// `%` or an escape (`escape`, or DataFusion's default backslash).
    fn new(pattern: &str, escape: Option<char>) -> Option<Pattern> {
        if pattern.contains(['_', '\\']) || escape.is_some_and(|e| pattern.contains(e)) {
            return None;
        }
        let mut parts: Vec<&str> = pattern.split('%').collect();
        let first = parts.remove(0).as_bytes().to_vec();
        let last = parts.pop().map(|p| p.as_bytes().to_vec());
        let middle = parts
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(|p| memmem::Finder::new(p.as_bytes()).into_owned())
            .collect();
        Some(Pattern { first, last, middle })
    }

    fn matches(&self, s: &[u8]) -> bool {
        let Some(last) = &self.last else {
            return s == self.first;
        };
        if s.len() < self.first.len() + last.len() || !s.starts_with(&self.first) || !s.ends_with(last) {
            return false;
        }
        // Each middle part at its leftmost place after the one before: if
        // any placement fits, this one does.
        let mut rest = &s[self.first.len()..s.len() - last.len()];
        for finder in &self.middle {
            match finder.find(rest) {
                Some(at) => rest = &rest[at + finder.needle().len()..],
                None => return false,
            }
        }
        true
    }
}
