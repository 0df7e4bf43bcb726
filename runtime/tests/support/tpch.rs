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

/// The 22 queries with the kit's validation parameters, as (number, SQL);
/// embedded, so that any crate including this file finds them.
pub fn queries() -> Vec<(usize, String)> {
    let texts = [
        include_str!("../tpch/q01.sql"),
        include_str!("../tpch/q02.sql"),
        include_str!("../tpch/q03.sql"),
        include_str!("../tpch/q04.sql"),
        include_str!("../tpch/q05.sql"),
        include_str!("../tpch/q06.sql"),
        include_str!("../tpch/q07.sql"),
        include_str!("../tpch/q08.sql"),
        include_str!("../tpch/q09.sql"),
        include_str!("../tpch/q10.sql"),
        include_str!("../tpch/q11.sql"),
        include_str!("../tpch/q12.sql"),
        include_str!("../tpch/q13.sql"),
        include_str!("../tpch/q14.sql"),
        include_str!("../tpch/q15.sql"),
        include_str!("../tpch/q16.sql"),
        include_str!("../tpch/q17.sql"),
        include_str!("../tpch/q18.sql"),
        include_str!("../tpch/q19.sql"),
        include_str!("../tpch/q20.sql"),
        include_str!("../tpch/q21.sql"),
        include_str!("../tpch/q22.sql"),
    ];
    texts
        .iter()
        .enumerate()
        .map(|(i, sql)| (i + 1, sql.to_string()))
        .collect()
}
