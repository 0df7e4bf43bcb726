//! `make demo`, Postgres part: builds and installs weft into the system's
//! PostgreSQL 15, starts a throwaway cluster with weft preloaded, and runs
//! `weft.mesh_bench` with 0, 1 and 2 parallel workers, printing per-edge
//! throughput through the DSM mesh between real Postgres processes.
//!
//! `WEFT_DEMO_MB` sets the megabytes per edge (default 256).

use std::time::Instant;

use weft_pg_harness::Cluster;

fn main() {
    let megabytes: i32 = std::env::var("WEFT_DEMO_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    println!("building and installing weft, starting a throwaway PostgreSQL 15 cluster...");
    let cluster = Cluster::start();
    let mut client = cluster.connect();
    client
        .batch_execute("CREATE EXTENSION weft")
        .expect("CREATE EXTENSION weft");
    let version: String = client.query_one("SELECT version()", &[]).unwrap().get(0);
    println!("{version}\n");
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
