//! How many rows a table keeps under the WHERE conditions that read it
//! alone, as Postgres's planner estimates it from its statistics.
//!
//! DataFusion knows a filtered scan's input size (pg_class's row count)
//! but not its selectivity: it assumes 20%. Its join planning (which side
//! to build on, and whether weft broadcasts the build side or partitions
//! both) turns on these sizes, and 20% is far off for the selective
//! filters analytic queries are made of (TPC-H Q4 keeps 57 thousand of 1.5
//! million orders; 20% is 300 thousand, which partitions a join that a
//! broadcast of 57 thousand rows answers with no shuffle). Postgres has
//! the histograms, most common values and null fractions to do better, so
//! weft asks it: each filtered table is planned alone as
//! `SELECT FROM t WHERE <its conditions>`, and the plan's row estimate is
//! the scan's. weft.query's scans, which have DataFusion's conditions and
//! no Postgres Query, get the same from those conditions rebuilt as
//! Postgres expressions ([`scan_rows`]).

use std::collections::HashMap;

use datafusion::arrow::datatypes::{Decimal128Type, DecimalType};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::{Between, BinaryExpr, Cast, InList, Like, TryCast};
use datafusion::logical_expr::{Expr, Operator};
use pgrx::pg_sys::{self, NodeTag};
use pgrx::{AnyNumeric, IntoDatum};

use crate::nodes::list;
use crate::plan::column::HeapColumn;

/// Postgres's estimate of the rows each table of `query`'s FROM list keeps
/// under the conjuncts of `quals` (its folded WHERE clause) that read that
/// table alone, by range table index; tables no conjunct reads alone are
/// not listed. `depth` is how many query levels enclose `query` (their
/// columns, outer references, cannot be planned alone).
///
/// # Safety
/// `query` is a valid analyzed Query, `quals` NULL or its folded WHERE
/// clause, `params` NULL or valid; on the backend thread.
pub unsafe fn filtered_rows(
    query: *mut pg_sys::Query,
    quals: *mut pg_sys::Node,
    depth: usize,
    params: pg_sys::ParamListInfo,
) -> HashMap<i32, f64> {
    let mut estimates = HashMap::new();
    if quals.is_null() {
        return estimates;
    }
    // SAFETY: per the caller.
    unsafe {
        let mut by_table: HashMap<i32, Vec<*mut pg_sys::Node>> = HashMap::new();
        let conjuncts = pg_sys::make_ands_implicit(quals.cast());
        for conjunct in list::<pg_sys::Node>(conjuncts) {
            if let Some(rtindex) = alone(conjunct, depth) {
                by_table.entry(rtindex).or_default().push(conjunct);
            }
        }
        let from = list::<pg_sys::Node>((*(*query).jointree).fromlist);
        for (rtindex, conjuncts) in by_table {
            // Only tables listed in FROM directly: a condition on a table
            // inside an outer join does not filter its scan.
            let listed = from.iter().any(|&item| {
                (*item).type_ == NodeTag::T_RangeTblRef && (*item.cast::<pg_sys::RangeTblRef>()).rtindex == rtindex
            });
            let rte = pg_sys::list_nth((*query).rtable, rtindex - 1).cast::<pg_sys::RangeTblEntry>();
            if listed && (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION {
                let entries = pg_sys::list_length((*query).rtable) as usize;
                estimates.insert(rtindex, planned_rows(rte, rtindex, entries, &conjuncts, params));
            }
        }
    }
    estimates
}

/// The one table `conjunct` reads, if it reads exactly one of this level
/// and nothing of enclosing levels, and holds no subquery.
///
/// # Safety
/// `conjunct` is a valid expression; on the backend thread.
unsafe fn alone(conjunct: *mut pg_sys::Node, depth: usize) -> Option<i32> {
    // SAFETY: per the caller; these walk the expression.
    unsafe {
        if has_sublink(conjunct, std::ptr::null_mut()) {
            return None;
        }
        if (1..=depth).any(|up| pg_sys::contain_vars_of_level(conjunct, up as i32)) {
            return None;
        }
        let varnos = pg_sys::pull_varnos(std::ptr::null_mut(), conjunct);
        let mut member = 0;
        pg_sys::bms_get_singleton_member(varnos, &mut member).then_some(member)
    }
}

/// Whether `node` holds a subquery (an expression tree walker).
///
/// # Safety
/// `node` is NULL or a valid expression; on the backend thread.
unsafe extern "C-unwind" fn has_sublink(node: *mut pg_sys::Node, context: *mut std::ffi::c_void) -> bool {
    // SAFETY: per the caller; the walker visits each child node once.
    unsafe {
        !node.is_null()
            && ((*node).type_ == NodeTag::T_SubLink || pg_sys::expression_tree_walker(node, Some(has_sublink), context))
    }
}

/// The planner's row estimate for range table entry `rte` (index
/// `rtindex`) filtered by `conjuncts`: the plan of a Query whose range
/// table holds a copy of the entry at every index (so the conjuncts'
/// columns need no renumbering) and whose FROM list names `rtindex` alone.
///
/// # Safety
/// `rte` is a relation's entry, `conjuncts` valid expressions reading only
/// it, `params` NULL or valid; on the backend thread.
unsafe fn planned_rows(
    rte: *mut pg_sys::RangeTblEntry,
    rtindex: i32,
    entries: usize,
    conjuncts: &[*mut pg_sys::Node],
    params: pg_sys::ParamListInfo,
) -> f64 {
    // SAFETY: per the caller. The Query is built from copies, so the
    // planner's rewriting of it leaves the original alone.
    unsafe {
        let mut quals: *mut pg_sys::List = std::ptr::null_mut();
        for &c in conjuncts {
            quals = pg_sys::lappend(quals, pg_sys::copyObjectImpl(c.cast()));
        }
        let quals = pg_sys::make_ands_explicit(quals).cast::<pg_sys::Node>();
        let mut rtable: *mut pg_sys::List = std::ptr::null_mut();
        for _ in 0..entries {
            rtable = pg_sys::lappend(rtable, pg_sys::copyObjectImpl(rte.cast()));
        }
        let reference = node::<pg_sys::RangeTblRef>(NodeTag::T_RangeTblRef);
        (*reference).rtindex = rtindex;
        let alone = node::<pg_sys::Query>(NodeTag::T_Query);
        (*alone).commandType = pg_sys::CmdType::CMD_SELECT;
        (*alone).querySource = pg_sys::QuerySource::QSRC_ORIGINAL;
        (*alone).canSetTag = true;
        (*alone).rtable = rtable;
        (*alone).jointree = pg_sys::makeFromExpr(pg_sys::lappend(std::ptr::null_mut(), reference.cast()), quals);
        // The stock planner itself, past every planner hook: this query is
        // weft's own (weft's hook would note it as refused, and EXPLAIN
        // would then show that note under a query weft did take).
        let planned = pg_sys::standard_planner(alone, std::ptr::null(), 0, params);
        (*(*planned).planTree).plan_rows
    }
}

/// A new zeroed node of type `T` tagged `tag` (makeNode).
///
/// # Safety
/// `tag` is `T`'s tag; on the backend thread (palloc).
unsafe fn node<T>(tag: NodeTag) -> *mut T {
    // SAFETY: per the caller; palloc0 raises on failure.
    unsafe {
        let node = pg_sys::palloc0(std::mem::size_of::<T>()).cast::<pg_sys::Node>();
        (*node).type_ = tag;
        node.cast()
    }
}

/// Postgres's estimate of the rows table `relid` (whose columns are
/// `columns`) keeps under `filters`, DataFusion's conditions on it alone
/// (weft.query's scans, which have no Postgres Query to take them from);
/// None if no condition has a Postgres equivalent here.
///
/// Each condition is rebuilt as a Postgres expression over the table's
/// columns: comparisons (through a cast of the column, such as a date
/// compared with a timestamp), AND, OR, NOT, IS [NOT] NULL, BETWEEN, IN
/// lists and LIKE, with integer, float, numeric, text, date and timestamp
/// constants. Others are left out of the estimate, which can only make it
/// larger.
///
/// # Safety
/// `relid` is a table this transaction has opened; on the backend thread.
pub unsafe fn scan_rows(relid: pg_sys::Oid, columns: &[HeapColumn], filters: &[Expr]) -> Option<f64> {
    // SAFETY: per the caller; the nodes are built in the current memory
    // context and planned once.
    unsafe {
        let conjuncts: Vec<*mut pg_sys::Node> = filters.iter().filter_map(|f| pg_expr(f, columns)).collect();
        if conjuncts.is_empty() {
            return None;
        }
        let rel = pg_sys::table_open(relid, pg_sys::NoLock as i32);
        let item = pg_sys::addRangeTableEntryForRelation(
            pg_sys::make_parsestate(std::ptr::null_mut()),
            rel,
            pg_sys::AccessShareLock as i32,
            std::ptr::null_mut(),
            false,
            true,
        );
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        Some(planned_rows((*item).p_rte, 1, 1, &conjuncts, std::ptr::null_mut()))
    }
}

/// `expr` as a Postgres boolean expression over `columns` (range table
/// index 1), if every part of it has an equivalent.
///
/// # Safety
/// On the backend thread.
unsafe fn pg_expr(expr: &Expr, columns: &[HeapColumn]) -> Option<*mut pg_sys::Node> {
    // SAFETY: per the caller; node constructors.
    unsafe {
        let bool_expr = |kind, args: Vec<*mut pg_sys::Node>| {
            let mut list: *mut pg_sys::List = std::ptr::null_mut();
            for arg in args {
                list = pg_sys::lappend(list, arg.cast());
            }
            pg_sys::makeBoolExpr(kind, list, -1).cast::<pg_sys::Node>()
        };
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
                Operator::And | Operator::Or => {
                    let kind = if *op == Operator::And {
                        pg_sys::BoolExprType::AND_EXPR
                    } else {
                        pg_sys::BoolExprType::OR_EXPR
                    };
                    Some(bool_expr(kind, vec![pg_expr(left, columns)?, pg_expr(right, columns)?]))
                }
                Operator::Eq => comparison("=", left, right, columns),
                Operator::NotEq => comparison("<>", left, right, columns),
                Operator::Lt => comparison("<", left, right, columns),
                Operator::LtEq => comparison("<=", left, right, columns),
                Operator::Gt => comparison(">", left, right, columns),
                Operator::GtEq => comparison(">=", left, right, columns),
                _ => None,
            },
            Expr::Not(inner) => Some(bool_expr(
                pg_sys::BoolExprType::NOT_EXPR,
                vec![pg_expr(inner, columns)?],
            )),
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                let (arg, _, _) = operand(inner, columns, None)?;
                let test = pg_sys::palloc0(std::mem::size_of::<pg_sys::NullTest>()).cast::<pg_sys::NullTest>();
                (*test).xpr.type_ = NodeTag::T_NullTest;
                (*test).arg = arg.cast();
                (*test).nulltesttype = if matches!(expr, Expr::IsNull(_)) {
                    pg_sys::NullTestType::IS_NULL
                } else {
                    pg_sys::NullTestType::IS_NOT_NULL
                };
                (*test).location = -1;
                Some(test.cast())
            }
            Expr::Between(Between {
                expr: inner,
                negated,
                low,
                high,
            }) => {
                let range = bool_expr(
                    pg_sys::BoolExprType::AND_EXPR,
                    vec![
                        comparison(">=", inner, low, columns)?,
                        comparison("<=", inner, high, columns)?,
                    ],
                );
                Some(match negated {
                    false => range,
                    true => bool_expr(pg_sys::BoolExprType::NOT_EXPR, vec![range]),
                })
            }
            Expr::InList(InList {
                expr: inner,
                list,
                negated,
            }) => {
                let any = list
                    .iter()
                    .map(|item| comparison("=", inner, item, columns))
                    .collect::<Option<Vec<_>>>()?;
                let any = bool_expr(pg_sys::BoolExprType::OR_EXPR, any);
                Some(match negated {
                    false => any,
                    true => bool_expr(pg_sys::BoolExprType::NOT_EXPR, vec![any]),
                })
            }
            Expr::Like(Like {
                negated,
                expr: inner,
                pattern,
                escape_char: None,
                case_insensitive: false,
            }) => comparison(if *negated { "!~~" } else { "~~" }, inner, pattern, columns),
            _ => None,
        }
    }
}

/// `left <name> right` with Postgres's operator of that name for the two
/// operands' types, if both have equivalents and it exists.
///
/// # Safety
/// On the backend thread.
unsafe fn comparison(name: &str, left: &Expr, right: &Expr, columns: &[HeapColumn]) -> Option<*mut pg_sys::Node> {
    // A constant takes the type of the column it is compared with when it
    // can (a text constant against a char(n) column).
    let column_type = |e: &Expr| match e {
        Expr::Column(c) => columns.iter().find(|col| col.name == c.name).map(|col| col.typid),
        _ => None,
    };
    // SAFETY: per the caller; node constructors and catalog lookups.
    unsafe {
        let (l, ltype, lcoll) = operand(left, columns, column_type(right))?;
        let (r, rtype, rcoll) = operand(right, columns, column_type(left))?;
        let name = std::ffi::CString::new(name).ok()?;
        let names = pg_sys::lappend(
            std::ptr::null_mut(),
            pg_sys::makeString(pg_sys::pstrdup(name.as_ptr())).cast(),
        );
        let opno = pg_sys::OpernameGetOprid(names, ltype, rtype);
        if opno == pg_sys::InvalidOid {
            return None;
        }
        let collation = if lcoll != pg_sys::InvalidOid { lcoll } else { rcoll };
        let op = pg_sys::make_opclause(
            opno,
            pg_sys::BOOLOID,
            false,
            l.cast(),
            r.cast(),
            pg_sys::InvalidOid,
            collation,
        );
        pg_sys::set_opfuncid(op.cast());
        Some(op.cast())
    }
}

/// A column (through any cast: the estimate is of the column's values) or
/// a constant as a Postgres node, with its type and collation. `like` is
/// the type of the column a constant is compared with.
///
/// # Safety
/// On the backend thread.
unsafe fn operand(
    expr: &Expr,
    columns: &[HeapColumn],
    like: Option<pg_sys::Oid>,
) -> Option<(*mut pg_sys::Node, pg_sys::Oid, pg_sys::Oid)> {
    // SAFETY: per the caller; node constructors and catalog lookups.
    unsafe {
        match expr {
            Expr::Column(c) => {
                let column = columns.iter().find(|col| col.name == c.name)?;
                let collation = pg_sys::get_typcollation(column.typid);
                let var = pg_sys::makeVar(1, column.attnum, column.typid, column.typmod, collation, 0);
                Some((var.cast(), column.typid, collation))
            }
            Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. })
                if matches!(expr.as_ref(), Expr::Column(_)) =>
            {
                operand(expr, columns, like)
            }
            Expr::Literal(value, _) => {
                let (typid, datum) = datum(value, like)?;
                let mut len = 0i16;
                let mut byval = false;
                pg_sys::get_typlenbyval(typid, &mut len, &mut byval);
                let collation = pg_sys::get_typcollation(typid);
                let constant = pg_sys::makeConst(typid, -1, collation, i32::from(len), datum, false, byval);
                Some((constant.cast(), typid, collation))
            }
            _ => None,
        }
    }
}

/// `value` as a Postgres datum, and its type: the column's type `like`
/// where the value has that type's representation, else its own.
///
/// # Safety
/// On the backend thread (varlena values are palloc'd).
unsafe fn datum(value: &ScalarValue, like: Option<pg_sys::Oid>) -> Option<(pg_sys::Oid, pg_sys::Datum)> {
    /// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (Postgres's).
    const EPOCH_DAYS: i32 = 10_957;
    /// The same in microseconds.
    const EPOCH_MICROS: i64 = 946_684_800_000_000;
    let text_like = [pg_sys::TEXTOID, pg_sys::VARCHAROID, pg_sys::BPCHAROID];
    Some(match value {
        ScalarValue::Int16(Some(v)) => (pg_sys::INT2OID, (*v).into_datum()?),
        ScalarValue::Int32(Some(v)) => (pg_sys::INT4OID, (*v).into_datum()?),
        ScalarValue::Int64(Some(v)) => (pg_sys::INT8OID, (*v).into_datum()?),
        ScalarValue::Float64(Some(v)) => (pg_sys::FLOAT8OID, (*v).into_datum()?),
        ScalarValue::Boolean(Some(v)) => (pg_sys::BOOLOID, (*v).into_datum()?),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            let typid = like.filter(|t| text_like.contains(t)).unwrap_or(pg_sys::TEXTOID);
            (typid, s.as_str().into_datum()?)
        }
        ScalarValue::Decimal128(Some(v), precision, scale) => {
            let text = Decimal128Type::format_decimal(*v, *precision, *scale);
            (
                pg_sys::NUMERICOID,
                AnyNumeric::try_from(text.as_str()).ok()?.into_datum()?,
            )
        }
        ScalarValue::Date32(Some(days)) => (pg_sys::DATEOID, pg_sys::Datum::from(days.checked_sub(EPOCH_DAYS)?)),
        ScalarValue::TimestampNanosecond(Some(ns), None) if ns % 1000 == 0 => (
            pg_sys::TIMESTAMPOID,
            pg_sys::Datum::from((ns / 1000).checked_sub(EPOCH_MICROS)?),
        ),
        ScalarValue::TimestampMicrosecond(Some(us), None) => {
            (pg_sys::TIMESTAMPOID, pg_sys::Datum::from(us.checked_sub(EPOCH_MICROS)?))
        }
        _ => return None,
    })
}
