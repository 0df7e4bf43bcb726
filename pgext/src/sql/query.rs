//! `weft.query(sql)` and `weft.explain(sql, run)`: DataFusion SQL over
//! this database's tables, run by the leader and its parallel workers
//! ([`crate::exec::run`]).
//!
//! The SQL is parsed by DataFusion; every table it names is resolved as
//! Postgres would (search_path, AccessShareLock), with SELECT privilege
//! checked (Postgres's own error when denied) and row-level security
//! refused; its FROM lists are put in the order of Postgres's plan of the
//! same text ([`order`]), and it is planned logically.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::config::Dialect;
use datafusion::prelude::{SQLOptions, SessionContext};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode};

use crate::error::report;
use crate::exec::results::materialize;
use crate::exec::run::{block_on, new_state, run, session_config, Planned, CATALOG, SEARCH_PATH_SCHEMA};
use crate::plan::table::open_table;
use crate::plan::table::HeapTable;
use crate::sql::order;

extension_sql!(
    r#"
CREATE FUNCTION query(sql text) RETURNS SETOF record
    STRICT VOLATILE PARALLEL UNSAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'weft_query';
COMMENT ON FUNCTION query(text) IS
    'Runs DataFusion SQL over this database''s tables across the leader and parallel workers; use with a column definition list.';
"#,
    name = "weft_query"
);

/// `weft.query`'s version-1 function info.
#[no_mangle]
pub extern "C" fn pg_finfo_weft_query() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `weft.query(sql text) RETURNS SETOF record`: materializes the query's
/// rows as the caller's column definition list declares them.
///
/// # Safety
/// Called by Postgres's function manager with a valid `fcinfo`.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn weft_query(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: per the caller; the function is STRICT, so the argument is
    // a non-null text.
    let sql: String = unsafe { pgrx::fcinfo::pg_getarg::<String>(fcinfo, 0) }.unwrap_or_default();
    // SAFETY: as above; InitMaterializedSRF checks the call site allows a
    // materialized set and takes the column definition list's descriptor.
    let (tupdesc, store) = unsafe {
        pg_sys::InitMaterializedSRF(fcinfo, pg_sys::MAT_SRF_USE_EXPECTED_DESC);
        let rsinfo = (*fcinfo).resultinfo.cast::<pg_sys::ReturnSetInfo>();
        ((*rsinfo).setDesc, (*rsinfo).setResult)
    };
    let output = run(planned(&sql), false).unwrap_or_else(|reason| report("weft.query", &reason));
    // SAFETY: the descriptor and store InitMaterializedSRF made, on the
    // backend thread, outside every tokio frame.
    unsafe { materialize("weft.query", &output.schema, &output.batches, tupdesc, store) };
    pg_sys::Datum::null()
}

/// `weft.explain(sql text, run boolean DEFAULT false)`: the SPMD plan weft
/// runs `sql` with; with `run`, after running it, with every operator's
/// metrics in the leader and every edge's traffic.
#[pg_extern(volatile, parallel_unsafe)]
fn explain(sql: &str, run: default!(bool, false)) -> SetOfIterator<'static, String> {
    let explained = if run {
        crate::exec::run::run(planned(sql), true)
            .unwrap_or_else(|reason| report("weft.explain", &reason))
            .explain
            .unwrap_or_else(|| report("weft.explain", "the run kept no EXPLAIN"))
    } else {
        let planned = planned(sql);
        let explained = crate::exec::run::explain(&planned);
        planned.close();
        explained
    };
    let text = explained.text();
    SetOfIterator::new(text.lines().map(str::to_string).collect::<Vec<_>>())
}

/// Parses `sql`, resolves and checks its tables, plans it logically.
fn planned(sql: &str) -> Planned {
    let ctx = SessionContext::new_with_state(new_state(session_config(1)));
    let state = ctx.state();
    let mut statement = state
        .sql_to_statement(sql, &Dialect::PostgreSQL)
        .unwrap_or_else(|e| report("weft.query", &e.to_string()));
    let references = state
        .resolve_table_references(&statement)
        .unwrap_or_else(|e| report("weft.query", &e.to_string()));
    let mut relations = Vec::new();
    let mut relids = HashMap::new();
    for reference in references {
        let (relid, rel, table) = resolve(&reference);
        relations.push((relid, rel));
        relids.insert(reference.clone(), relid);
        let schema = reference.schema().unwrap_or(SEARCH_PATH_SCHEMA).to_string();
        let catalog = ctx.catalog(CATALOG).expect("weft's catalog exists");
        if catalog.schema(&schema).is_none() {
            catalog
                .register_schema(&schema, Arc::new(MemorySchemaProvider::new()))
                .unwrap_or_else(|e| report("weft.query", &e.to_string()));
        }
        let reference = TableReference::full(CATALOG, schema, reference.table());
        ctx.register_table(reference, Arc::new(table))
            .unwrap_or_else(|e| report("weft.query", &e.to_string()));
    }
    order::follow_postgres_plan(sql, &mut statement, &relids);
    let state = ctx.state();
    let logical = block_on(state.statement_to_plan(statement)).unwrap_or_else(|e| report("weft.query", &e.to_string()));
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&logical)
        .unwrap_or_else(|e| report("weft.query", &format!("{e} (weft.query runs queries only)")));
    Planned::new(state, logical, relations)
}

/// Resolves `reference` as Postgres resolves a table name, checks the
/// caller may read it and weft can, and opens it.
fn resolve(reference: &TableReference) -> (pg_sys::Oid, pg_sys::Relation, HeapTable) {
    if let Some(catalog) = reference.catalog() {
        // SAFETY: the current database's name, on the backend thread.
        let current = unsafe { std::ffi::CStr::from_ptr(pg_sys::get_database_name(pg_sys::MyDatabaseId)) };
        if current.to_str().ok() != Some(catalog) {
            pgrx::ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("cross-database references are not implemented: {reference}")
            );
        }
    }
    let schema = reference
        .schema()
        .map(|s| std::ffi::CString::new(s).expect("an identifier"));
    let table = std::ffi::CString::new(reference.table()).expect("an identifier");
    // SAFETY: on the backend thread; RangeVarGetRelidExtended raises
    // Postgres's own "relation does not exist" error, locks the relation
    // AccessShare (until the transaction ends) and follows search_path
    // for an unqualified name.
    let relid = unsafe {
        let range = pg_sys::makeRangeVar(
            schema.as_ref().map_or(std::ptr::null_mut(), |s| s.as_ptr().cast_mut()),
            table.as_ptr().cast_mut(),
            -1,
        );
        pg_sys::RangeVarGetRelidExtended(range, pg_sys::AccessShareLock as i32, 0, None, std::ptr::null_mut())
    };
    // SAFETY: the relation is locked; a plain catalog check.
    unsafe {
        let kind = pg_sys::get_rel_relkind(relid);
        let acl = pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), pg_sys::ACL_SELECT as pg_sys::AclMode);
        if acl != pg_sys::AclResult::ACLCHECK_OK {
            pg_sys::aclcheck_error(acl, pg_sys::get_relkind_objtype(kind), pg_sys::get_rel_name(relid));
        }
    }
    // SAFETY: locked above; a plain look at its catalog row.
    unsafe { check_populated(relid) };
    // SAFETY: on the backend thread, the relation locked.
    match unsafe { open_table(relid) } {
        Ok((rel, table)) => (relid, rel, table),
        Err(reason) => report("weft.query", &reason),
    }
}

/// Raises Postgres's own error for a materialized view created `WITH NO
/// DATA` and not refreshed since, which Postgres refuses to read rather
/// than answer as empty.
///
/// # Safety
/// On the backend thread, `relid` locked.
unsafe fn check_populated(relid: pg_sys::Oid) {
    // SAFETY: per the caller.
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::NoLock as i32);
        let unpopulated = !(*(*rel).rd_rel).relispopulated;
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        if unpopulated {
            let name = std::ffi::CStr::from_ptr(pg_sys::get_rel_name(relid)).to_string_lossy();
            pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("materialized view \"{name}\" has not been populated"),
                "weft.query",
            )
            .set_hint("Use the REFRESH MATERIALIZED VIEW command.")
            .report(pgrx::PgLogLevel::ERROR);
            unreachable!("an ERROR does not return");
        }
    }
}
