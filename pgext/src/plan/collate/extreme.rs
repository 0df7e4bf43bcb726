//! min and max of text under a collation: the least or greatest string
//! by Postgres's comparison, as `text_smaller` and `text_larger` keep it.

use std::mem::size_of;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use pgrx::pg_sys::Oid;

use crate::pgcall;
use crate::plan::bridge::STOP_CHECK_ROWS;

/// min's name in plans and EXPLAIN.
pub const MIN: &str = "pg:collated_min";
/// max's name in plans and EXPLAIN.
pub const MAX: &str = "pg:collated_max";

/// min (or max) of text under a collation.
///
/// ```ignore
/// // max(name) under en_US.UTF-8, as a plan writes it:
/// let greatest = AggregateUDF::new_from_impl(CollatedExtreme::new(collation, true)).call(vec![col("name")]);
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CollatedExtreme {
    collation: Oid,
    /// max rather than min.
    largest: bool,
    signature: Signature,
}

impl CollatedExtreme {
    /// min (`largest` false) or max under `collation`, a deterministic
    /// collation.
    pub fn new(collation: Oid, largest: bool) -> CollatedExtreme {
        CollatedExtreme {
            collation,
            largest,
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }

    /// The collation.
    pub fn collation(&self) -> Oid {
        self.collation
    }
}

impl AggregateUDFImpl for CollatedExtreme {
    fn name(&self) -> &str {
        if self.largest {
            MAX
        } else {
            MIN
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Extreme {
            collation: self.collation,
            largest: self.largest,
            best: None,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "value"),
            DataType::Utf8,
            true,
        ))])
    }
}

/// The best string so far of one group.
#[derive(Debug)]
struct Extreme {
    collation: Oid,
    largest: bool,
    /// The least (greatest) string seen; None before the first.
    best: Option<String>,
}

impl Accumulator for Extreme {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let strings = super::strings(values[0].as_ref())?;
        let wanted = if self.largest {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Less
        };
        let collation = self.collation;
        let best = pgcall::call("text compared under a collation", || {
            let mut best = self.best.as_deref();
            for (row, value) in strings.iter().flatten().enumerate() {
                if row % STOP_CHECK_ROWS == STOP_CHECK_ROWS - 1 && pgcall::should_stop() {
                    return Err(pgcall::stopped());
                }
                // SAFETY: DataFusion runs a participant's plan on its
                // backend thread, and this is inside pgcall::call.
                if best.is_none_or(|b| unsafe { super::compare(collation, value, b) } == wanted) {
                    best = Some(value);
                }
            }
            Ok(best.map(str::to_owned))
        })?;
        self.best = best;
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Utf8(self.best.clone()))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.best.as_ref().map_or(0, String::capacity)
    }
}
