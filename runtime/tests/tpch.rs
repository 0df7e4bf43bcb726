//! TPC-H at scale factor 0.1, generated here (tpchgen-arrow): all 22
//! queries through LocalMesh with P = 1, 2 and 4 participants give the same
//! results as plain single-process DataFusion on the same tables.
//!
//! Money columns are decimals, so results compare exactly, in order (every
//! query's ORDER BY fixes its order, or it returns one row).

mod support;

use std::sync::OnceLock;

use arrow_array::RecordBatch;
use support::spmd::{distributed, expected, text, Table};
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator, PartSuppGenerator,
    RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow, SupplierArrow,
};

const SCALE: f64 = 0.1;
const BATCH: usize = 8192;

fn table(name: &'static str, batches: impl Iterator<Item = RecordBatch>) -> Table {
    let batches: Vec<RecordBatch> = batches.collect();
    Table {
        name,
        schema: batches[0].schema(),
        batches,
    }
}

fn tables() -> &'static [Table] {
    static TABLES: OnceLock<Vec<Table>> = OnceLock::new();
    TABLES.get_or_init(|| {
        vec![
            table(
                "nation",
                NationArrow::new(NationGenerator::new(SCALE, 1, 1)).with_batch_size(BATCH),
            ),
            table(
                "region",
                RegionArrow::new(RegionGenerator::new(SCALE, 1, 1)).with_batch_size(BATCH),
            ),
            table(
                "part",
                PartArrow::new(PartGenerator::new(SCALE, 1, 1)).with_batch_size(BATCH),
            ),
            table(
                "supplier",
                SupplierArrow::new(SupplierGenerator::new(SCALE, 1, 1)).with_batch_size(BATCH),
            ),
            table(
                "partsupp",
                PartSuppArrow::new(PartSuppGenerator::new(SCALE, 1, 1)).with_batch_size(BATCH),
            ),
            table(
                "customer",
                CustomerArrow::new(CustomerGenerator::new(SCALE, 1, 1)).with_batch_size(BATCH),
            ),
            table(
                "orders",
                OrderArrow::new(OrderGenerator::new(SCALE, 1, 1)).with_batch_size(BATCH),
            ),
            table(
                "lineitem",
                LineItemArrow::new(LineItemGenerator::new(SCALE, 1, 1)).with_batch_size(BATCH),
            ),
        ]
    })
}

/// The 22 queries, as the TPC-H kit's validation parameters fix them.
fn queries() -> Vec<(usize, String)> {
    (1..=22)
        .map(|q| {
            let path = format!("{}/tests/tpch/q{q:02}.sql", env!("CARGO_MANIFEST_DIR"));
            (
                q,
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
            )
        })
        .collect()
}

#[test]
fn tpch_sf01_matches_single_process_datafusion() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut failures = Vec::new();
    for (q, sql) in queries() {
        let want = text(&runtime.block_on(expected(tables(), &sql, 2)));
        for participants in [1usize, 2, 4] {
            match distributed(tables(), &sql, participants, 64) {
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
