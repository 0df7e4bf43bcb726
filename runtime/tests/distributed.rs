//! SPMD plans through LocalMesh against plain single-process DataFusion on
//! the same tables: the leader plans the SQL with the `Distribute` rule and
//! ships the plan; every participant decodes and executes it; participant
//! 0's result must equal DataFusion's, and the plans must hold the
//! exchanges expected. Then shipping itself (round trips, plans that do
//! not fit the mesh, corrupt bytes), EXPLAIN with edge metrics, and
//! failures: an injected error, a limit that stops early, a cancel.

mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::displayable;
use datafusion::prelude::SessionContext;
use support::spmd::{
    codec, context, distributed, execute, expected, register, run_shipped, ship, text, Fault, Table, BATCHES_SCANNED,
};
use weft_runtime::{LocalMesh, RuntimeError};

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
    // A WITH query read twice (TPC-H Q15's shape): aggregated once, read
    // by the join and by the scalar subquery.
    (TOP_CUSTOMERS, &["WeftShared: id=0, consumers=2"]),
    // A WITH query joined with itself.
    (
        "WITH g AS (SELECT o_cust % 50 AS k, count(*) AS n, sum(o_total) AS t FROM orders GROUP BY k) \
         SELECT a.k, a.n, a.t, b.n AS n2, b.t AS t2 FROM g a JOIN g b ON a.k = b.k ORDER BY a.k",
        &["WeftShared: id=0, consumers=2"],
    ),
    // An expression over an aggregate without groups: participants other
    // than 0 must not compute 13 / count(*) over their empty inputs (a
    // division by zero).
    (
        "SELECT 13 / count(*) AS x, sum(o_id) / count(o_total) AS y FROM orders",
        &["mode=gather", "WeftLeaderOnly"],
    ),
    // A scalar subquery aggregated by hash (a DISTINCT): its rows are
    // spread among the participants, and every one of them needs its value.
    (
        "SELECT count(*) AS n FROM orders WHERE o_cust % 25 = (SELECT DISTINCT c_nation FROM customers WHERE c_id = 7)",
        &["mode=broadcast"],
    ),
    // UNION ALL of two aggregates and a scan: each participant's shares
    // put together where they are.
    (
        "SELECT k, n FROM ( \
           SELECT o_cust % 10 AS k, count(*) AS n FROM orders GROUP BY o_cust % 10 \
           UNION ALL SELECT c_nation AS k, count(*) AS n FROM customers GROUP BY c_nation \
           UNION ALL SELECT o_id AS k, o_cust AS n FROM orders WHERE o_id < 40) u ORDER BY k, n",
        &["WeftUnion"],
    ),
    // UNION ALL with inputs whole on participant 0 (an aggregate without
    // groups) and on every participant (constants): counted once.
    (
        "SELECT k, n FROM ( \
           SELECT count(*) AS k, max(o_id) AS n FROM orders \
           UNION ALL SELECT 1 AS k, 2 AS n \
           UNION ALL SELECT c_id AS k, c_nation AS n FROM customers WHERE c_id % 100 = 3) u ORDER BY k, n",
        &["WeftUnion", "mode=round_robin"],
    ),
    // UNION: duplicates removed across participants.
    (
        "SELECT o_cust % 7 AS k FROM orders UNION SELECT c_nation AS k FROM customers ORDER BY k",
        &["WeftUnion", "mode=hash"],
    ),
];

/// The customers with the largest total, read from one aggregate twice.
const TOP_CUSTOMERS: &str = "WITH totals AS (SELECT o_cust, sum(o_total) AS total FROM orders GROUP BY o_cust) \
     SELECT o_cust, total FROM totals WHERE total = (SELECT max(total) FROM totals) ORDER BY o_cust";

#[test]
fn spmd_plans_match_single_process_datafusion() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for participants in [1usize, 2, 3] {
        for (sql, shapes) in QUERIES {
            let want = text(&runtime.block_on(expected(tables(), sql, participants)));
            let (got, plan) =
                distributed(tables(), sql, participants).unwrap_or_else(|e| panic!("P={participants} {sql}: {e}"));
            assert_eq!(text(&got), want, "P={participants}: {sql}\n{plan}");
            for shape in shapes.iter().filter(|_| participants > 1) {
                assert!(plan.contains(shape), "P={participants}: no {shape:?} in\n{plan}");
            }
        }
    }
}

/// A WITH query read in two places is read from its table once, by each
/// participant its share, however many participants.
#[test]
fn a_query_read_twice_scans_its_table_once() {
    let batches = tables()[0].batches.len() as u64;
    for participants in [1usize, 2, 3] {
        BATCHES_SCANNED.store(0, Ordering::Relaxed);
        let (got, plan) = distributed(tables(), TOP_CUSTOMERS, participants).unwrap();
        assert!(!got.is_empty(), "P={participants}");
        let scanned = BATCHES_SCANNED.load(Ordering::Relaxed);
        assert_eq!(scanned, batches, "P={participants}: {scanned} batches scanned\n{plan}");
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

/// The leader's SPMD session for `participants`, with `orders` also
/// registered as `faulty` with `fault`.
fn leader(participants: usize, fault: Fault) -> SessionContext {
    let ctx = context(tables(), participants, true);
    register(&ctx, "faulty", &tables()[0], participants, fault);
    ctx
}

/// Encoding, decoding and encoding again gives the same bytes and the same
/// plan text, exchanges (numbers, modes, keys, merge orders, fetch) and
/// sources included.
#[test]
fn shipped_plans_round_trip() {
    let codec = codec(tables());
    for (sql, _) in QUERIES {
        let ctx = leader(3, Fault::None);
        let plan = block_on(async { ctx.sql(sql).await?.create_physical_plan().await })
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let bytes = codec.encode(plan.clone()).unwrap();
        let back = codec.decode(&bytes, &ctx.task_ctx()).unwrap();
        let show = |p: &dyn datafusion::physical_plan::ExecutionPlan| displayable(p).indent(true).to_string();
        assert_eq!(show(back.as_ref()), show(plan.as_ref()), "{sql}");
        assert_eq!(codec.encode(back).unwrap(), bytes, "{sql}");
    }
}

/// A plan that does not fit the mesh it runs in (too few exchanges, or
/// planned for another participant count) is refused before it runs, as
/// is a corrupt plan.
#[test]
fn plans_that_do_not_fit_the_mesh_are_refused() {
    let sql = QUERIES[2].0; // three exchanges and a gather
    let codec = codec(tables());
    let for_two = block_on(ship(&leader(2, Fault::None), tables(), sql)).unwrap();
    let for_three = block_on(ship(&leader(3, Fault::None), tables(), sql)).unwrap();
    let refusal = |bytes: &[u8], participants: u32, exchanges: u32| {
        let results = LocalMesh::new(participants, exchanges, 1 << 16)
            .unwrap()
            .run(|node| execute(node, &codec, bytes));
        results.into_iter().next().unwrap().map(|_| ()).unwrap_err().to_string()
    };
    let error = refusal(&for_two, 2, 2);
    assert!(error.contains("does not fit a mesh of 2 exchanges"), "{error}");
    let error = refusal(&for_three, 2, 16);
    assert!(error.contains("planned for 3 participants, but 2 run it"), "{error}");
    let mut corrupt = for_two.clone();
    corrupt.truncate(corrupt.len() / 2);
    assert!(codec.decode(&corrupt, &TaskContext::default()).is_err());
    for flip in (0..for_two.len()).step_by(97) {
        let mut corrupt = for_two.clone();
        corrupt[flip] ^= 0x5a;
        let _ = codec.decode(&corrupt, &TaskContext::default()); // an error or a plan, never a panic
    }
}

/// After a run, EXPLAIN shows each exchange's mode and keys with its
/// operator metrics, and every edge's rows, bytes and stall times; the
/// rows sent over each exchange add up to what its receivers output.
#[test]
fn explain_shows_exchanges_and_edges() {
    let sql = QUERIES[0].0;
    let bytes = block_on(ship(&leader(3, Fault::None), tables(), sql)).unwrap();
    let run = run_shipped(tables(), &bytes, 3, 16).unwrap();
    assert!(
        run.explain.contains("WeftExchange: id=0, mode=hash(["),
        "{}",
        run.explain
    );
    assert!(run.explain.contains("metrics=[output_rows="), "{}", run.explain);
    assert!(
        run.explain.contains("Edges (exchange sender->receiver):"),
        "{}",
        run.explain
    );
    for sender in 0..3 {
        for receiver in 0..3 {
            let edge = format!("x0 {sender}->{receiver}: batches=");
            assert!(run.explain.contains(&edge), "no {edge:?} in\n{}", run.explain);
        }
    }
    // Exchange 0 carries the partial aggregates: each participant's 10
    // groups; what was sent was received.
    let rows = |side: fn(
        &weft_runtime::Metrics,
    ) -> &std::collections::BTreeMap<weft_runtime::Edge, weft_runtime::EdgeStats>|
     -> u64 {
        run.metrics
            .iter()
            .flat_map(|m| side(m).iter())
            .filter(|(edge, _)| edge.exchange == 0)
            .map(|(_, stats)| stats.rows)
            .sum()
    };
    assert_eq!(rows(|m| &m.sent), 30);
    assert_eq!(rows(|m| &m.received), 30);
}

/// Participant 1's scan fails mid-query: every participant's query fails
/// with that participant's message.
#[test]
fn an_injected_error_fails_the_query_everywhere() {
    for sql in [
        "SELECT o_cust % 10 AS g, count(*) FROM faulty GROUP BY g ORDER BY g",
        // Under a shared subplan: every place that reads it fails with it.
        &TOP_CUSTOMERS.replace("FROM orders", "FROM faulty"),
    ] {
        injected_error_fails_everywhere(sql);
    }
}

fn injected_error_fails_everywhere(sql: &str) {
    let ctx = leader(
        3,
        Fault::Fail {
            participant: 1,
            after: 2,
        },
    );
    if sql.starts_with("WITH") {
        let plan = block_on(async { ctx.sql(sql).await?.create_physical_plan().await }).unwrap();
        let plan = displayable(plan.as_ref()).indent(true).to_string();
        assert!(plan.contains("WeftShared"), "{sql}: not shared in\n{plan}");
    }
    let bytes = block_on(ship(&ctx, tables(), sql)).unwrap();
    let codec = codec(tables());
    let results = LocalMesh::new(3, 16, 1 << 16)
        .unwrap()
        .run(|node| execute(node, &codec, &bytes));
    for (p, result) in results.into_iter().enumerate() {
        let error = result.map(|_| ()).unwrap_err();
        assert!(
            error.to_string().contains("injected failure in participant 1"),
            "participant {p}: {sql}: {error}"
        );
    }
}

/// A huge table (every share read 100 000 times over: 2 million batches)
/// under a LIMIT: the query ends having scanned a tiny part of it, both
/// when the limit sits above a gather and above a partitioned join whose
/// exchanges must stop their producers. (Producers whose own participant
/// stopped reading them go on until the leader has its whole result,
/// which it has once its own producer has ended: about a thousand
/// batches are read meanwhile.)
#[test]
fn a_limit_ends_the_query_without_draining_the_producers() {
    let huge = Fault::Repeat { times: 100_000 };
    for (sql, shape, setting) in [
        ("SELECT o_id FROM faulty LIMIT 10", "fetch=10", None),
        (
            "SELECT o_id, c_name FROM faulty JOIN customers ON o_cust = c_id LIMIT 10",
            "mode=hash",
            Some("SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0"),
        ),
    ] {
        BATCHES_SCANNED.store(0, Ordering::Relaxed);
        let ctx = leader(3, huge);
        if let Some(setting) = setting {
            block_on(ctx.sql(setting)).unwrap();
            block_on(ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold = 0")).unwrap();
        }
        let bytes = block_on(ship(&ctx, tables(), sql)).unwrap();
        let run = run_shipped(tables(), &bytes, 3, 16).unwrap();
        assert!(run.explain.contains(shape), "{sql}: no {shape:?} in\n{}", run.explain);
        assert_eq!(run.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 10, "{sql}");
        let scanned = BATCHES_SCANNED.load(Ordering::Relaxed);
        assert!(scanned < 10_000, "{sql}: scanned {scanned} of 2 million batches");
    }
}

/// A partitioned join whose build side is empty in some participants (one
/// customer, whose key hashes to one of three): DataFusion's hash join
/// there never reads its probe side, and drops it. Those participants'
/// producers must still send the probe rows hashed to the others, and end
/// their streams: the one with the customer gets every order of it (each
/// share read 40 times over, so that the producers are still reading when
/// the joins drop them).
#[test]
fn a_join_empty_in_some_participants_still_feeds_the_others() {
    const TIMES: usize = 40;
    let sql = "SELECT count(*) AS n, sum(o_id) AS ids FROM {orders} JOIN customers ON o_cust = c_id WHERE c_id = 7";
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let once = text(&runtime.block_on(expected(tables(), &sql.replace("{orders}", "orders"), 1)));
    let ctx = leader(3, Fault::Repeat { times: TIMES });
    block_on(ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold = 0")).unwrap();
    block_on(ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0")).unwrap();
    let bytes = block_on(ship(&ctx, tables(), &sql.replace("{orders}", "faulty"))).unwrap();
    for round in 0..5 {
        let run = run_shipped(tables(), &bytes, 3, 16).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(
            run.explain.contains("mode=Partitioned"),
            "not a partitioned join:\n{}",
            run.explain
        );
        // Every order of customer 7, read TIMES times over.
        let got = text(&run.batches);
        let (n, ids) = (number(&once, 0) * TIMES as i64, number(&once, 1) * TIMES as i64);
        assert_eq!((number(&got, 0), number(&got, 1)), (n, ids), "round {round}:\n{got}");
        assert!(n > 0);
    }
}

/// The `column`th number in the one row of a pretty-printed result.
fn number(table: &str, column: usize) -> i64 {
    let row = table.lines().nth(3).expect("a row");
    row.split('|')
        .filter(|c| !c.trim().is_empty())
        .nth(column)
        .expect("the column")
        .trim()
        .parse()
        .expect("a number")
}

/// A cancel (the mesh abort, from another thread, as pgext does on query
/// cancel) during a long aggregate over the huge table ends every
/// participant promptly with the cancel's message.
#[test]
fn a_cancel_ends_a_running_query_promptly() {
    let sql = "SELECT o_cust, count(*) FROM faulty GROUP BY o_cust";
    let bytes = block_on(ship(&leader(3, Fault::Repeat { times: 100_000 }), tables(), sql)).unwrap();
    let codec = codec(tables());
    let cancel_after = Duration::from_millis(300);
    let started = Instant::now();
    let results = LocalMesh::new(3, 16, 1 << 16).unwrap().run(|node| {
        if node.id() == 0 {
            let handle = node.abort_handle();
            std::thread::spawn(move || {
                std::thread::sleep(cancel_after);
                handle.abort(57014, "canceling statement due to user request");
            });
        }
        execute(node, &codec, &bytes)
    });
    let elapsed = started.elapsed();
    for (p, result) in results.into_iter().enumerate() {
        let error = result.map(|_| ()).unwrap_err();
        assert!(
            matches!(&error, RuntimeError::Aborted { participant: 0, code: 57014, message } if message == "canceling statement due to user request"),
            "participant {p}: {error:?}"
        );
    }
    assert!(
        elapsed < cancel_after + Duration::from_secs(2),
        "cancel took {:?}",
        elapsed - cancel_after
    );
}
