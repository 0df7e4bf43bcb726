//! TPC-H at scale factor 0.1, generated here (tpchgen-arrow): all 22
//! queries through LocalMesh with P = 1, 2 and 4 participants give the same
//! results as plain single-process DataFusion on the same tables.
//!
//! Money columns are decimals, so results compare exactly, in order (every
//! query's ORDER BY fixes its order, or it returns one row).

mod support;

use std::sync::OnceLock;

use support::spmd::{distributed, expected, text, Table};

fn tables() -> &'static [Table] {
    static TABLES: OnceLock<Vec<Table>> = OnceLock::new();
    TABLES.get_or_init(|| support::tpch::tables(0.1))
}

#[test]
fn tpch_sf01_matches_single_process_datafusion() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut failures = Vec::new();
    for (q, sql) in support::tpch::queries() {
        let want = text(&runtime.block_on(expected(tables(), &sql, 2)));
        for participants in [1usize, 2, 4] {
            match distributed(tables(), &sql, participants) {
                Ok((got, plan)) if text(&got) != want => failures.push(format!(
                    "Q{q} P={participants}: results differ\nwant:\n{want}\ngot:\n{}\nplan:\n{plan}",
                    text(&got)
                )),
                Ok(_) => {}
                Err(e) => failures.push(format!("Q{q} P={participants}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
