//! SPMD plans through LocalMesh against plain single-process DataFusion on
//! the same tables: every participant plans the same SQL with the
//! `Distribute` rule and executes it; participant 0's result must equal
//! DataFusion's, and the plans must hold the exchanges expected.

mod support;

use std::sync::{Arc, OnceLock};

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use support::spmd::{distributed, expected, text, Table};

fn tables() -> &'static [Table] {
    static TABLES: OnceLock<Vec<Table>> = OnceLock::new();
    TABLES.get_or_init(|| {
        let orders = Arc::new(Schema::new(vec![
            Field::new("o_id", DataType::Int64, false),
            Field::new("o_cust", DataType::Int64, false),
            Field::new("o_total", DataType::Float64, true),
        ]));
        let customers = Arc::new(Schema::new(vec![
            Field::new("c_id", DataType::Int64, false),
            Field::new("c_name", DataType::Utf8, false),
            Field::new("c_nation", DataType::Int64, false),
        ]));
        let order_batches = (0..20)
            .map(|b| {
                let ids: Vec<i64> = (b * 500..(b + 1) * 500).collect();
                RecordBatch::try_new(
                    orders.clone(),
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
        let customer_batches = (0..4)
            .map(|b| {
                let ids: Vec<i64> = (b * 250..(b + 1) * 250).collect();
                RecordBatch::try_new(
                    customers.clone(),
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
        vec![
            Table {
                name: "orders",
                schema: orders,
                batches: order_batches,
            },
            Table {
                name: "customers",
                schema: customers,
                batches: customer_batches,
            },
        ]
    })
}

const QUERIES: &[(&str, &[&str])] = &[
    // A two-phase aggregate: shuffle between the phases, gather with merge.
    (
        "SELECT o_cust % 10 AS g, count(*) AS n, sum(o_total) AS total FROM orders GROUP BY g ORDER BY g",
        &["mode=hash", "mode=gather, merge"],
    ),
    // An aggregate without groups: partials gathered to participant 0.
    ("SELECT count(*), min(o_id), max(o_total) FROM orders", &["mode=gather"]),
    // A join whose small side is broadcast, then an aggregate.
    (
        "SELECT c_nation, count(*) AS n, sum(o_total) AS total FROM orders JOIN customers ON o_cust = c_id \
         GROUP BY c_nation ORDER BY c_nation",
        &["mode=broadcast", "mode=hash"],
    ),
    // Top-k under a limit: each participant's top 7, merged.
    (
        "SELECT o_id, o_total FROM orders WHERE o_total IS NOT NULL ORDER BY o_total DESC, o_id LIMIT 7",
        &["mode=gather, merge", "fetch=7"],
    ),
];

#[test]
fn spmd_plans_match_single_process_datafusion() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for participants in [1usize, 2, 3] {
        for (sql, shapes) in QUERIES {
            let want = text(&runtime.block_on(expected(tables(), sql, participants)));
            let (got, plan) =
                distributed(tables(), sql, participants, 16).unwrap_or_else(|e| panic!("P={participants} {sql}: {e}"));
            assert_eq!(text(&got), want, "P={participants}: {sql}\n{plan}");
            for shape in shapes.iter().filter(|_| participants > 1) {
                assert!(plan.contains(shape), "P={participants}: no {shape:?} in\n{plan}");
            }
        }
    }
}
