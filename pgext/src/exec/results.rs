//! A query's result written into a set-returning function's tuplestore.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use pgrx::{pg_sys, PgSqlErrorCode};

use crate::error::report;
use crate::types::ColumnWriter;

/// Writes the leader's result into the tuplestore as `tupdesc` declares.
///
/// # Safety
/// `tupdesc` and `store` from InitMaterializedSRF; on the backend thread,
/// outside tokio frames.
pub unsafe fn materialize(
    what: &str,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    tupdesc: pg_sys::TupleDesc,
    store: *mut pg_sys::Tuplestorestate,
) {
    // SAFETY: per the caller.
    let descriptor = unsafe { &*tupdesc };
    // SAFETY: as above.
    let attributes = unsafe { descriptor.attrs.as_slice(descriptor.natts as usize) };
    if attributes.len() != schema.fields().len() {
        report(
            what,
            &format!(
                "the query returns {} columns, and the column definition list has {}",
                schema.fields().len(),
                attributes.len()
            ),
        );
    }
    let mut writers = Vec::with_capacity(attributes.len());
    for (i, (field, attribute)) in schema.fields().iter().zip(attributes).enumerate() {
        // SAFETY: on the backend thread.
        let writer = unsafe { ColumnWriter::new(field.data_type(), attribute.atttypid, attribute.atttypmod) };
        match writer {
            Some(writer) => writers.push(writer),
            None => {
                // SAFETY: a valid type.
                let declared = unsafe {
                    std::ffi::CStr::from_ptr(pg_sys::format_type_with_typemod(
                        attribute.atttypid,
                        attribute.atttypmod,
                    ))
                }
                .to_string_lossy()
                .into_owned();
                pgrx::ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                    format!(
                        "{what}: result column {} (\"{}\") is {} in the query, which cannot be returned as {declared}",
                        i + 1,
                        field.name(),
                        field.data_type()
                    )
                );
            }
        }
    }
    // SAFETY: a context for each row's datums, reset per batch.
    let memory = unsafe {
        pg_sys::AllocSetContextCreateInternal(
            pg_sys::CurrentMemoryContext,
            c"weft.query rows".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        )
    };
    let mut values = vec![pg_sys::Datum::null(); writers.len()];
    let mut nulls = vec![false; writers.len()];
    for batch in batches {
        // SAFETY: as above.
        let previous = unsafe { pg_sys::MemoryContextSwitchTo(memory) };
        for row in 0..batch.num_rows() {
            for (c, writer) in writers.iter_mut().enumerate() {
                // SAFETY: the writer was made for this column's type.
                match unsafe { writer.datum(batch.column(c).as_ref(), row) } {
                    Some(datum) => {
                        values[c] = datum;
                        nulls[c] = false;
                    }
                    None => {
                        values[c] = pg_sys::Datum::null();
                        nulls[c] = true;
                    }
                }
            }
            // SAFETY: values and nulls match the descriptor; the store
            // copies the tuple into its own memory.
            unsafe { pg_sys::tuplestore_putvalues(store, tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr()) };
        }
        // SAFETY: as above.
        unsafe {
            pg_sys::MemoryContextSwitchTo(previous);
            pg_sys::MemoryContextReset(memory);
        }
    }
    // SAFETY: ours.
    unsafe { pg_sys::MemoryContextDelete(memory) };
}
