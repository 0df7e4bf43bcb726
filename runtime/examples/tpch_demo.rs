//! `make demo`, second part: TPC-H generated in memory, all 22 queries run
//! by weft's SPMD plans across 2 participants (threads standing in for
//! Postgres processes, exchanging Arrow batches through the mesh) and by
//! plain single-process DataFusion with 2 partitions; results compared, times
//! printed, and one distributed plan shown.
//!
//! `WEFT_DEMO_SF` sets the scale factor (default 0.1).

#[path = "../tests/support/spmd.rs"]
#[allow(dead_code)] // test support: the demo uses part of it
mod spmd;
#[path = "../tests/support/tpch.rs"]
mod tpch;

use std::sync::OnceLock;
use std::time::Instant;

use spmd::{distributed, expected, text, Table};

const PARTICIPANTS: usize = 2;

fn tables() -> &'static [Table] {
    static TABLES: OnceLock<Vec<Table>> = OnceLock::new();
    TABLES.get_or_init(|| {
        let scale = std::env::var("WEFT_DEMO_SF")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.1);
        let started = Instant::now();
        let tables = tpch::tables(scale);
        let rows: usize = tables.iter().flat_map(|t| &t.batches).map(|b| b.num_rows()).sum();
        println!(
            "TPC-H SF{scale}: {rows} rows generated in memory in {:.1?}\n",
            started.elapsed()
        );
        tables
    })
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(PARTICIPANTS)
        .build()
        .expect("runtime");
    tables();
    println!(
        "{:>5} {:>6} {:>14} {:>16} {:>7}",
        "query", "rows", "weft (2 part.)", "DataFusion (2)", "same"
    );
    let mut shown = None;
    let (mut weft_total, mut df_total) = (0.0, 0.0);
    for (q, sql) in tpch::queries() {
        let started = Instant::now();
        let want = runtime.block_on(expected(tables(), &sql, PARTICIPANTS));
        let df = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let result = distributed(tables(), &sql, PARTICIPANTS);
        let weft = started.elapsed().as_secs_f64();
        match result {
            Ok((got, plan)) => {
                let same = text(&got) == text(&want);
                let rows: usize = got.iter().map(|b| b.num_rows()).sum();
                println!(
                    "{:>5} {:>6} {:>12.1}ms {:>14.1}ms {:>7}",
                    format!("Q{q}"),
                    rows,
                    weft * 1e3,
                    df * 1e3,
                    if same { "yes" } else { "NO" }
                );
                weft_total += weft;
                df_total += df;
                if q == 3 {
                    shown = Some((got, plan));
                }
            }
            Err(e) => println!("{:>5} failed: {e}", format!("Q{q}")),
        }
    }
    println!(
        "\nall 22: weft {:.0} ms, DataFusion {:.0} ms (weft's time includes starting its participants)",
        weft_total * 1e3,
        df_total * 1e3
    );
    if let Some((result, plan)) = shown {
        println!("\nQ3 as weft runs it (every participant executes this plan on its share):\n{plan}");
        println!("Q3 result:\n{}", text(&result));
    }
}
