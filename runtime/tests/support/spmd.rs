//! Running SQL as an SPMD plan through LocalMesh, and the same SQL through
//! plain DataFusion, for differential tests.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::{collect, displayable};
use datafusion::prelude::{SessionConfig, SessionContext};
use weft_runtime::{share_range, spmd_config, Distribute, LocalMesh, Participant, RuntimeError};

/// A table: its name, schema and batches.
pub struct Table {
    pub name: &'static str,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// A session over `tables` split into `partitions` shares (share i =
/// partition i); with `node`, planned for SPMD execution by that
/// participant.
pub fn context(tables: &[Table], partitions: usize, node: Option<Arc<Participant>>) -> SessionContext {
    let mut config = SessionConfig::new().with_target_partitions(partitions);
    let mut builder = SessionStateBuilder::new().with_default_features();
    if let Some(node) = node {
        config = spmd_config(config, node);
        builder = builder.with_physical_optimizer_rule(Arc::new(Distribute::new(partitions)));
    }
    let ctx = SessionContext::new_with_state(builder.with_config(config).build());
    for table in tables {
        let shares = (0..partitions)
            .map(|i| {
                let (start, end) = share_range(table.batches.len(), partitions, i);
                table.batches[start..end].to_vec()
            })
            .collect();
        let mem = MemTable::try_new(table.schema.clone(), shares).expect("table");
        ctx.register_table(table.name, Arc::new(mem)).expect("register");
    }
    ctx
}

/// `sql`'s result from plain single-process DataFusion.
pub async fn expected(tables: &[Table], sql: &str, partitions: usize) -> Vec<RecordBatch> {
    let ctx = context(tables, partitions, None);
    ctx.sql(sql).await.expect("plan").collect().await.expect("run")
}

/// `sql` run by `participants` LocalMesh participants: participant 0's
/// result, and its plan as text.
pub fn distributed(
    tables: &'static [Table],
    sql: &str,
    participants: usize,
    exchanges: u32,
) -> Result<(Vec<RecordBatch>, String), RuntimeError> {
    let mesh = LocalMesh::new(participants as u32, exchanges, 1 << 20)?;
    let mut results = mesh.run(|node| async move {
        let ctx = context(tables, participants, Some(node));
        let query = |e: datafusion::error::DataFusionError| RuntimeError::Runtime(e.to_string());
        let plan = ctx
            .sql(sql)
            .await
            .map_err(query)?
            .create_physical_plan()
            .await
            .map_err(query)?;
        let text = displayable(plan.as_ref()).indent(false).to_string();
        let batches = collect(plan, ctx.task_ctx()).await.map_err(query)?;
        Ok((batches, text))
    });
    let first = results.remove(0).map(|(result, _)| result);
    for other in results {
        other?;
    }
    first
}

/// Batches as text, for comparison and messages.
pub fn text(batches: &[RecordBatch]) -> String {
    datafusion::arrow::util::pretty::pretty_format_batches(batches)
        .expect("format")
        .to_string()
}
