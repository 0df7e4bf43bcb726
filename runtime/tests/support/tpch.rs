//! TPC-H tables generated in memory (tpchgen-arrow) and the 22 queries
//! kept in `runtime/tests/tpch/`.

use arrow_array::RecordBatch;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator, PartSuppGenerator,
    RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow, SupplierArrow,
};

use super::spmd::Table;

const BATCH: usize = 8192;

fn table(name: &'static str, batches: impl Iterator<Item = RecordBatch>) -> Table {
    let batches: Vec<RecordBatch> = batches.collect();
    Table {
        name,
        schema: batches[0].schema(),
        batches,
    }
}

/// The eight TPC-H tables at scale factor `scale`, in batches of 8192 rows.
pub fn tables(scale: f64) -> Vec<Table> {
    vec![
        table(
            "nation",
            NationArrow::new(NationGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
        table(
            "region",
            RegionArrow::new(RegionGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
        table(
            "part",
            PartArrow::new(PartGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
        table(
            "supplier",
            SupplierArrow::new(SupplierGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
        table(
            "partsupp",
            PartSuppArrow::new(PartSuppGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
        table(
            "customer",
            CustomerArrow::new(CustomerGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
        table(
            "orders",
            OrderArrow::new(OrderGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
        table(
            "lineitem",
            LineItemArrow::new(LineItemGenerator::new(scale, 1, 1)).with_batch_size(BATCH),
        ),
    ]
}

/// The 22 queries with the kit's validation parameters, as (number, SQL).
pub fn queries() -> Vec<(usize, String)> {
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
