//! TPC-H in plain SQL, weft on against weft off, same cluster, same data,
//! same run: `WEFT_PG_PROFILE=release cargo bench -p weft --bench
//! tpch_sql` (or `make bench-sql`).
//!
//! Loads TPC-H at `WEFT_BENCH_SF` (default 1) into a throwaway cluster
//! (shared_buffers 4GB, work_mem 256MB, jit off, primary keys only) with
//! max_parallel_workers_per_gather = `WEFT_BENCH_WORKERS` (default 1),
//! warms the cache, then runs each query `WEFT_BENCH_REPS` times (default
//! 2: the first run of a query also warms its indexes) three ways, under a
//! 300 s statement_timeout (a query that times out is not run again):
//! - weft off (stock Postgres);
//! - weft on, default settings (the cost gate decides);
//! - weft forced (`weft.force`), to show what the gate turned down.
//!
//! Prints per query the stock plan's cost, the three best times, whether
//! weft took the query by default, the speedup with default settings and
//! whether its rows equal stock's; then the geometric mean over the queries
//! both finish, the queries slower than 0.9x, and the ones listed apart.
//! `WEFT_BENCH_QUERIES` (e.g. `1,3,6`) picks queries; `WEFT_BENCH_LOCALE`
//! (`en_US.UTF-8`, `icu:en-US`) loads a database of that collation;
//! `WEFT_BENCH_SET=reporting` runs the reporting queries over the same
//! tables instead of TPC-H's (`weft_pg_harness::reporting`, `make
//! bench-reporting`).

use std::time::{Duration, Instant};

use weft_pg_harness::postgres::{Client, SimpleQueryMessage};
use weft_pg_harness::{reporting, tpch};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

type Rows = Vec<Vec<Option<String>>>;

/// One run of `sql`: its time and rows, or None when it failed (timeout).
fn run(client: &mut Client, sql: &str) -> Option<(Duration, Rows)> {
    let started = Instant::now();
    match client.simple_query(sql) {
        Ok(messages) => {
            let elapsed = started.elapsed();
            let rows = messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(row) => {
                        Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect())
                    }
                    _ => None,
                })
                .collect();
            Some((elapsed, rows))
        }
        Err(e) => {
            eprintln!(
                "  ({})",
                e.as_db_error().map_or(e.to_string(), |db| db.message().to_owned())
            );
            None
        }
    }
}

/// Best of `reps` runs after `settings`; None when one did not finish.
fn best(client: &mut Client, settings: &str, sql: &str, reps: usize) -> Option<(Duration, Rows)> {
    client.batch_execute(settings).unwrap();
    let mut best: Option<(Duration, Rows)> = None;
    for _ in 0..reps {
        let (time, rows) = run(client, sql)?;
        if best.as_ref().is_none_or(|(b, _)| time < *b) {
            best = Some((time, rows));
        }
    }
    best
}

fn explain(client: &mut Client, sql: &str) -> String {
    let rows = run(client, &format!("EXPLAIN (FORMAT JSON) {sql}")).unwrap().1;
    rows.into_iter().flatten().flatten().collect()
}

/// The stock plan's total cost, from its JSON EXPLAIN.
fn stock_cost(client: &mut Client, sql: &str) -> f64 {
    client.batch_execute("SET weft.enable = off").unwrap();
    let plan = explain(client, sql);
    let at = plan.find("\"Total Cost\": ").expect("a total cost") + "\"Total Cost\": ".len();
    let digits: String = plan[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().unwrap()
}

const OFF: &str = "SET weft.enable = off; SET weft.force = off";
const ON: &str = "SET weft.enable = on; SET weft.force = off";
const FORCED: &str = "SET weft.enable = on; SET weft.force = on";

fn main() {
    // `cargo bench` passes --bench; nothing else is taken from the command line.
    let reps: usize = env("WEFT_BENCH_REPS", 2);
    let (_cluster, mut client, workers, picked) = tpch::bench_setup();
    let min_cost = weft_pg_harness::setting(&mut client, "weft.min_cost");
    let ratio = weft_pg_harness::setting(&mut client, "weft.scan_cost_ratio");
    println!(
        "\n{workers} worker(s) besides the leader, both sides; weft.min_cost = {min_cost}, \
         weft.scan_cost_ratio = {ratio}; best of {reps}\n"
    );
    println!(
        "{:>4} {:>12} {:>12} {:>12} {:>12} {:>6} {:>8} {:>6}",
        "q", "stock cost", "off ms", "on ms", "forced ms", "taken", "speedup", "same"
    );
    let ms = |r: &Option<(Duration, Rows)>| match r {
        Some((t, _)) => format!("{:.1}", t.as_secs_f64() * 1e3),
        None => "DNF".to_string(),
    };
    let (mut ratios, mut slow, mut apart, mut differ) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let queries = match std::env::var("WEFT_BENCH_SET").as_deref() {
        Ok("reporting") => reporting::queries(),
        Ok("tpch") | Err(_) => tpch::queries(),
        Ok(other) => panic!("WEFT_BENCH_SET: no query set {other:?} (tpch, reporting)"),
    };
    for (number, sql) in queries {
        if picked.as_ref().is_some_and(|p| !p.contains(&number)) {
            continue;
        }
        let sql = sql.trim().trim_end_matches(';').to_string();
        let cost = stock_cost(&mut client, &sql);
        client.batch_execute(ON).unwrap();
        let taken = explain(&mut client, &sql).contains("\"Custom Plan Provider\": \"Weft\"");
        let off = best(&mut client, OFF, &sql, reps);
        let on = best(&mut client, ON, &sql, reps);
        let forced = if taken {
            None
        } else {
            best(&mut client, FORCED, &sql, reps)
        };
        let forced_ms = if taken { "=on".to_string() } else { ms(&forced) };
        let same = match (&off, &on) {
            (Some((_, a)), Some((_, b))) => a == b,
            _ => true,
        };
        if !same {
            differ.push(number);
        }
        match (&off, &on) {
            (Some((s, _)), Some((w, _))) => {
                let ratio = s.as_secs_f64() / w.as_secs_f64();
                ratios.push(ratio);
                if ratio < 0.9 {
                    slow.push(number);
                }
                println!(
                    "{number:>4} {cost:>12.0} {:>12} {:>12} {forced_ms:>12} {:>6} {ratio:>7.2}x {same:>6}",
                    ms(&off),
                    ms(&on),
                    if taken { "yes" } else { "no" }
                );
            }
            _ => {
                apart.push(number);
                println!(
                    "{number:>4} {cost:>12.0} {:>12} {:>12} {forced_ms:>12} {:>6} {:>8} {same:>6}",
                    ms(&off),
                    ms(&on),
                    if taken { "yes" } else { "no" },
                    "-"
                );
            }
        }
    }
    if !ratios.is_empty() {
        let geomean = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
        println!(
            "\ngeometric mean speedup, weft on over off, {} queries: {geomean:.2}x",
            ratios.len()
        );
    }
    println!("slower than 0.9x: {slow:?}");
    println!("not both finished (listed apart): {apart:?}");
    println!("results differing from stock: {differ:?}");
}
