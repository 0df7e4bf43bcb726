//! Postgres's statistics of float8 values (and of float4 values, which it
//! reads as float8): `var_pop`, `var_samp`, `stddev_pop`, `stddev_samp`
//! (`variance`, `stddev`), `covar_pop`, `covar_samp`, `corr` and the
//! `regr_*` family, computed as Postgres computes them.
//!
//! Postgres accumulates the count `N`, the sums `Sx` (and `Sy`) and the
//! sums of squared deviations `Sxx` (`Syy`, `Sxy`) row by row with the
//! Youngs-Cramer update (Youngs and Cramer, "Some Results Relevant to
//! Choice of Sum and Sum-of-Product Algorithms", Technometrics 13(3), 1971):
//! with `N` rows seen, a new value `x` gives `tmp = x·N − Sx` (after `Sx` is
//! increased by `x`) and `Sxx += tmp² / (N·(N − 1))`, which keeps the
//! precision the textbook `N·Σx² − (Σx)²` loses to cancellation. Partial
//! states of several processes combine by Chan, Golub and LeVeque's
//! pairwise formula (`float8_combine`, `float8_regr_combine`). Each
//! participant accumulates its rows as a Postgres worker does and the
//! states combine as a parallel plan's do, with Postgres's overflow error
//! (an infinite result of finite inputs) and its NaNs (an infinite input
//! makes the squared deviations NaN).
//!
//! The result therefore depends on the order of the rows and on how they
//! were split among processes in its last bits, as Postgres's own parallel
//! plans' results do; it never differs beyond that.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, Expr, GroupsAccumulator, Signature, Volatility,
};
use pgrx::pg_sys;

use crate::error::Error;

/// Which statistic of the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Statistic {
    /// `var_pop`: `Sxx / N`.
    VarPop,
    /// `var_samp` (`variance`): `Sxx / (N − 1)`.
    VarSamp,
    /// `stddev_pop`: the root of `var_pop`.
    StddevPop,
    /// `stddev_samp` (`stddev`): the root of `var_samp`.
    StddevSamp,
    /// `regr_count(y, x)`: the rows where both are not NULL.
    RegrCount,
    /// `regr_sxx(y, x)`: `Sxx`.
    RegrSxx,
    /// `regr_syy(y, x)`: `Syy`.
    RegrSyy,
    /// `regr_sxy(y, x)`: `Sxy`.
    RegrSxy,
    /// `regr_avgx(y, x)`: `Sx / N`.
    RegrAvgX,
    /// `regr_avgy(y, x)`: `Sy / N`.
    RegrAvgY,
    /// `regr_r2(y, x)`: `Sxy² / (Sxx·Syy)`.
    RegrR2,
    /// `regr_slope(y, x)`: `Sxy / Sxx`.
    RegrSlope,
    /// `regr_intercept(y, x)`: `(Sy − Sx·Sxy/Sxx) / N`.
    RegrIntercept,
    /// `covar_pop(y, x)`: `Sxy / N`.
    CovarPop,
    /// `covar_samp(y, x)`: `Sxy / (N − 1)`.
    CovarSamp,
    /// `corr(y, x)`: `Sxy / √(Sxx·Syy)`.
    Corr,
}

impl Statistic {
    const ALL: [Statistic; 16] = [
        Statistic::VarPop,
        Statistic::VarSamp,
        Statistic::StddevPop,
        Statistic::StddevSamp,
        Statistic::RegrCount,
        Statistic::RegrSxx,
        Statistic::RegrSyy,
        Statistic::RegrSxy,
        Statistic::RegrAvgX,
        Statistic::RegrAvgY,
        Statistic::RegrR2,
        Statistic::RegrSlope,
        Statistic::RegrIntercept,
        Statistic::CovarPop,
        Statistic::CovarSamp,
        Statistic::Corr,
    ];

    /// The statistic aggregate function `f` computes over float4 or float8
    /// values (the two-variable ones take float8 only); None for any other
    /// function.
    pub fn of_floats(f: u32) -> Option<Statistic> {
        Some(match f {
            pg_sys::F_VAR_POP_FLOAT4 | pg_sys::F_VAR_POP_FLOAT8 => Statistic::VarPop,
            pg_sys::F_VAR_SAMP_FLOAT4
            | pg_sys::F_VAR_SAMP_FLOAT8
            | pg_sys::F_VARIANCE_FLOAT4
            | pg_sys::F_VARIANCE_FLOAT8 => Statistic::VarSamp,
            pg_sys::F_STDDEV_POP_FLOAT4 | pg_sys::F_STDDEV_POP_FLOAT8 => Statistic::StddevPop,
            pg_sys::F_STDDEV_SAMP_FLOAT4
            | pg_sys::F_STDDEV_SAMP_FLOAT8
            | pg_sys::F_STDDEV_FLOAT4
            | pg_sys::F_STDDEV_FLOAT8 => Statistic::StddevSamp,
            pg_sys::F_REGR_COUNT => Statistic::RegrCount,
            pg_sys::F_REGR_SXX => Statistic::RegrSxx,
            pg_sys::F_REGR_SYY => Statistic::RegrSyy,
            pg_sys::F_REGR_SXY => Statistic::RegrSxy,
            pg_sys::F_REGR_AVGX => Statistic::RegrAvgX,
            pg_sys::F_REGR_AVGY => Statistic::RegrAvgY,
            pg_sys::F_REGR_R2 => Statistic::RegrR2,
            pg_sys::F_REGR_SLOPE => Statistic::RegrSlope,
            pg_sys::F_REGR_INTERCEPT => Statistic::RegrIntercept,
            pg_sys::F_COVAR_POP => Statistic::CovarPop,
            pg_sys::F_COVAR_SAMP => Statistic::CovarSamp,
            pg_sys::F_CORR => Statistic::Corr,
            _ => return None,
        })
    }

    /// Whether it reads two values per row, `y` and `x` (in that order, as
    /// Postgres's `regr_*` take them).
    fn pair(self) -> bool {
        !matches!(
            self,
            Statistic::VarPop | Statistic::VarSamp | Statistic::StddevPop | Statistic::StddevSamp
        )
    }

    fn name(self) -> &'static str {
        match self {
            Statistic::VarPop => "pg_float_var_pop",
            Statistic::VarSamp => "pg_float_var_samp",
            Statistic::StddevPop => "pg_float_stddev_pop",
            Statistic::StddevSamp => "pg_float_stddev_samp",
            Statistic::RegrCount => "pg_regr_count",
            Statistic::RegrSxx => "pg_regr_sxx",
            Statistic::RegrSyy => "pg_regr_syy",
            Statistic::RegrSxy => "pg_regr_sxy",
            Statistic::RegrAvgX => "pg_regr_avgx",
            Statistic::RegrAvgY => "pg_regr_avgy",
            Statistic::RegrR2 => "pg_regr_r2",
            Statistic::RegrSlope => "pg_regr_slope",
            Statistic::RegrIntercept => "pg_regr_intercept",
            Statistic::CovarPop => "pg_covar_pop",
            Statistic::CovarSamp => "pg_covar_samp",
            Statistic::Corr => "pg_corr",
        }
    }

    /// The statistic of `m`, as Postgres's final function computes it
    /// (`float8_var_pop`, `float8_regr_slope`, ...); None where Postgres's
    /// is NULL.
    fn of(self, m: &Moments) -> Option<f64> {
        let n = m.n;
        let at_least = |rows: f64| n >= rows;
        let value = match self {
            Statistic::VarPop => at_least(1.0).then(|| m.sxx / n)?,
            Statistic::VarSamp => at_least(2.0).then(|| m.sxx / (n - 1.0))?,
            Statistic::StddevPop => at_least(1.0).then(|| (m.sxx / n).sqrt())?,
            Statistic::StddevSamp => at_least(2.0).then(|| (m.sxx / (n - 1.0)).sqrt())?,
            Statistic::RegrCount => n,
            Statistic::RegrSxx => at_least(1.0).then_some(m.sxx)?,
            Statistic::RegrSyy => at_least(1.0).then_some(m.syy)?,
            Statistic::RegrSxy => at_least(1.0).then_some(m.sxy)?,
            Statistic::RegrAvgX => at_least(1.0).then(|| m.sx / n)?,
            Statistic::RegrAvgY => at_least(1.0).then(|| m.sy / n)?,
            Statistic::CovarPop => at_least(1.0).then(|| m.sxy / n)?,
            Statistic::CovarSamp => at_least(2.0).then(|| m.sxy / (n - 1.0))?,
            Statistic::Corr => {
                (at_least(1.0) && m.sxx != 0.0 && m.syy != 0.0).then(|| m.sxy / (m.sxx * m.syy).sqrt())?
            }
            Statistic::RegrR2 if !at_least(1.0) || m.sxx == 0.0 => return None,
            Statistic::RegrR2 if m.syy == 0.0 => 1.0,
            Statistic::RegrR2 => (m.sxy * m.sxy) / (m.sxx * m.syy),
            Statistic::RegrSlope => (at_least(1.0) && m.sxx != 0.0).then(|| m.sxy / m.sxx)?,
            Statistic::RegrIntercept => (at_least(1.0) && m.sxx != 0.0).then(|| (m.sy - m.sx * m.sxy / m.sxx) / n)?,
        };
        Some(value)
    }
}

/// Statistic `kind` of `args` (one float8 value, or `y` and `x`), as
/// Postgres computes it.
pub fn statistic(kind: Statistic, args: Vec<Expr>) -> Expr {
    AggregateUDF::new_from_impl(PgStatistic::new(kind)).call(args)
}

/// Registers the statistics in a session, so that plans using them decode.
pub fn register(state: &mut datafusion::execution::SessionState) -> Result<()> {
    use datafusion::execution::FunctionRegistry;
    for kind in Statistic::ALL {
        state.register_udaf(Arc::new(AggregateUDF::new_from_impl(PgStatistic::new(kind))))?;
    }
    Ok(())
}

/// Postgres's error for an infinite result of finite inputs.
fn overflow() -> DataFusionError {
    Error::postgres("22003", "value out of range: overflow").into_datafusion()
}

/// The moments of the values seen: Postgres's transition state of
/// `float8_accum` (`n`, `sx`, `sxx`) and of `float8_regr_accum` (all six).
///
/// Invariants: `n` is the number of rows accumulated (a whole number);
/// `sxx`, `syy` are >= 0 or NaN; all are 0 while `n` is 0.
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    n: f64,
    sx: f64,
    sxx: f64,
    sy: f64,
    syy: f64,
    sxy: f64,
}

impl Moments {
    /// One value `x` more, as `float8_accum`.
    fn add(&mut self, x: f64) -> Result<()> {
        let (before, sx_before) = (self.n, self.sx);
        self.n += 1.0;
        self.sx += x;
        if before > 0.0 {
            let tmp = x * self.n - self.sx;
            self.sxx += tmp * tmp / (self.n * before);
            if self.sx.is_infinite() || self.sxx.is_infinite() {
                if !sx_before.is_infinite() && !x.is_infinite() {
                    return Err(overflow());
                }
                self.sxx = f64::NAN;
            }
        } else if !x.is_finite() {
            // A first value of Inf or NaN: no variance of it is a number.
            self.sxx = f64::NAN;
        }
        Ok(())
    }

    /// One pair `y`, `x` more, as `float8_regr_accum`.
    fn add_pair(&mut self, y: f64, x: f64) -> Result<()> {
        let (before, sx_before, sy_before) = (self.n, self.sx, self.sy);
        self.n += 1.0;
        self.sx += x;
        self.sy += y;
        if before > 0.0 {
            let tmp_x = x * self.n - self.sx;
            let tmp_y = y * self.n - self.sy;
            let scale = 1.0 / (self.n * before);
            self.sxx += tmp_x * tmp_x * scale;
            self.syy += tmp_y * tmp_y * scale;
            self.sxy += tmp_x * tmp_y * scale;
            let x_inf = self.sx.is_infinite() || self.sxx.is_infinite();
            let y_inf = self.sy.is_infinite() || self.syy.is_infinite();
            if x_inf || y_inf || self.sxy.is_infinite() {
                let x_finite = !sx_before.is_infinite() && !x.is_infinite();
                let y_finite = !sy_before.is_infinite() && !y.is_infinite();
                if (x_inf && x_finite) || (y_inf && y_finite) || (self.sxy.is_infinite() && x_finite && y_finite) {
                    return Err(overflow());
                }
                for s in [&mut self.sxx, &mut self.syy, &mut self.sxy] {
                    if s.is_infinite() {
                        *s = f64::NAN;
                    }
                }
            }
        } else {
            if !x.is_finite() {
                self.sxx = f64::NAN;
                self.sxy = f64::NAN;
            }
            if !y.is_finite() {
                self.syy = f64::NAN;
                self.sxy = f64::NAN;
            }
        }
        Ok(())
    }

    /// `other`'s rows too, as `float8_combine` (`pair`: as
    /// `float8_regr_combine`).
    fn combine(&mut self, other: &Moments, pair: bool) -> Result<()> {
        if other.n == 0.0 {
            return Ok(());
        }
        if self.n == 0.0 {
            *self = *other;
            return Ok(());
        }
        let (n1, n2) = (self.n, other.n);
        let n = n1 + n2;
        // float8_pl: an infinite sum of finite terms overflows.
        let plus = |a: f64, b: f64| {
            let sum = a + b;
            if sum.is_infinite() && !a.is_infinite() && !b.is_infinite() {
                Err(overflow())
            } else {
                Ok(sum)
            }
        };
        let spread = |s1: f64, s2: f64, d1: f64, d2: f64| {
            let s = s1 + s2 + n1 * n2 * d1 * d2 / n;
            if s.is_infinite() && !s1.is_infinite() && !s2.is_infinite() {
                Err(overflow())
            } else {
                Ok(s)
            }
        };
        let dx = self.sx / n1 - other.sx / n2;
        let sx = plus(self.sx, other.sx)?;
        let sxx = spread(self.sxx, other.sxx, dx, dx)?;
        let mut combined = Moments {
            n,
            sx,
            sxx,
            ..Moments::default()
        };
        if pair {
            let dy = self.sy / n1 - other.sy / n2;
            combined.sy = plus(self.sy, other.sy)?;
            combined.syy = spread(self.syy, other.syy, dy, dy)?;
            combined.sxy = spread(self.sxy, other.sxy, dx, dy)?;
        }
        *self = combined;
        Ok(())
    }

    /// The moments as the columns of a partial aggregate's state, in
    /// [`state_fields`] order.
    fn columns(moments: &[Moments], pair: bool) -> Vec<ArrayRef> {
        let column = |f: fn(&Moments) -> f64| -> ArrayRef { Arc::new(moments.iter().map(f).collect::<Float64Array>()) };
        let mut columns = vec![column(|m| m.n), column(|m| m.sx), column(|m| m.sxx)];
        if pair {
            columns.extend([column(|m| m.sy), column(|m| m.syy), column(|m| m.sxy)]);
        }
        columns
    }

    /// Row `row` of a partial aggregate's state columns.
    fn read(states: &[&Float64Array], row: usize) -> Moments {
        let at = |i: usize| states.get(i).map_or(0.0, |s| s.value(row));
        Moments {
            n: at(0),
            sx: at(1),
            sxx: at(2),
            sy: at(3),
            syy: at(4),
            sxy: at(5),
        }
    }
}

/// The names of a statistic's state columns, in [`Moments::columns`]
/// order.
fn state_fields(name: &str, pair: bool) -> Vec<FieldRef> {
    let names: &[&str] = if pair {
        &["n", "sx", "sxx", "sy", "syy", "sxy"]
    } else {
        &["n", "sx", "sxx"]
    };
    names
        .iter()
        .map(|part| Arc::new(Field::new(format_state_name(name, part), DataType::Float64, false)))
        .collect()
}

/// See [`statistic`].
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgStatistic {
    kind: Statistic,
    signature: Signature,
}

impl PgStatistic {
    fn new(kind: Statistic) -> PgStatistic {
        let arity = if kind.pair() { 2 } else { 1 };
        PgStatistic {
            kind,
            signature: Signature::exact(vec![DataType::Float64; arity], Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for PgStatistic {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            Statistic::RegrCount => DataType::Int64,
            _ => DataType::Float64,
        })
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(OneGroup {
            groups: Groups::new(self.kind),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(state_fields(args.name, self.kind.pair()))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Groups::new(self.kind)))
    }

    fn default_value(&self, _data_type: &DataType) -> Result<ScalarValue> {
        // Of no rows: regr_count's 0, every other statistic's NULL.
        Ok(match self.kind {
            Statistic::RegrCount => ScalarValue::Int64(Some(0)),
            _ => ScalarValue::Float64(None),
        })
    }
}

/// The moments of each group.
#[derive(Debug)]
struct Groups {
    kind: Statistic,
    moments: Vec<Moments>,
}

impl Groups {
    fn new(kind: Statistic) -> Groups {
        Groups {
            kind,
            moments: Vec::new(),
        }
    }

    /// The statistic of each of `moments`, as an array of the result type.
    fn results(&self, moments: &[Moments]) -> ArrayRef {
        let values = moments.iter().map(|m| self.kind.of(m));
        match self.kind {
            Statistic::RegrCount => Arc::new(values.map(|v| v.map(|n| n as i64)).collect::<Int64Array>()),
            _ => Arc::new(values.collect::<Float64Array>()),
        }
    }
}

impl GroupsAccumulator for Groups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.moments.resize(total_num_groups, Moments::default());
        let counted = |row: usize| opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
        let first = values[0].as_primitive::<Float64Type>();
        if self.kind.pair() {
            let (y, x) = (first, values[1].as_primitive::<Float64Type>());
            for (row, &group) in group_indices.iter().enumerate() {
                if counted(row) && y.is_valid(row) && x.is_valid(row) {
                    self.moments[group].add_pair(y.value(row), x.value(row))?;
                }
            }
        } else {
            for (row, &group) in group_indices.iter().enumerate() {
                if counted(row) && first.is_valid(row) {
                    self.moments[group].add(first.value(row))?;
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let moments = emit_to.take_needed(&mut self.moments);
        Ok(self.results(&moments))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let moments = emit_to.take_needed(&mut self.moments);
        Ok(Moments::columns(&moments, self.kind.pair()))
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.moments.resize(total_num_groups, Moments::default());
        let states: Vec<&Float64Array> = values.iter().map(|v| v.as_primitive::<Float64Type>()).collect();
        for (row, &group) in group_indices.iter().enumerate() {
            self.moments[group].combine(&Moments::read(&states, row), self.kind.pair())?;
        }
        Ok(())
    }

    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        // Each row its own group.
        let mut each = Groups::new(self.kind);
        let rows = values.first().map_or(0, |v| v.len());
        each.update_batch(values, &(0..rows).collect::<Vec<_>>(), opt_filter, rows)?;
        Ok(Moments::columns(&each.moments, self.kind.pair()))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.moments.capacity() * size_of::<Moments>()
    }
}

/// The accumulator of an aggregate without groups: one group of
/// [`Groups`].
#[derive(Debug)]
struct OneGroup {
    groups: Groups,
}

impl Accumulator for OneGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = values.first().map_or(0, |v| v.len());
        self.groups.update_batch(values, &vec![0; rows], None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states.first().map_or(0, |v| v.len());
        self.groups.merge_batch(states, &vec![0; rows], 1)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let moments = [self.groups.moments.first().copied().unwrap_or_default()];
        Moments::columns(&moments, self.groups.kind.pair())
            .iter()
            .map(|column| ScalarValue::try_from_array(column, 0))
            .collect()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let moments = [self.groups.moments.first().copied().unwrap_or_default()];
        ScalarValue::try_from_array(&self.groups.results(&moments), 0)
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.groups.size() - size_of::<Groups>()
    }
}
