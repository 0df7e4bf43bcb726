//! `make demo`, Postgres part: builds and installs weft into the system's
//! PostgreSQL 15 and starts a throwaway cluster with weft preloaded. Then:
//!
//! 1. `weft.mesh_bench` with 0, 1 and 2 parallel workers: per-edge
//!    throughput through the DSM mesh between real Postgres processes;
//! 2. TPC-H generated locally and loaded with COPY; its queries in plain
//!    SQL with weft on (default settings: the planner hook and its cost
//!    gate decide) and off: both times, which ones weft took, whether the
//!    rows are the same, and EXPLAIN ANALYZE of one of them;
//! 3. a few of them through `weft.query` (DataFusion's SQL) beside stock
//!    Postgres, and `weft.explain` of one.
//!
//! `WEFT_DEMO_MB` sets the megabytes per edge (default 256),
//! `WEFT_DEMO_SF` the TPC-H scale factor (default 0.1).

use std::time::Instant;

use weft_pg_harness::postgres::{Client, SimpleQueryMessage};
use weft_pg_harness::{tpch, Cluster};

/// The TPC-H queries shown.
const QUERIES: [usize; 5] = [1, 3, 6, 12, 18];

fn main() {
    let megabytes: i32 = env("WEFT_DEMO_MB", 256);
    let scale: f64 = env("WEFT_DEMO_SF", 0.1);
    println!("building and installing weft, starting a throwaway PostgreSQL 15 cluster...");
    let cluster = Cluster::start_with(&[("shared_buffers", "1GB"), ("work_mem", "64MB"), ("jit", "off")]);
    let mut client = cluster.connect();
    client
        .batch_execute("CREATE EXTENSION weft")
        .expect("CREATE EXTENSION weft");
    let version: String = client.query_one("SELECT version()", &[]).unwrap().get(0);
    println!("{version}\n");
    mesh(&mut client, megabytes);
    load(&mut client, scale);
    plain_sql(&mut client);
    queries(&mut client);
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn mesh(client: &mut Client, megabytes: i32) {
    println!("== 1. the mesh: weft.mesh_bench ==\n");
    for workers in 0..=2 {
        let sql = format!("SELECT * FROM weft.mesh_bench({workers}, {megabytes}, 64)");
        println!("{sql};");
        let started = Instant::now();
        let rows = client.query(&sql, &[]).expect("mesh_bench");
        println!(
            "{:>7} {:>9} {:>8} {:>12} {:>8} {:>7} {:>9}",
            "sender", "receiver", "frames", "bytes", "seconds", "GB/s", "verified"
        );
        for row in &rows {
            let (sender, receiver): (i32, i32) = (row.get(0), row.get(1));
            let (frames, bytes): (i64, i64) = (row.get(2), row.get(3));
            let (seconds, gbps): (f64, f64) = (row.get(4), row.get(5));
            let verified: bool = row.get(6);
            println!("{sender:>7} {receiver:>9} {frames:>8} {bytes:>12} {seconds:>8.3} {gbps:>7.2} {verified:>9}");
        }
        println!("({} participants, {:.2?} in all)\n", workers + 1, started.elapsed());
    }
}

fn load(client: &mut Client, scale: f64) {
    println!("== TPC-H at scale factor {scale} ==\n");
    let started = Instant::now();
    tpch::load(client, scale);
    println!("generated and loaded in {:.1?}", started.elapsed());
    let workers: i64 = client
        .query_one("SELECT current_setting('max_parallel_workers_per_gather')::int8", &[])
        .unwrap()
        .get(0);
    println!("weft.workers = -1: weft uses max_parallel_workers_per_gather = {workers} workers besides the leader\n");
}

fn plain_sql(client: &mut Client) {
    println!("== 2. TPC-H in plain SQL, weft on and off ==\n");
    let min_cost = weft_pg_harness::setting(client, "weft.min_cost");
    let ratio = weft_pg_harness::setting(client, "weft.scan_cost_ratio");
    println!(
        "weft run with weft.force = on; \"default\" says whether weft would take the query\n\
         with its default settings (weft.min_cost = {min_cost}, weft.scan_cost_ratio = {ratio};\n\
         at this scale most stock plans cost less than weft.min_cost)\n"
    );
    println!(
        "{:>4} {:>12} {:>12} {:>8}  {:>8} {:>5}",
        "q", "postgres ms", "weft ms", "speedup", "default", "same"
    );
    for (number, sql) in tpch::queries() {
        // Q17 and Q20 take minutes on stock Postgres without an index on
        // lineitem(l_partkey, l_suppkey); `make bench-sql` runs them.
        if number == 17 || number == 20 {
            continue;
        }
        let sql = sql.trim().trim_end_matches(';');
        client
            .batch_execute("SET weft.enable = on; SET weft.force = off")
            .unwrap();
        let plan = timed(client, &format!("EXPLAIN {sql}")).1;
        let by_default = plan.iter().flatten().any(|line| line.contains("Custom Scan (Weft)"));
        client.batch_execute("SET weft.enable = off").unwrap();
        let (off_time, off_rows) = timed(client, sql);
        client
            .batch_execute("SET weft.enable = on; SET weft.force = on")
            .unwrap();
        let (on_time, on_rows) = timed(client, sql);
        println!(
            "{number:>4} {off_time:>12.1} {on_time:>12.1} {:>7.2}x  {:>8} {:>5}",
            off_time / on_time,
            if by_default { "weft" } else { "postgres" },
            if on_rows == off_rows { "yes" } else { "NO" }
        );
    }
    let sql = tpch::queries()[2].1.trim().trim_end_matches(';').to_string();
    println!("\nSET weft.force = on; EXPLAIN ANALYZE <Q03>;");
    for line in timed(client, &format!("EXPLAIN ANALYZE {sql}")).1 {
        println!("  {}", line.join(""));
    }
    client.batch_execute("SET weft.force = off").unwrap();
    println!();
}

fn queries(client: &mut Client) {
    println!("== 3. DataFusion SQL through weft.query ==\n");
    let all = tpch::queries();
    for number in QUERIES {
        let sql = &all[number - 1].1;
        let weft = tpch::through_weft(client, sql).expect("prepare");
        let (stock_time, stock_rows) = timed(client, sql);
        let (weft_time, rows) = timed(client, &weft);
        assert_eq!(
            rows.len(),
            stock_rows.len(),
            "Q{number}: weft and Postgres disagree on the row count"
        );
        println!(
            "Q{number:02}: stock Postgres {stock_time:>8.1} ms   weft.query {weft_time:>8.1} ms   ({:.2}x)   {} rows",
            stock_time / weft_time,
            rows.len()
        );
        for row in rows.iter().take(3) {
            println!("      {}", row.join(" | "));
        }
        if rows.len() > 3 {
            println!("      ...");
        }
    }
    let sql = &all[2].1;
    println!("\nSELECT * FROM weft.explain($$<Q03>$$, run => true);");
    for row in client
        .query("SELECT * FROM weft.explain($1, run => true)", &[sql])
        .expect("weft.explain")
    {
        println!("  {}", row.get::<_, String>(0));
    }
}

/// Runs `sql`; milliseconds taken and the rows as text.
fn timed(client: &mut Client, sql: &str) -> (f64, Vec<Vec<String>>) {
    let started = Instant::now();
    let messages = client.simple_query(sql).unwrap_or_else(|e| {
        let why = e.as_db_error().map_or(e.to_string(), |db| db.message().to_owned());
        panic!("{sql}: {why}")
    });
    let millis = started.elapsed().as_secs_f64() * 1e3;
    let rows = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").trim_end().to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    (millis, rows)
}
