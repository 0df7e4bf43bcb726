//! The function bridge: Postgres functions DataFusion has no exact
//! counterpart for, evaluated by Postgres itself in every participant,
//! answer as stock Postgres answers (weft forced on against weft off, in
//! the same session), errors included; those the bridge must not carry
//! stay with Postgres.

use std::time::{Duration, Instant};
use weft_pg_harness::differential::{both_ways, check_both_ways, taken};
use weft_pg_harness::postgres::Client;

use weft_pg_harness::{text_rows, Cluster};

/// A cluster with weft, a table of 20,000 rows (NULLs among its text),
/// and a session that spreads queries over two workers.
fn with_table() -> (Cluster, Client) {
    let cluster = Cluster::start();
    let mut client = cluster.connect();
    client
        .batch_execute(
            "CREATE EXTENSION weft;
             CREATE TABLE t (i int, s text, d date, ts timestamp, n numeric(12,2));
             INSERT INTO t SELECT g, CASE WHEN g % 13 = 0 THEN NULL ELSE 'Name ' || g END,
                                  date '2020-01-01' + g, timestamp '2020-01-01' + g * interval '37 minutes',
                                  g * 1.25
                             FROM generate_series(1, 20000) g;
             ANALYZE t;
             SET max_parallel_workers_per_gather = 2",
        )
        .unwrap();
    (cluster, client)
}

#[test]
fn functions_without_a_datafusion_counterpart_answer_as_postgres() {
    let (_cluster, mut client) = with_table();
    check_both_ways(
        &mut client,
        &[
            (
                true,
                "SELECT count(DISTINCT upper(s)), max(length(lower(s) || '!')) FROM t",
            ),
            (true, "SELECT sum(length(s)), max(i % 7), min(i % 7) FROM t"),
            (
                true,
                "SELECT i % 7 AS k, count(*), sum(length(s || 'x')) FROM t GROUP BY i % 7 ORDER BY k",
            ),
            (
                true,
                "SELECT date_trunc('month', ts) AS m, count(*) FROM t GROUP BY 1 ORDER BY 1",
            ),
            (true, "SELECT count(*) FROM t WHERE replace(s, 'Name', 'N') LIKE 'N 1%'"),
            (
                true,
                "SELECT count(*), sum(i) FROM t WHERE split_part(s, ' ', 2) = '1234'",
            ),
            (
                true,
                "SELECT md5(s), count(*) FROM t WHERE i < 50 GROUP BY 1 ORDER BY 2, 1 LIMIT 3",
            ),
            (
                true,
                "SELECT count(*) FROM t WHERE left(s, 6) = 'Name 9' AND position('9' IN s) > 0",
            ),
            // Volatile functions stay with Postgres.
            (false, "SELECT count(*) FROM t WHERE random() < 2"),
        ],
    );
}

/// A Postgres ERROR inside a bridged function, raised in whichever
/// participant meets it, reaches the client with Postgres's own SQLSTATE
/// and message, and the session goes on.
#[test]
fn an_error_inside_a_bridged_function_is_postgres_s() {
    let (_cluster, mut client) = with_table();
    check_both_ways(
        &mut client,
        &[
            (true, "SELECT sum(i % (i - i)) FROM t"),
            (true, "SELECT count(*) FROM t WHERE repeat(s, i - 20001) = ''"),
        ],
    );
    let error = text_rows(&mut client, "SELECT sum(i % (i - i)) FROM t").unwrap_err();
    assert!(error.contains("division by zero"), "{error}");
    assert_eq!(
        text_rows(&mut client, "SELECT count(*) FROM t").unwrap()[0][0].as_deref(),
        Some("20000")
    );
}

/// A function the user may not execute is left to Postgres, which raises
/// its own permission error; a function in SQL that Postgres does not
/// inline stays with Postgres's executor; `weft.function_bridge = off` leaves every bridged call to
/// Postgres.
#[test]
fn the_bridge_keeps_postgres_s_rules() {
    let (cluster, mut client) = with_table();
    client
        .batch_execute(
            "REVOKE EXECUTE ON FUNCTION md5(text) FROM PUBLIC;
             CREATE FUNCTION shout(text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
                 AS 'SELECT upper($1) FROM (VALUES (1)) v';
             CREATE ROLE reader LOGIN;
             GRANT SELECT ON t TO reader;
             GRANT USAGE ON SCHEMA weft TO reader",
        )
        .unwrap();
    check_both_ways(
        &mut client,
        &[
            (true, "SELECT count(DISTINCT md5(s)) FROM t"),
            (false, "SELECT count(DISTINCT shout(s)) FROM t"),
        ],
    );
    let mut reader = cluster.connect_to("postgres", "reader");
    reader
        .batch_execute("SET max_parallel_workers_per_gather = 2; SET weft.force = on")
        .unwrap();
    // Postgres refuses it as the plan starts, with weft on or off alike.
    let (weft, stock) = both_ways(&mut reader, "SELECT count(DISTINCT md5(s)) FROM t");
    assert_eq!(weft, stock);
    let denied = weft.unwrap_err();
    assert!(denied.contains("permission denied for function md5"), "{denied}");
    // A bridged call is taken by default beside grouping or joins, where
    // weft gains most; a query that only scans, filters and aggregates
    // takes it only under weft.force.
    client
        .batch_execute(
            "SET weft.force = off; SET weft.explain_fallback = on; SET weft.min_cost = 0;
             SET weft.scan_cost_ratio = 0",
        )
        .unwrap();
    let plan: Vec<String> = text_rows(&mut client, "EXPLAIN SELECT max(upper(s)) FROM t WHERE i > 0")
        .unwrap()
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    assert!(
        plan.iter()
            .any(|l| l.contains("through the function bridge and neither joins nor groups")),
        "{plan:#?}"
    );
    assert!(taken(&mut client, "SELECT count(DISTINCT upper(s)) FROM t"));
    assert!(taken(&mut client, "SELECT upper(s), count(*) FROM t GROUP BY 1"));
    // EXPLAIN names what Postgres computes inside weft's plan.
    client.batch_execute("SET weft.force = on").unwrap();
    let plan = text_rows(&mut client, "EXPLAIN SELECT count(DISTINCT upper(s)) FROM t")
        .unwrap()
        .into_iter()
        .flatten()
        .flatten()
        .collect::<Vec<String>>()
        .join("\n");
    assert!(plan.contains("pg:upper("), "{plan}");
    client.batch_execute("SET weft.force = off").unwrap();
    // The same settings take a query without a bridged call.
    assert!(taken(&mut client, "SELECT count(*), sum(i) FROM t WHERE i > 0"));
    client
        .batch_execute("SET weft.force = on; SET weft.function_bridge = off")
        .unwrap();
    check_both_ways(&mut client, &[(false, "SELECT count(DISTINCT upper(s)) FROM t")]);
}

/// A security_barrier view's own conditions hide rows from what the
/// querier adds: a function that is not leakproof must never see them (a
/// division by zero on a hidden row would reveal it). weft leaves such
/// views to Postgres, which evaluates the barrier's conditions first: the
/// same notices and the same answers, and no error from a hidden row.
#[test]
fn a_security_barrier_view_hides_its_rows_from_functions() {
    let (cluster, mut client) = with_table();
    client
        .batch_execute(
            "CREATE VIEW visible WITH (security_barrier) AS SELECT i, s FROM t WHERE i % 13 <> 0;
             CREATE FUNCTION peek(int) RETURNS bool LANGUAGE plpgsql COST 0.0001 PARALLEL SAFE
                 AS $$ BEGIN RAISE NOTICE 'saw %', $1; RETURN true; END $$;
             CREATE ROLE viewer LOGIN;
             GRANT SELECT ON visible TO viewer;
             GRANT USAGE ON SCHEMA weft TO viewer",
        )
        .unwrap();
    let mut viewer = cluster.connect_to("postgres", "viewer");
    viewer.batch_execute("SET max_parallel_workers_per_gather = 2").unwrap();
    check_both_ways(
        &mut viewer,
        &[
            (false, "SELECT count(*), sum(i) FROM visible WHERE i % (i % 13) = 0"),
            (false, "SELECT count(*) FROM visible WHERE upper(s) LIKE 'NAME 2%'"),
            (false, "SELECT count(*) FROM visible WHERE i < 40 AND peek(i)"),
        ],
    );
    // The notices name only visible rows, weft on or off.
    let (mut noticed, notices) = cluster.connect_collecting_notices_as("viewer");
    for setting in ["SET weft.force = on", "SET weft.enable = off"] {
        noticed.batch_execute(setting).unwrap();
        noticed
            .batch_execute("SELECT count(*) FROM visible WHERE i < 40 AND peek(i)")
            .unwrap();
    }
    let seen = notices.lock().unwrap().clone();
    assert_eq!(seen.len(), 2 * 36, "{seen:#?}");
    assert!(
        seen.iter()
            .all(|n| !n.ends_with(" 13") && !n.ends_with(" 26") && !n.ends_with(" 39")),
        "{seen:#?}"
    );
}

/// A cancel while participants are deep in bridged calls ends the query
/// within a second, with Postgres's message, and the session goes on.
#[test]
fn a_cancel_ends_a_long_bridged_query_within_a_second() {
    let (cluster, mut client) = with_table();
    client.batch_execute("SET weft.force = on").unwrap();
    let sql = "SELECT count(*) FROM t a, t b WHERE a.i <= 6000 AND b.i <= 6000 AND md5(a.s || b.s) < '0'";
    assert!(taken(&mut client, sql));
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let runner = std::thread::spawn(move || {
        let result = client.simple_query(sql).map(|_| ());
        (client, result)
    });
    std::thread::sleep(Duration::from_millis(1500));
    let mut other = cluster.connect();
    let cancelled = Instant::now();
    other.execute("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
    let (mut client, result) = runner.join().unwrap();
    let took = cancelled.elapsed();
    let error = result.expect_err("the query should have been cancelled");
    let message = error
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_else(|| error.to_string());
    assert_eq!(message, "canceling statement due to user request");
    assert!(took < Duration::from_secs(1), "the cancel took {took:?}");
    assert_eq!(
        text_rows(&mut client, "SELECT count(*) FROM t").unwrap()[0][0].as_deref(),
        Some("20000")
    );
    // No worker goes on computing for the cancelled query (a worker's
    // process title names its leader; pg_stat_activity may no longer list
    // a worker whose leader has moved on).
    let title = format!("parallel worker for PID {pid}");
    let workers = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
            .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(&title))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    while workers() > 0 {
        assert!(
            Instant::now() < deadline,
            "workers still running a second after the cancel returned"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
