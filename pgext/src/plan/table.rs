//! [`HeapTable`]: a Postgres heap table as a DataFusion source, as the
//! leader plans with it (its columns as Arrow fields, its size from
//! pg_class, its usable indexes), and the table opened for it.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::TableProviderFilterPushDown;
use datafusion::physical_plan::ExecutionPlan;
use pgrx::pg_sys;

use crate::plan::column::HeapColumn;
use crate::plan::estimate;
use crate::plan::scan::LookupIndex;
use crate::plan::scan::{Filtered, HeapScanExec, ScanColumn, ScanTarget};
use crate::storage::filter::{FilterColumn, ScanFilter};
use crate::types::PgType;

/// A heap table as the leader plans with it.
#[derive(Debug)]
pub struct HeapTable {
    /// The relation.
    pub relid: pg_sys::Oid,
    /// Its storage's number, which participants check.
    pub relfilenode: u32,
    /// Its (schema-qualified) name, for messages and EXPLAIN.
    pub name: String,
    /// Its live columns, in attribute order.
    pub columns: Vec<HeapColumn>,
    /// pg_class's row estimate (None before the first ANALYZE or VACUUM).
    pub rows: Option<f64>,
    /// Postgres's estimate of the rows the query's conditions on this
    /// table alone keep (plain SQL; see `translate::estimate`).
    pub filtered_rows: Option<f64>,
    /// The btree indexes a scan can look join keys up in.
    pub indexes: Vec<LookupIndex>,
    schema: SchemaRef,
}

impl HeapTable {
    /// The table over `columns` (live columns, in attribute order).
    pub fn new(
        relid: pg_sys::Oid,
        relfilenode: u32,
        name: String,
        columns: Vec<HeapColumn>,
        rows: Option<f64>,
    ) -> HeapTable {
        // A column weft cannot read keeps its place (so that its name
        // resolves) as a Null field; scanning it is refused with a reason.
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| {
                let ty = c.ty.as_ref().map_or(DataType::Null, |t| t.arrow());
                Field::new(&c.name, ty, c.nullable || c.ty.is_err())
            })
            .collect();
        HeapTable {
            relid,
            relfilenode,
            name,
            columns,
            rows,
            filtered_rows: None,
            indexes: Vec::new(),
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// The columns a scan filter may read: those weft can read, with their
    /// index in `columns`.
    fn filterable(&self) -> (Vec<usize>, Vec<FilterColumn<'_>>) {
        self.columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((i, (c.name.as_str(), *c.ty.as_ref().ok()?))))
            .unzip()
    }

    /// Column names by attribute number - 1; None for dropped columns.
    pub fn column_names(&self) -> Vec<Option<String>> {
        let last = self.columns.iter().map(|c| c.attnum).max().unwrap_or(0);
        let mut names = vec![None; last.max(0) as usize];
        for c in &self.columns {
            names[c.attnum as usize - 1] = Some(c.name.clone());
        }
        names
    }
}

#[async_trait]
impl TableProvider for HeapTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Exact for the filters the scan evaluates itself ([`crate::storage::filter`]).
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        let (_, columns) = self.filterable();
        Ok(filters
            .iter()
            .map(|f| match ScanFilter::supports(f, &columns) {
                true => TableProviderFilterPushDown::Exact,
                false => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let indexes: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.columns.len()).collect(),
        };
        let columns = indexes
            .iter()
            .map(|&i| self.scan_column(i))
            .collect::<Result<Vec<_>>>()?;
        // The filters DataFusion pushed (all of them exact: it no longer
        // evaluates them). They are compiled over the table's columns to
        // learn which they read, then over those columns alone, as every
        // participant compiles them from the shipped plan.
        let filter = match filters {
            [] => None,
            _ => {
                let (indexes, filterable) = self.filterable();
                let read = ScanFilter::compile(filters.to_vec(), &filterable).map_err(DataFusionError::Plan)?;
                let inputs = read
                    .inputs
                    .iter()
                    .map(|&i| self.scan_column(indexes[i]))
                    .collect::<Result<Vec<_>>>()?;
                Some(Filtered::new(filters.to_vec(), inputs).map_err(DataFusionError::Plan)?)
            }
        };
        let scan = HeapScanExec::new(
            ScanTarget {
                relid: self.relid,
                relfilenode: self.relfilenode,
                name: self.name.clone(),
            },
            columns,
            filter,
            state.config().target_partitions(),
            self.rows,
            None,
            None,
        );
        // Postgres's estimate from the Query (plain SQL), or from the
        // conditions DataFusion pushed (weft.query).
        let filtered_rows = match (self.filtered_rows, filters) {
            (Some(rows), _) => Some(rows),
            (None, []) => None,
            // SAFETY: the leader plans on its backend thread; the table is
            // open (resolved) for the whole statement.
            (None, filters) => unsafe { estimate::scan_rows(self.relid, &self.columns, filters) },
        };
        Ok(Arc::new(HeapScanExec {
            filtered_rows,
            indexes: self.indexes.clone(),
            ..scan
        }))
    }
}

impl HeapTable {
    /// Column `i` as a scan reads it, or why it cannot.
    fn scan_column(&self, i: usize) -> Result<ScanColumn> {
        let column = &self.columns[i];
        match &column.ty {
            Ok(ty) => Ok(ScanColumn {
                attnum: column.attnum,
                name: column.name.clone(),
                typid: column.typid,
                typmod: column.typmod,
                ty: *ty,
                nullable: column.nullable,
                distinct: column.distinct,
            }),
            Err(reason) => Err(DataFusionError::Plan(format!(
                "column \"{}\" of table {} has type {}, which weft cannot read: {reason}",
                column.name, self.name, column.type_name
            ))),
        }
    }
}

/// Opens `relid` (AccessShareLock, until the transaction ends) as a heap
/// table weft can scan, or says why weft cannot (closing it again).
/// Privileges are the caller's to check.
///
/// # Safety
/// On the backend thread.
pub unsafe fn open_table(relid: pg_sys::Oid) -> Result<(pg_sys::Relation, HeapTable), String> {
    // SAFETY: per the caller; table_open raises Postgres's own error for a
    // relation that does not exist.
    let rel = unsafe { pg_sys::table_open(relid, pg_sys::AccessShareLock as i32) };
    // SAFETY: an open relation's catalog row and descriptor.
    let table = unsafe { describe(relid, rel) };
    if table.is_err() {
        // SAFETY: opened above.
        unsafe { pg_sys::table_close(rel, pg_sys::NoLock as i32) };
    }
    table.map(|table| (rel, table))
}

/// The heap table `rel` is, or why weft cannot scan it.
///
/// # Safety
/// `rel` is open, on the backend thread.
pub unsafe fn describe(relid: pg_sys::Oid, rel: pg_sys::Relation) -> Result<HeapTable, String> {
    // SAFETY: per the caller.
    unsafe {
        let class = &*(*rel).rd_rel;
        let name = format!(
            "{}.{}",
            std::ffi::CStr::from_ptr(pg_sys::get_namespace_name(class.relnamespace)).to_string_lossy(),
            std::ffi::CStr::from_ptr(class.relname.data.as_ptr()).to_string_lossy()
        );
        let kind = class.relkind as u8;
        if kind != pg_sys::RELKIND_RELATION && kind != pg_sys::RELKIND_MATVIEW {
            return Err(format!(
                "{name} is not a table; weft reads tables and materialized views"
            ));
        }
        // Parallel workers cannot see the leader's local buffers, where a
        // temporary table's pages live.
        if class.relpersistence as u8 == pg_sys::RELPERSISTENCE_TEMP {
            return Err(format!(
                "{name} is a temporary table, which parallel workers cannot read"
            ));
        }
        // Postgres raises its own error when it reads one; the plan left
        // to it does.
        if !class.relispopulated {
            return Err(format!("materialized view {name} has not been populated"));
        }
        if pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, false)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
        {
            return Err(format!(
                "table {name} has row-level security enabled, and weft does not apply policies"
            ));
        }
        if (*rel).rd_tableam != pg_sys::GetHeapamTableAmRoutine() {
            return Err(format!("table {name} does not use the heap access method"));
        }
        let rows = (class.reltuples >= 0.0).then_some(f64::from(class.reltuples));
        let descriptor = &*(*rel).rd_att;
        let attributes = descriptor.attrs.as_slice(descriptor.natts as usize);
        let columns = attributes
            .iter()
            .filter(|a| !a.attisdropped)
            .map(|a| HeapColumn {
                attnum: a.attnum,
                name: std::ffi::CStr::from_ptr(a.attname.data.as_ptr())
                    .to_string_lossy()
                    .into_owned(),
                typid: a.atttypid,
                typmod: a.atttypmod,
                ty: PgType::of(a.atttypid, a.atttypmod),
                nullable: !a.attnotnull,
                type_name: std::ffi::CStr::from_ptr(pg_sys::format_type_with_typemod(a.atttypid, a.atttypmod))
                    .to_string_lossy()
                    .into_owned(),
                distinct: crate::plan::stats::distinct(relid, a.attnum, rows),
            })
            .collect();
        let relfilenode = (*rel).rd_node.relNode.to_u32();
        let mut table = HeapTable::new(relid, relfilenode, name, columns, rows);
        table.indexes = crate::plan::lookup::indexes(rel, rows);
        Ok(table)
    }
}
