//! weft.query's FROM lists put in the order of Postgres's plan of the
//! same SQL.
//!
//! DataFusion joins a comma-separated FROM list in the order it is
//! written (see [`crate::hook::translate::follow_stock_plan`], which does the
//! same for plain SQL from the Query). weft.query's text is Postgres's
//! dialect over Postgres's tables, so Postgres can usually plan it too,
//! with its statistics and its search of join orders: TPC-H Q7 written
//! `supplier, lineitem, orders, customer, nation n1, nation n2` joins
//! 912 thousand lineitem rows before the nation filter that keeps 8% of
//! them; Postgres's plan starts from the nations and their suppliers.
//!
//! So the leader plans the text with Postgres's standard planner (no
//! hooks: weft's own would take it over), inside a subtransaction, and
//! sorts each FROM list of DataFusion's parse tree by the order that plan
//! scans the tables. Text Postgres refuses (DataFusion's own functions,
//! say) keeps its written order; the refusal is rolled back and not
//! shown. Sorting a FROM list changes no result: its items are joined as
//! a product, which commutes. A list it could change is left as written:
//! one with a LATERAL item or a table function (items that may refer to
//! those before them), or under an unqualified `*` (whose columns come in
//! FROM order).

use std::collections::HashMap;
use std::ffi::CString;

use datafusion::common::TableReference;
use datafusion::sql::parser::Statement;
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{
    Ident, Select, SelectItem, SetExpr, TableFactor, TableWithJoins, VisitMut, VisitorMut,
};
use pgrx::pg_sys::{self, PgTryBuilder};
use pgrx::PgSqlErrorCode;

use crate::hook::translate::{list, plan_ranks, Ranks};

/// Sorts every FROM list of `statement` (the parse of `sql`) by Postgres's
/// plan of `sql`; `relids` maps each table reference the statement names
/// (as DataFusion resolved them) to its relation. Leaves the statement as
/// written when Postgres cannot plan `sql`.
///
/// Call it after the tables are resolved and their privileges checked:
/// Postgres's planner then reads no table the caller may not.
pub fn follow_postgres_plan(sql: &str, statement: &mut Statement, relids: &HashMap<TableReference, pg_sys::Oid>) {
    let Statement::Statement(statement) = statement else {
        return;
    };
    let Some(ranks) = postgres_ranks(sql) else {
        return;
    };
    let mut sorter = Sorter { ranks, relids };
    let _ = statement.visit(&mut sorter);
}

/// The tables of `sql` numbered in the order Postgres's plan of it scans
/// them, or None when Postgres refuses the text as a query.
fn postgres_ranks(sql: &str) -> Option<Ranks> {
    let text = CString::new(sql).ok()?;
    // SAFETY: on the backend thread, inside a transaction (weft.query is
    // running). Every Postgres error inside the subtransaction is caught
    // and the subtransaction rolled back, as PL/pgSQL's exception blocks
    // do; the caller's memory context and resource owner are restored
    // either way.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let planned = PgTryBuilder::new(|| Ok(plan_text(&text)))
            .catch_others(|caught| {
                pg_sys::CurrentMemoryContext = context;
                Err(Box::new(caught))
            })
            .execute();
        match &planned {
            Ok(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Err(_) => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        match planned {
            Ok(ranks) => ranks,
            // A refusal of the text (syntax, an unknown function, a type
            // Postgres would not coerce) only means no reordering; a
            // cancel, a shortage or an internal error is the query's.
            Err(caught) if refusal(&caught) => None,
            Err(caught) => (*caught).rethrow(),
        }
    }
}

/// Whether `caught` is Postgres refusing the text itself: SQLSTATE
/// classes 0A (feature not supported), 21 (cardinality), 22 (data
/// exception) and 42 (syntax error or access rule violation).
fn refusal(caught: &pg_sys::panic::CaughtError) -> bool {
    use pg_sys::panic::CaughtError;
    let code = match caught {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => report.sql_error_code(),
        CaughtError::RustPanic { .. } => return false,
    };
    let class = sqlstate_class(code);
    matches!(&class, b"0A" | b"21" | b"22" | b"42")
}

/// The two class characters of a SQLSTATE, packed as Postgres packs them
/// (six bits a character, the first in the lowest bits).
fn sqlstate_class(code: PgSqlErrorCode) -> [u8; 2] {
    let packed = code as u32;
    let char_at = |i: u32| (((packed >> (6 * i)) & 0x3F) as u8).wrapping_add(b'0');
    [char_at(0), char_at(1)]
}

/// Parses, analyzes and plans `text` (standard_planner, no hooks), or
/// None for anything but a single SELECT.
///
/// # Safety
/// On the backend thread, inside a transaction; raises Postgres's errors.
unsafe fn plan_text(text: &CString) -> Option<Ranks> {
    // SAFETY: per the caller.
    unsafe {
        let [raw] = list::<pg_sys::RawStmt>(pg_sys::pg_parse_query(text.as_ptr()))[..] else {
            return None;
        };
        let query =
            pg_sys::parse_analyze_fixedparams(raw, text.as_ptr(), std::ptr::null_mut(), 0, std::ptr::null_mut());
        if (*query).commandType != pg_sys::CmdType::CMD_SELECT || !(*query).utilityStmt.is_null() {
            return None;
        }
        let stmt = pg_sys::standard_planner(query, text.as_ptr(), 0, std::ptr::null_mut());
        Some(plan_ranks(stmt))
    }
}

/// Sorts each SELECT's FROM list as it is visited (the visitor reaches
/// every SELECT: in derived tables, CTEs, set operations and subquery
/// expressions).
struct Sorter<'a> {
    ranks: Ranks,
    relids: &'a HashMap<TableReference, pg_sys::Oid>,
}

impl VisitorMut for Sorter<'_> {
    type Break = ();

    fn post_visit_select(&mut self, select: &mut Select) -> std::ops::ControlFlow<()> {
        if self.sortable(select) {
            // A stable sort: items without a rank keep their order, after
            // the ranked ones.
            let mut items: Vec<(usize, TableWithJoins)> = std::mem::take(&mut select.from)
                .into_iter()
                .map(|item| (self.item_rank(&item).unwrap_or(usize::MAX), item))
                .collect();
            items.sort_by_key(|(rank, _)| *rank);
            select.from = items.into_iter().map(|(_, item)| item).collect();
        }
        std::ops::ControlFlow::Continue(())
    }
}

impl Sorter<'_> {
    /// Whether sorting `select`'s FROM list can change nothing but the
    /// join order.
    fn sortable(&self, select: &Select) -> bool {
        let plain = |factor: &TableFactor| match factor {
            TableFactor::Table { args, .. } => args.is_none(),
            TableFactor::Derived { lateral, .. } => !lateral,
            TableFactor::NestedJoin { .. } => true,
            _ => false,
        };
        select.from.len() > 1
            && select.lateral_views.is_empty()
            && !select
                .projection
                .iter()
                .any(|item| matches!(item, SelectItem::Wildcard(_)))
            && select
                .from
                .iter()
                .all(|item| plain(&item.relation) && item.joins.iter().all(|join| plain(&join.relation)))
    }

    /// The first rank among the tables of a FROM item.
    fn item_rank(&self, item: &TableWithJoins) -> Option<usize> {
        std::iter::once(&item.relation)
            .chain(item.joins.iter().map(|join| &join.relation))
            .filter_map(|factor| self.factor_rank(factor))
            .min()
    }

    /// The first rank among the tables of a table factor (a derived
    /// table's: those of its FROM lists).
    fn factor_rank(&self, factor: &TableFactor) -> Option<usize> {
        match factor {
            TableFactor::Table { name, alias, .. } => {
                let reference = object_name_to_table_reference(name.clone(), true).ok()?;
                let relid = *self.relids.get(&reference)?;
                let alias = alias
                    .as_ref()
                    .map_or_else(|| reference.table().to_string(), |alias| normalized(&alias.name));
                self.ranks.get(&(relid, alias)).copied()
            }
            TableFactor::Derived { subquery, .. } => self.body_rank(&subquery.body),
            TableFactor::NestedJoin { table_with_joins, .. } => self.item_rank(table_with_joins),
            _ => None,
        }
    }

    /// The first rank among the tables of a query body's FROM lists.
    fn body_rank(&self, body: &SetExpr) -> Option<usize> {
        match body {
            SetExpr::Select(select) => select.from.iter().filter_map(|item| self.item_rank(item)).min(),
            SetExpr::Query(query) => self.body_rank(&query.body),
            SetExpr::SetOperation { left, right, .. } => [self.body_rank(left), self.body_rank(right)]
                .into_iter()
                .flatten()
                .min(),
            _ => None,
        }
    }
}

/// An identifier as Postgres (and DataFusion) fold it: unquoted ones to
/// lower case.
fn normalized(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}
