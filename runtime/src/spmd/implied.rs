//! [`ImpliedEqualities`]: the column equalities a filter implies, written
//! out, as Postgres's equivalence classes derive them.
//!
//! TPC-H Q5 says `c_nationkey = s_nationkey AND s_nationkey = n_nationkey`
//! and never `c_nationkey = n_nationkey`. Postgres puts the three columns
//! in one equivalence class and may join customer to nation directly;
//! DataFusion joins only on the equalities written, so in an order that
//! meets nation and customer before supplier it finds no condition
//! between them and joins supplier first, then customer to supplier on
//! the nation alone: 6.8 million rows. With the implied equality written
//! out, every order Postgres's planner can choose has its join
//! conditions.
//!
//! Exact by construction: a filter keeps a row when its predicate is
//! true, and where `a = b` and `b = c` are both true so is `a = c`, for the
//! types whose equality is transitive. The rule adds only conjuncts of
//! filters (never join conditions, where an outer join's ON clause does
//! not filter), only between plain columns of one type from a list of
//! such types, and only those not already written. It is an analyzer
//! rule: it runs once, before DataFusion's optimizer pushes the
//! conjuncts into the joins.

use std::collections::HashMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result};
use datafusion::logical_expr::expr::BinaryExpr;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, Filter, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

/// The rule; add it to the session's analyzer rules (it then runs after
/// DataFusion's own, once types are coerced).
///
/// ```
/// use std::sync::Arc;
/// use datafusion::execution::SessionStateBuilder;
/// use weft_runtime::ImpliedEqualities;
///
/// let state = SessionStateBuilder::new()
///     .with_default_features()
///     .with_analyzer_rule(Arc::new(ImpliedEqualities))
///     .build();
/// # let _ = state;
/// ```
#[derive(Debug, Default)]
pub struct ImpliedEqualities;

impl AnalyzerRule for ImpliedEqualities {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::Filter(filter) => with_implied(filter),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "weft_implied_equalities"
    }
}

/// `filter` with the equalities its conjuncts imply and do not state.
fn with_implied(filter: Filter) -> Result<Transformed<LogicalPlan>> {
    let schema = filter.input.schema();
    let mut classes = Classes::default();
    for conjunct in split_conjunction(&filter.predicate) {
        let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) = conjunct
        else {
            continue;
        };
        let (Expr::Column(a), Expr::Column(b)) = (left.as_ref(), right.as_ref()) else {
            continue;
        };
        let (Ok((_, ta)), Ok((_, tb))) = (
            schema.qualified_field_from_column(a),
            schema.qualified_field_from_column(b),
        ) else {
            continue;
        };
        if ta.data_type() == tb.data_type() && transitive(ta.data_type()) && a != b {
            classes.equate(a, b);
        }
    }
    let implied = classes.unstated();
    if implied.is_empty() {
        return Ok(Transformed::no(LogicalPlan::Filter(filter)));
    }
    let Filter { predicate, input, .. } = filter;
    let predicate = implied.into_iter().fold(predicate, Expr::and);
    Filter::try_new(predicate, input).map(|f| Transformed::yes(LogicalPlan::Filter(f)))
}

/// Types whose `=` is an equivalence relation on the values it calls
/// equal (integers, dates and times, decimals of one scale, strings and
/// bytes compared byte for byte).
fn transitive(ty: &DataType) -> bool {
    use DataType::*;
    matches!(
        ty,
        Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Date32
            | Date64
            | Time32(_)
            | Time64(_)
            | Timestamp(_, _)
            | Decimal128(_, _)
            | Decimal256(_, _)
            | Utf8
            | LargeUtf8
            | Utf8View
            | Binary
            | LargeBinary
            | BinaryView
    )
}

/// Columns equated by a filter's conjuncts, as a union-find, and the
/// pairs the conjuncts state.
#[derive(Default)]
struct Classes {
    columns: Vec<Column>,
    index: HashMap<Column, usize>,
    /// Each column's parent in its class's tree (a root is its own).
    parent: Vec<usize>,
    /// The pairs stated, each (smaller index, larger).
    stated: Vec<(usize, usize)>,
}

impl Classes {
    fn id(&mut self, column: &Column) -> usize {
        if let Some(&i) = self.index.get(column) {
            return i;
        }
        let i = self.columns.len();
        self.columns.push(column.clone());
        self.index.insert(column.clone(), i);
        self.parent.push(i);
        i
    }

    fn root(&self, mut i: usize) -> usize {
        while self.parent[i] != i {
            i = self.parent[i];
        }
        i
    }

    fn equate(&mut self, a: &Column, b: &Column) {
        let (a, b) = (self.id(a), self.id(b));
        self.stated.push((a.min(b), a.max(b)));
        let (ra, rb) = (self.root(a), self.root(b));
        self.parent[ra.max(rb)] = ra.min(rb);
    }

    /// `a = b` for every pair of one class the conjuncts do not state, in
    /// the order the columns first appear.
    fn unstated(&self) -> Vec<Expr> {
        let mut implied = Vec::new();
        for b in 0..self.columns.len() {
            for a in 0..b {
                if self.root(a) == self.root(b) && !self.stated.contains(&(a, b)) {
                    implied.push(Expr::Column(self.columns[a].clone()).eq(Expr::Column(self.columns[b].clone())));
                }
            }
        }
        implied
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int32Array;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    use super::*;

    fn context(rule: bool) -> SessionContext {
        let builder = SessionStateBuilder::new().with_default_features();
        let builder = match rule {
            true => builder.with_analyzer_rule(Arc::new(ImpliedEqualities)),
            false => builder,
        };
        let ctx = SessionContext::new_with_state(builder.build());
        for (name, columns) in [("a", ["a1", "a2"]), ("b", ["b1", "b2"]), ("c", ["c1", "c2"])] {
            let schema = Arc::new(Schema::new(
                columns
                    .iter()
                    .map(|c| Field::new(*c, DataType::Int32, true))
                    .collect::<Vec<_>>(),
            ));
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int32Array::from(vec![Some(1), Some(2), None, Some(3)])),
                    Arc::new(Int32Array::from(vec![Some(1), Some(2), Some(2), None])),
                ],
            )
            .unwrap();
            ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()))
                .unwrap();
        }
        ctx
    }

    async fn rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines.sort();
        lines
    }

    /// The equality nobody wrote joins `a` to `c` directly, and the answer
    /// is the one without the rule.
    #[tokio::test]
    async fn writes_out_the_transitive_equality() {
        let sql = "SELECT a1, b1, c1 FROM a, c, b WHERE a1 = b1 AND b1 = c1 AND a2 = 1 OR a1 = 3";
        let with = context(true);
        let plan = with.sql(sql).await.unwrap().into_optimized_plan().unwrap();
        // An OR at the top is one conjunct: nothing implied.
        assert!(!format!("{plan}").contains("a.a1 = c.c1"), "{plan}");
        assert_eq!(rows(&with, sql).await, rows(&context(false), sql).await);

        let sql = "SELECT a1, b1, c1 FROM a, c, b WHERE a1 = b1 AND b1 = c1";
        let plan = with.sql(sql).await.unwrap().into_optimized_plan().unwrap();
        let text = format!("{plan}");
        assert!(text.contains("a.a1 = c.c1"), "a joins c on the implied key:\n{text}");
        assert!(!text.contains("Cross"), "{text}");
        assert_eq!(rows(&with, sql).await, rows(&context(false), sql).await);
    }

    /// Stated pairs are not repeated; columns of different types are not
    /// equated.
    #[test]
    fn adds_only_what_is_unstated() {
        let mut classes = Classes::default();
        let (a, b, c) = (Column::from_name("a"), Column::from_name("b"), Column::from_name("c"));
        classes.equate(&a, &b);
        classes.equate(&b, &c);
        classes.equate(&c, &a);
        assert!(classes.unstated().is_empty());
        let mut classes = Classes::default();
        classes.equate(&a, &b);
        classes.equate(&c, &b);
        assert_eq!(classes.unstated(), vec![Expr::Column(a).eq(Expr::Column(c))]);
        assert!(!transitive(&DataType::Float64));
    }
}
