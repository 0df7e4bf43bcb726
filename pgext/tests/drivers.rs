//! Real client drivers against weft, each run by the test against a
//! throwaway cluster, with weft forced and with weft off: psycopg 3 (from
//! PyPI, in the venv `scripts/setup.sh` makes), pgjdbc (Debian's, on
//! Debian's JDK) and psql with FETCH_COUNT. Each executes a query again
//! and again with a changing parameter (the drivers turn to server-side
//! prepared statements after five executions, and Postgres's plan cache
//! may then turn to a generic plan) and reads a result a batch of rows at a
//! time (a server-side cursor, a portal with a row limit, psql's cursor).
//! Every execution must be run by weft (each plan is read from the server
//! log, where auto_explain writes it) and return what stock Postgres
//! returns.

use std::path::PathBuf;
use std::process::Command;

use weft_pg_harness::explained::SALES;
use weft_pg_harness::Cluster;

/// A cluster listening on TCP too, logging every plan (auto_explain in
/// every session, with ANALYZE's lines), with the sales the clients read.
fn with_sales() -> Cluster {
    let cluster = Cluster::start_listening(&[
        ("session_preload_libraries", "auto_explain"),
        ("auto_explain.log_min_duration", "0"),
        ("auto_explain.log_analyze", "on"),
        ("auto_explain.log_timing", "off"),
        ("max_parallel_workers_per_gather", "2"),
    ]);
    cluster
        .connect()
        .batch_execute(&format!("CREATE EXTENSION weft; {SALES}"))
        .unwrap();
    cluster
}

/// The plans in the server log of queries whose text holds `marker`: for
/// each, whether weft ran it (a Weft scan, not handed back).
fn plans_run(cluster: &Cluster, marker: &str) -> Vec<bool> {
    cluster
        .log()
        .split("duration: ")
        .filter(|plan| plan.contains("Query Text:") && plan.contains(marker))
        .map(|plan| plan.contains("Custom Scan (Weft)") && !plan.contains("handed back"))
        .collect()
}

/// The workspace's target directory.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Runs `command`, requiring it to succeed; its standard output.
fn output_of(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?} (scripts/setup.sh installs the clients): {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Checks that `client`'s runs in both modes returned the same and that
/// weft ran every one of its `queries` executions in weft's mode (none in
/// stock's).
fn check(cluster: &Cluster, client: &str, run: impl Fn(&str) -> String, queries: usize) {
    let weft = run("weft");
    let stock = run("stock");
    assert!(weft.len() > 1000, "{client}: little output: {weft}");
    assert_eq!(weft, stock, "{client}: weft's answers differ from stock's");
    let ran = plans_run(cluster, &format!("/* {client} weft */"));
    assert_eq!(ran.len(), queries, "{client}: plans logged for weft's run: {ran:?}");
    assert!(
        ran.iter().all(|&by_weft| by_weft),
        "{client}: not every execution run by weft: {ran:?}"
    );
    let stock_ran = plans_run(cluster, &format!("/* {client} stock */"));
    assert!(
        stock_ran.iter().all(|&by_weft| !by_weft),
        "{client}: weft ran a query with weft off"
    );
}

/// psycopg 3: its automatic server-side preparation, a named cursor.
#[test]
fn psycopg_prepared_statements_and_named_cursors_are_taken() {
    let cluster = with_sales();
    let python = target_dir().join("clients/venv/bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/drivers/psycopg_client.py");
    let run = |mode: &str| {
        output_of(
            Command::new(&python)
                .arg(&script)
                .arg(cluster.socket_dir())
                .arg(cluster.port().to_string())
                .arg(mode),
        )
    };
    check(&cluster, "psycopg", run, 11);
}

/// pgjdbc: a PreparedStatement past prepareThreshold, setFetchSize in a
/// transaction.
#[test]
fn pgjdbc_prepared_statements_and_fetch_size_are_taken() {
    let cluster = with_sales();
    let classes = target_dir().join("clients/jdbc-classes");
    std::fs::create_dir_all(&classes).unwrap();
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/drivers/JdbcClient.java");
    let jar = "/usr/share/java/postgresql.jar";
    output_of(
        Command::new("javac")
            .args(["-cp", jar, "-d"])
            .arg(&classes)
            .arg(&source),
    );
    let classpath = format!("{jar}:{}", classes.display());
    let run = |mode: &str| {
        output_of(
            Command::new("java")
                .args(["-cp", &classpath, "JdbcClient"])
                .arg(cluster.port().to_string())
                .arg(mode),
        )
    };
    check(&cluster, "jdbc", run, 11);
}

/// psql with FETCH_COUNT, which reads a query's rows through a cursor a
/// hundred at a time.
#[test]
fn psql_fetch_count_is_taken() {
    let cluster = with_sales();
    let run = |mode: &str| {
        let setting = if mode == "weft" {
            "SET weft.force = on;"
        } else {
            "SET weft.enable = off;"
        };
        cluster.psql(&format!(
            "\\set FETCH_COUNT 100\n{setting}\n/* psql {mode} */ SELECT s.i, t.region, s.amount FROM sales s
               JOIN sales t ON t.i = s.i + 1 WHERE s.qty < 7 ORDER BY s.i;\n"
        ))
    };
    check(&cluster, "psql", run, 1);
}
