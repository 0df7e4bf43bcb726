//! A TPC-H cluster that outlives the program, for measuring two settings
//! side by side by hand: `WEFT_PG_PROFILE=release cargo run --release -p
//! weft --example bench_cluster` loads TPC-H at `WEFT_BENCH_SF` (default 1)
//! into a cluster set up as the benchmarks' (`tpch::bench_setup`), leaves
//! it running and prints how to reach and stop it.
//!
//! The server preloads the installed `weft.so`: after reinstalling weft,
//! restart the server (`pg_ctl restart`) for it to load the new one.

use weft_pg_harness::tpch;

fn main() {
    let (cluster, _client, _workers, _picked) = tpch::bench_setup();
    let dir = cluster.keep();
    let dir = dir.display();
    println!("cluster left running in {dir}");
    println!("  connect: psql -h {dir}/sock -p 5432 -U postgres");
    println!(
        "  restart: runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D {dir}/data -l {dir}/log -w restart"
    );
    println!(
        "  stop:    runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D {dir}/data -w stop && rm -rf {dir}"
    );
}
