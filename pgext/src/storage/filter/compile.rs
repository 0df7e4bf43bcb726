//! DataFusion's filter expressions compiled into the scan's predicates:
//! only what evaluates exactly as DataFusion's FilterExec would (see the
//! parent module), each column's input collected in order.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

use datafusion::logical_expr::{BinaryExpr, Expr, Like, Operator};

use super::{FilterColumn, Operand, Pattern, Predicate, Value};
use crate::types::PgType;

/// Turns DataFusion expressions into [`Predicate`]s, collecting the inputs.
pub(super) struct Compiler<'c> {
    columns: &'c [FilterColumn<'c>],
    /// Column indexes, in input order.
    pub(super) inputs: Vec<usize>,
}

/// What a comparison side yields, for checking that both sides agree.
#[derive(Clone, Debug, PartialEq)]
enum Domain {
    /// Integers of one Arrow type (a decimal's precision aside: the
    /// scaled integers compare the same).
    Int(DataType),
    Bytes,
}

impl<'c> Compiler<'c> {
    pub(super) fn new(columns: &'c [FilterColumn<'c>]) -> Compiler<'c> {
        Compiler {
            columns,
            inputs: Vec::new(),
        }
    }

    pub(super) fn predicate(&mut self, expr: &Expr) -> Option<Predicate> {
        Some(match expr {
            Expr::Literal(ScalarValue::Boolean(v), _) => Predicate::Const(*v),
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
                Operator::And => Predicate::And(flatten(self.predicate(left)?, self.predicate(right)?, true)),
                Operator::Or => Predicate::Or(flatten(self.predicate(left)?, self.predicate(right)?, false)),
                Operator::Eq | Operator::NotEq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                    let (left, l) = self.operand(left)?;
                    let (right, r) = self.operand(right)?;
                    if domain_of(&l)? != domain_of(&r)?
                        || matches!((&left, &right), (Operand::Const(_), Operand::Const(_)))
                    {
                        return None;
                    }
                    fixed_compare(left, *op, right, &self.inputs, self.columns)
                }
                _ => return None,
            },
            Expr::Not(inner) => Predicate::Not(Box::new(self.predicate(inner)?)),
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => Predicate::IsNull {
                input: self.column(inner)?.0,
                negated: matches!(expr, Expr::IsNotNull(_)),
            },
            Expr::Column(_) => match self.column(expr)? {
                (input, PgType::Bool) => Predicate::Input(input),
                _ => return None,
            },
            Expr::InList(list) => {
                let (input, ty) = self.operand(&list.expr)?;
                let domain = domain_of(&ty)?;
                if matches!(input, Operand::Const(_)) {
                    return None;
                }
                let mut values = Vec::with_capacity(list.list.len());
                let mut has_null = false;
                for item in &list.list {
                    let Expr::Literal(value, _) = item else { return None };
                    if value.is_null() {
                        has_null = true;
                        continue;
                    }
                    if domain_of(&value.data_type())? != domain {
                        return None;
                    }
                    values.push(constant(value)?);
                }
                Predicate::InList {
                    input,
                    list: values,
                    has_null,
                    negated: list.negated,
                }
            }
            Expr::Like(Like {
                negated,
                expr: input,
                pattern,
                escape_char,
                case_insensitive: false,
            }) => {
                let (input, ty) = self.operand(input)?;
                let (Operand::Input { input, .. }, Some(Domain::Bytes)) = (input, domain_of(&ty)) else {
                    return None;
                };
                let Expr::Literal(pattern, _) = pattern.as_ref() else {
                    return None;
                };
                let pattern = match pattern {
                    ScalarValue::Utf8(Some(p)) | ScalarValue::LargeUtf8(Some(p)) | ScalarValue::Utf8View(Some(p)) => p,
                    _ => return None,
                };
                Predicate::Like {
                    input,
                    pattern: Pattern::new(pattern, *escape_char)?,
                    negated: *negated,
                }
            }
            _ => return None,
        })
    }

    /// A column or a constant, through lossless casts, and its type.
    fn operand(&mut self, expr: &Expr) -> Option<(Operand, DataType)> {
        match expr {
            Expr::Literal(value, _) if !value.is_null() => Some((Operand::Const(constant(value)?), value.data_type())),
            Expr::Column(_) => {
                let (input, ty) = self.column(expr)?;
                let ty = ty.arrow();
                domain_of(&ty)?;
                Some((Operand::Input { input, factor: 1 }, ty))
            }
            Expr::Cast(cast) => {
                let (operand, from) = self.operand(&cast.expr)?;
                let Operand::Input { input, factor } = operand else {
                    return None;
                };
                let to = cast.field.data_type();
                let by = lossless_factor(&from, to)?;
                Some((
                    Operand::Input {
                        input,
                        factor: factor.checked_mul(by)?,
                    },
                    to.clone(),
                ))
            }
            _ => None,
        }
    }

    /// The input reading column `expr` (a plain column reference).
    fn column(&mut self, expr: &Expr) -> Option<(usize, PgType)> {
        let Expr::Column(column) = expr else { return None };
        let index = self.columns.iter().position(|(name, _)| *name == column.name)?;
        let ty = self.columns[index].1;
        let input = match self.inputs.iter().position(|&c| c == index) {
            Some(i) => i,
            None => {
                self.inputs.push(index);
                self.inputs.len() - 1
            }
        };
        Some((input, ty))
    }
}

/// The operator `op` is with its operands swapped (`a < b` is `b > a`).
pub(super) fn flipped(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

/// `left op right`, as a [`Predicate::CompareFixed`] when it is an input
/// passed by value against a constant (on either side).
fn fixed_compare(left: Operand, op: Operator, right: Operand, inputs: &[usize], columns: &[FilterColumn]) -> Predicate {
    let by_value = |input: usize| {
        !matches!(
            columns[inputs[input]].1,
            PgType::Numeric { .. } | PgType::Text | PgType::BpChar | PgType::Name
        )
    };
    match (left, right) {
        (Operand::Input { input, factor }, Operand::Const(Value::Int(constant))) if by_value(input) => {
            Predicate::CompareFixed {
                input,
                factor,
                op,
                constant,
            }
        }
        (Operand::Const(Value::Int(constant)), Operand::Input { input, factor }) if by_value(input) => {
            Predicate::CompareFixed {
                input,
                factor,
                op: flipped(op),
                constant,
            }
        }
        (left, right) => Predicate::Compare { left, op, right },
    }
}

/// The operands of `left AND right` (`and`) or `left OR right`, with
/// nested ANDs (ORs) merged in, so that ordering them sees them all.
fn flatten(left: Predicate, right: Predicate, and: bool) -> Vec<Predicate> {
    let mut all = Vec::new();
    for p in [left, right] {
        match p {
            Predicate::And(ps) if and => all.extend(ps),
            Predicate::Or(ps) if !and => all.extend(ps),
            p => all.push(p),
        }
    }
    all
}

/// The conjuncts `ps` with the operands of nested ANDs merged in.
pub(super) fn flatten_all(ps: Vec<Predicate>) -> Vec<Predicate> {
    let mut all = Vec::with_capacity(ps.len());
    for p in ps {
        match p {
            Predicate::And(inner) => all.extend(flatten_all(inner)),
            p => all.push(p),
        }
    }
    all
}

/// How values of Arrow type `ty` compare here, if they do.
fn domain_of(ty: &DataType) -> Option<Domain> {
    Some(match ty {
        DataType::Boolean
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt32
        | DataType::Date32
        | DataType::Time64(_)
        | DataType::Timestamp(_, _) => Domain::Int(ty.clone()),
        // Precision does not change how scaled integers compare.
        DataType::Decimal128(_, scale) => Domain::Int(DataType::Decimal128(38, *scale)),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Domain::Bytes,
        _ => return None,
    })
}

/// A constant as a [`Value`].
fn constant(value: &ScalarValue) -> Option<Value> {
    let int = |v: i128| Some(Value::Int(v));
    match value {
        ScalarValue::Boolean(Some(v)) => int(i128::from(*v)),
        ScalarValue::Int16(Some(v)) => int(i128::from(*v)),
        ScalarValue::Int32(Some(v)) | ScalarValue::Date32(Some(v)) => int(i128::from(*v)),
        ScalarValue::Int64(Some(v))
        | ScalarValue::Time64Microsecond(Some(v))
        | ScalarValue::Time64Nanosecond(Some(v))
        | ScalarValue::TimestampSecond(Some(v), _)
        | ScalarValue::TimestampMillisecond(Some(v), _)
        | ScalarValue::TimestampMicrosecond(Some(v), _)
        | ScalarValue::TimestampNanosecond(Some(v), _) => int(i128::from(*v)),
        ScalarValue::UInt32(Some(v)) => int(i128::from(*v)),
        ScalarValue::Decimal128(Some(v), _, _) => int(*v),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            Some(Value::Bytes(s.as_bytes().to_vec()))
        }
        _ => None,
    }
}

/// What a value of type `from` is multiplied by when cast to `to`, if the
/// cast keeps every value exactly (and so never fails).
fn lossless_factor(from: &DataType, to: &DataType) -> Option<i128> {
    use datafusion::arrow::datatypes::TimeUnit;
    if (domain_of(from)?, domain_of(to)?) == (Domain::Bytes, Domain::Bytes) {
        return Some(1);
    }
    // Decimal digits an integer type's values may have.
    let digits = |ty: &DataType| match ty {
        DataType::Int16 => Some(5),
        DataType::Int32 => Some(10),
        DataType::Int64 => Some(19),
        _ => None,
    };
    let per_second = |unit: &TimeUnit| match unit {
        TimeUnit::Second => 1i128,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let pow10 = |n: i8| 10i128.checked_pow(u32::try_from(n).ok()?);
    match (from, to) {
        _ if from == to => Some(1),
        (DataType::Int16, DataType::Int32 | DataType::Int64) | (DataType::Int32, DataType::Int64) => Some(1),
        (DataType::Int16 | DataType::Int32 | DataType::Int64, DataType::Decimal128(precision, scale)) => {
            (i16::from(*precision) - i16::from(*scale) >= digits(from)?).then_some(())?;
            pow10(*scale)
        }
        (DataType::Decimal128(p, s), DataType::Decimal128(to_p, to_s))
            if to_s >= s && i16::from(*to_p) - i16::from(*to_s) >= i16::from(*p) - i16::from(*s) =>
        {
            pow10(to_s - s)
        }
        (DataType::Date32, DataType::Timestamp(unit, None)) => Some(86_400 * per_second(unit)),
        (DataType::Timestamp(from_unit, from_zone), DataType::Timestamp(to_unit, to_zone))
            if from_zone == to_zone && per_second(to_unit) >= per_second(from_unit) =>
        {
            Some(per_second(to_unit) / per_second(from_unit))
        }
        _ => None,
    }
}
