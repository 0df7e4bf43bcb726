//! A dashboard loop through a real driver: `make bench-dashboard`.
//!
//! Loads TPC-H (as `tpch_sql` does: `WEFT_BENCH_SF`, `WEFT_BENCH_WORKERS`)
//! into a throwaway cluster, then runs `dashboard.py` beside this file:
//! five TPC-H queries with a parameter, each executed
//! `WEFT_BENCH_EXECUTIONS` times (default 20) with changing values through
//! psycopg 3 (the venv `scripts/setup.sh` makes), weft off and on with
//! default settings, prepared (psycopg prepares on the server after five
//! executions; Postgres's plan cache may then keep a generic plan) and as
//! plain text. Prints each query's mean time per execution every way, how
//! many executions weft ran, and the geometric means; fails if any way's
//! rows differ or weft missed an execution after the first.

use std::process::Command;

use weft_pg_harness::tpch;

fn main() {
    let executions: usize = std::env::var("WEFT_BENCH_EXECUTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let (cluster, _client, workers, _) = tpch::bench_setup();
    println!("\n{workers} worker(s) besides the leader, both sides; {executions} executions of each query each way\n");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let output = Command::new(target.join("clients/venv/bin/python"))
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/dashboard.py"))
        .arg(cluster.socket_dir())
        .arg(cluster.port().to_string())
        .arg(executions.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the dashboard client (scripts/setup.sh installs psycopg): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    assert!(
        output.status.success(),
        "the dashboard client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figures = stdout.lines().last().unwrap_or_default();
    assert!(
        !figures.contains("\"same\": false"),
        "a way's rows differ from another's"
    );
    for taken in figures.split("\"taken\": ").skip(1) {
        let count: usize = taken.split(',').next().and_then(|n| n.trim().parse().ok()).unwrap_or(0);
        assert!(
            count + 1 >= executions,
            "weft ran {count} of {executions} executions of a prepared query"
        );
    }
}
