//! TPC-H through `weft.query` against stock Postgres, same cluster, same
//! data, same run: `WEFT_PG_PROFILE=release cargo bench -p weft --bench
//! tpch_pg` (or `make bench-pg`).
//!
//! Loads TPC-H at `WEFT_BENCH_SF` (default 1) into a throwaway cluster
//! (shared_buffers 4GB, work_mem 256MB, jit off, primary keys only), warms
//! the cache, then for each query runs stock Postgres with
//! max_parallel_workers_per_gather = `WEFT_BENCH_WORKERS` (default 1) and
//! weft.query with weft.workers the same, alternating, `WEFT_BENCH_REPS`
//! times (default 1), under a 300 s statement_timeout; prints per-query
//! times (best of the reps), the ratio and the geometric mean over the
//! queries both finish, and lists the others apart (`weft.enable` is off,
//! so that the plain SQL is stock Postgres's). Then the scan rate:
//! rows and MB per second per process for `count(*)` over lineitem (stock
//! Postgres's parallel seq scan against weft's heap-to-Arrow scan), and
//! for weft reading every lineitem column into Arrow.
//! `WEFT_BENCH_QUERIES` (e.g. `1,3,6`) picks queries; `WEFT_BENCH_QUERIES=none`
//! measures only the scan rate.

use std::time::{Duration, Instant};

use weft_pg_harness::postgres::Client;
use weft_pg_harness::tpch;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Best time of `reps` runs of `sql`, or None if one failed (timeout).
fn time(client: &mut Client, sql: &str) -> Option<Duration> {
    let started = Instant::now();
    match client.simple_query(sql) {
        Ok(_) => Some(started.elapsed()),
        Err(e) => {
            eprintln!(
                "  ({})",
                e.as_db_error().map_or(e.to_string(), |db| db.message().to_owned())
            );
            None
        }
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken from the command line.
    let reps: usize = env("WEFT_BENCH_REPS", 1);
    let (_cluster, mut client, workers, picked) = tpch::bench_setup();
    // The stock side is plain SQL: keep weft's planner hook off it
    // (weft.query runs either way).
    client.batch_execute("SET weft.enable = off").unwrap();

    println!("\n{workers} worker(s) besides the leader, both sides; best of {reps}\n");
    println!("{:>4} {:>12} {:>12} {:>8}", "q", "postgres ms", "weft ms", "ratio");
    let mut ratios = Vec::new();
    let mut apart = Vec::new();
    let scan_only = std::env::var("WEFT_BENCH_QUERIES").is_ok_and(|v| v == "none");
    for (number, sql) in tpch::queries() {
        if scan_only || picked.as_ref().is_some_and(|p| !p.contains(&number)) {
            continue;
        }
        let weft = tpch::through_weft(&mut client, &sql).unwrap();
        let (mut stock_best, mut weft_best): (Option<Duration>, Option<Duration>) = (None, None);
        let (mut stock_failed, mut weft_failed) = (false, false);
        for _ in 0..reps {
            if !stock_failed {
                match time(&mut client, &sql) {
                    Some(t) => stock_best = Some(stock_best.map_or(t, |b| b.min(t))),
                    None => stock_failed = true,
                }
            }
            if !weft_failed {
                match time(&mut client, &weft) {
                    Some(t) => weft_best = Some(weft_best.map_or(t, |b| b.min(t))),
                    None => weft_failed = true,
                }
            }
        }
        let show = |t: Option<Duration>, failed: bool| match (t, failed) {
            (Some(t), false) => format!("{:.1}", t.as_secs_f64() * 1e3),
            _ => "did not finish".to_string(),
        };
        match (stock_best, weft_best, stock_failed || weft_failed) {
            (Some(s), Some(w), false) => {
                let ratio = s.as_secs_f64() / w.as_secs_f64();
                ratios.push(ratio);
                println!(
                    "{number:>4} {:>12} {:>12} {ratio:>7.2}x",
                    show(Some(s), false),
                    show(Some(w), false)
                );
            }
            _ => {
                apart.push(number);
                println!(
                    "{number:>4} {:>12} {:>12} {:>8}",
                    show(stock_best, stock_failed),
                    show(weft_best, weft_failed),
                    "-"
                );
            }
        }
    }
    if !ratios.is_empty() {
        let geomean = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
        println!(
            "\ngeometric mean speedup over {} queries: {geomean:.2}x (weft faster when > 1)",
            ratios.len()
        );
    }
    if !apart.is_empty() {
        println!("not both finished (listed apart): {apart:?}");
    }

    // Scan rate per process.
    let rows: i64 = client.query_one("SELECT count(*) FROM lineitem", &[]).unwrap().get(0);
    let bytes: i64 = client
        .query_one("SELECT pg_relation_size('lineitem')", &[])
        .unwrap()
        .get(0);
    let processes = f64::from(workers + 1);
    println!(
        "\nscan rate over lineitem ({rows} rows, {} MB), per process:",
        bytes >> 20
    );
    let scans = [
        ("postgres count(*)", "SELECT count(*) FROM lineitem".to_string()),
        (
            "weft count(*)",
            "SELECT * FROM weft.query('SELECT count(*) FROM lineitem') AS t(n int8)".to_string(),
        ),
        (
            "weft, every column",
            "SELECT * FROM weft.query('SELECT count(l_orderkey), count(l_partkey), count(l_suppkey), count(l_linenumber), \
             count(l_quantity), count(l_extendedprice), count(l_discount), count(l_tax), count(l_returnflag), \
             count(l_linestatus), count(l_shipdate), count(l_commitdate), count(l_receiptdate), count(l_shipinstruct), \
             count(l_shipmode), count(l_comment) FROM lineitem') AS t(a int8, b int8, c int8, d int8, e int8, f int8, \
             g int8, h int8, i int8, j int8, k int8, l int8, m int8, n int8, o int8, p int8)"
                .to_string(),
        ),
    ];
    for (name, sql) in scans {
        let best = (0..3).filter_map(|_| time(&mut client, &sql)).min().unwrap();
        let seconds = best.as_secs_f64();
        println!(
            "  {name:<20} {:>8.1} ms  {:>6.2} M rows/s  {:>7.1} MB/s",
            seconds * 1e3,
            rows as f64 / seconds / processes / 1e6,
            bytes as f64 / seconds / processes / 1e6
        );
    }
}
