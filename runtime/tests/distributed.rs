//! SPMD plans through LocalMesh against plain single-process DataFusion on
//! the same tables: every participant plans the same SQL with the
//! [`Distribute`] rule and executes it; participant 0's result must equal
//! DataFusion's.

use std::sync::Arc;

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::{collect, displayable};
use datafusion::prelude::{SessionConfig, SessionContext};
use weft_runtime::{Distribute, LocalMesh, Participant, RuntimeError};

fn orders_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("o_id", DataType::Int64, false),
        Field::new("o_cust", DataType::Int64, false),
        Field::new("o_total", DataType::Float64, true),
    ]))
}

fn customers_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("c_id", DataType::Int64, false),
        Field::new("c_name", DataType::Utf8, false),
        Field::new("c_nation", DataType::Int64, false),
    ]))
}

/// Deterministic tables, sliced into `shares` contiguous pieces.
fn tables(shares: usize) -> Vec<(&'static str, SchemaRef, Vec<Vec<RecordBatch>>)> {
    let orders: Vec<RecordBatch> = (0..20)
        .map(|b| {
            let ids: Vec<i64> = (b * 500..(b + 1) * 500).collect();
            RecordBatch::try_new(
                orders_schema(),
                vec![
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| (i * 7919) % 1000))),
                    Arc::new(Float64Array::from_iter(
                        ids.iter().map(|i| (i % 13 != 0).then(|| (i % 997) as f64 / 4.0)),
                    )),
                ],
            )
            .unwrap()
        })
        .collect();
    let customers: Vec<RecordBatch> = (0..4)
        .map(|b| {
            let ids: Vec<i64> = (b * 250..(b + 1) * 250).collect();
            RecordBatch::try_new(
                customers_schema(),
                vec![
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(StringArray::from_iter_values(
                        ids.iter().map(|i| format!("customer#{i:04}")),
                    )),
                    Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| i % 25))),
                ],
            )
            .unwrap()
        })
        .collect();
    let slice = |batches: Vec<RecordBatch>| -> Vec<Vec<RecordBatch>> {
        let per = batches.len().div_ceil(shares);
        let mut out: Vec<Vec<RecordBatch>> = batches.chunks(per).map(|c| c.to_vec()).collect();
        out.resize(shares, Vec::new());
        out
    };
    vec![
        ("orders", orders_schema(), slice(orders)),
        ("customers", customers_schema(), slice(customers)),
    ]
}

fn context(participants: usize, node: Option<Arc<Participant>>) -> SessionContext {
    let mut config = SessionConfig::new().with_target_partitions(participants);
    let mut builder = SessionStateBuilder::new().with_default_features();
    if let Some(node) = node {
        config = config.with_extension(node);
        builder = builder.with_physical_optimizer_rule(Arc::new(Distribute::new(participants)));
    }
    let ctx = SessionContext::new_with_state(builder.with_config(config).build());
    for (name, schema, shares) in tables(participants) {
        let table = MemTable::try_new(schema, shares).unwrap();
        ctx.register_table(name, Arc::new(table)).unwrap();
    }
    ctx
}

/// The query's result from plain DataFusion, as pretty-printed text.
async fn expected(sql: &str, participants: usize) -> String {
    let ctx = context(participants, None);
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

/// The query run through `participants` LocalMesh participants: participant
/// 0's result as text, and its plan.
fn distributed(sql: &str, participants: usize) -> Result<(String, String), RuntimeError> {
    let mesh = LocalMesh::new(participants as u32, 16, 256 << 10)?;
    let sql = sql.to_owned();
    let mut results = mesh.run(move |node| {
        let sql = sql.clone();
        async move {
            let me = node.id();
            let ctx = context(participants, Some(node));
            let query = |e: datafusion::error::DataFusionError| RuntimeError::Runtime(e.to_string());
            let plan = ctx
                .sql(&sql)
                .await
                .map_err(query)?
                .create_physical_plan()
                .await
                .map_err(query)?;
            let text = displayable(plan.as_ref()).indent(false).to_string();
            let batches = collect(plan, ctx.task_ctx()).await.map_err(query)?;
            let rows = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string();
            Ok((me, rows, text))
        }
    });
    let (_, rows, plan) = results.remove(0)?.0;
    for other in results {
        other?;
    }
    Ok((rows, plan))
}

const QUERIES: &[(&str, &[&str])] = &[
    // A two-phase aggregate: shuffle between the phases, gather with merge.
    (
        "SELECT o_cust % 10 AS g, count(*) AS n, sum(o_total) AS total FROM orders GROUP BY g ORDER BY g",
        &["mode=hash", "mode=gather, merge"],
    ),
    // An aggregate without groups: partials gathered to participant 0.
    ("SELECT count(*), min(o_id), max(o_total) FROM orders", &["mode=gather"]),
    // A join, then an aggregate over the joined rows.
    (
        "SELECT c_nation, count(*) AS n, sum(o_total) AS total FROM orders JOIN customers ON o_cust = c_id \
         GROUP BY c_nation ORDER BY c_nation",
        &["mode="],
    ),
    // Top-k under a limit.
    (
        "SELECT o_id, o_total FROM orders WHERE o_total IS NOT NULL ORDER BY o_total DESC, o_id LIMIT 7",
        &["mode=gather, merge"],
    ),
];

#[test]
fn spmd_plans_match_single_process_datafusion() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for participants in [1usize, 2, 3] {
        for (sql, shapes) in QUERIES {
            let want = runtime.block_on(expected(sql, participants));
            let (got, plan) = distributed(sql, participants).unwrap_or_else(|e| panic!("P={participants} {sql}: {e}"));
            assert_eq!(got, want, "P={participants}: {sql}\n{plan}");
            if std::env::var_os("WEFT_SHOW_PLANS").is_some() {
                eprintln!("P={participants}: {sql}\n{plan}");
            }
            for shape in shapes.iter().filter(|_| participants > 1) {
                assert!(plan.contains(shape), "P={participants}: no {shape:?} in\n{plan}");
            }
        }
    }
}
