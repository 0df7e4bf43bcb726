//! TPC-H through weft's SPMD plans against single-process DataFusion,
//! side by side in one run.
//!
//! The tables are generated in memory (tpchgen-arrow, scale factor 1 by
//! default). Per query, DataFusion with `target_partitions = 2` on a
//! 2-thread tokio runtime, against weft: the leader plans for 2
//! participants and encodes the plan, and a LocalMesh of 2 participants
//! (threads standing in for Postgres processes) decodes and runs it,
//! exchanging Arrow batches through the mesh. Both times include planning;
//! weft's also includes encoding the plan and starting its participants.
//! Runs alternate between the two, and each query reports the median of
//! `WEFT_BENCH_REPS` runs (default 3) after one warm-up run of each, whose
//! results are compared.
//!
//! Target: weft's geometric mean at most 1.25x DataFusion's.
//!
//! Run: `cargo bench -p weft-benches --bench tpch` (`WEFT_BENCH_SF=0.1`
//! for a quick run, `WEFT_BENCH_QUERIES=10,18` for some queries only,
//! `WEFT_BENCH_EXPLAIN=1` to print each query's SPMD plan with the
//! metrics of its warm-up run).

#[path = "../../runtime/tests/support/spmd.rs"]
#[allow(dead_code)] // test support: the benchmark uses part of it
mod spmd;
#[path = "../../runtime/tests/support/tpch.rs"]
mod tpch;

use std::sync::OnceLock;
use std::time::Instant;

use spmd::{context, expected, run_shipped, ship_sized, text, Table};

const PARTICIPANTS: usize = 2;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn tables() -> &'static [Table] {
    static TABLES: OnceLock<Vec<Table>> = OnceLock::new();
    TABLES.get_or_init(|| {
        let scale = env("WEFT_BENCH_SF", 1.0);
        let started = Instant::now();
        let tables = tpch::tables(scale);
        let rows: usize = tables.iter().flat_map(|t| &t.batches).map(|b| b.num_rows()).sum();
        println!("TPC-H SF{scale}: {rows} rows generated in {:.1?}", started.elapsed());
        tables
    })
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let reps = env("WEFT_BENCH_REPS", 3usize).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(PARTICIPANTS)
        .build()
        .expect("runtime");
    tables();
    let datafusion = |sql: &str| {
        let started = Instant::now();
        let batches = runtime.block_on(expected(tables(), sql, PARTICIPANTS));
        (batches, started.elapsed().as_secs_f64())
    };
    let weft = |sql: &str| {
        let started = Instant::now();
        let leader = context(tables(), PARTICIPANTS, true);
        let (bytes, exchanges) = runtime.block_on(ship_sized(&leader, tables(), sql)).expect("plan");
        let run = run_shipped(tables(), &bytes, PARTICIPANTS, exchanges).expect("run");
        (run, started.elapsed().as_secs_f64())
    };
    // Which queries to run: all, or a comma-separated list of numbers.
    let selected: Option<Vec<usize>> = std::env::var("WEFT_BENCH_QUERIES")
        .ok()
        .map(|list| list.split(',').filter_map(|q| q.trim().parse().ok()).collect());
    let explain = std::env::var_os("WEFT_BENCH_EXPLAIN").is_some();

    println!(
        "\n{:>5} {:>16} {:>10} {:>7} {:>6}",
        "query", "DataFusion (2)", "weft (2)", "ratio", "same"
    );
    let mut log_ratio_sum = 0.0;
    let mut count = 0;
    for (q, sql) in tpch::queries() {
        if selected.as_ref().is_some_and(|s| !s.contains(&q)) {
            continue;
        }
        let (want, _) = datafusion(&sql);
        let (got, _) = weft(&sql);
        if explain {
            let analyzed: datafusion::error::Result<String> = runtime.block_on(async {
                let ctx = context(tables(), PARTICIPANTS, false);
                let plan = ctx.sql(&format!("EXPLAIN ANALYZE {sql}")).await?.collect().await?;
                Ok(text(&plan))
            });
            println!("Q{q}, DataFusion:\n{}", analyzed.expect("explain"));
            println!("Q{q}, weft:\n{}", got.explain);
        }
        let same = text(&want) == text(&got.batches);
        let (mut df_times, mut weft_times) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            df_times.push(datafusion(&sql).1);
            weft_times.push(weft(&sql).1);
        }
        let (df, wf) = (median(df_times), median(weft_times));
        let ratio = wf / df;
        log_ratio_sum += ratio.ln();
        count += 1;
        println!(
            "{:>5} {:>14.1}ms {:>8.1}ms {:>6.2}x {:>6}",
            format!("Q{q}"),
            df * 1e3,
            wf * 1e3,
            ratio,
            if same { "yes" } else { "NO" }
        );
    }
    println!(
        "\ngeometric mean of weft / DataFusion over {count} queries: {:.3}x (target: at most 1.25x)",
        (log_ratio_sum / count as f64).exp()
    );
}
