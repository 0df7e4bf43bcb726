//! TPC-H in a throwaway cluster: the eight tables generated locally
//! (tpchgen, the official generator's Rust port) and loaded with COPY,
//! and the 22 queries with the kit's validation parameters.
//!
//! ```no_run
//! use weft_pg_harness::{tpch, Cluster};
//!
//! let cluster = Cluster::start();
//! let mut client = cluster.connect();
//! tpch::load(&mut client, 0.01);
//! let (number, sql) = &tpch::queries()[0];
//! assert_eq!(*number, 1);
//! assert!(!client.query(sql.as_str(), &[]).unwrap().is_empty());
//! ```

use std::fmt::Display;
use std::io::Write;

use postgres::Client;
use tpchgen::csv::{CustomerCsv, LineItemCsv, NationCsv, OrderCsv, PartCsv, PartSuppCsv, RegionCsv, SupplierCsv};
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator, PartSuppGenerator,
    RegionGenerator, SupplierGenerator,
};

/// The TPC-H schema (the kit's dss.ddl types) with primary keys only.
pub const SCHEMA: &str = "
CREATE TABLE nation (n_nationkey integer PRIMARY KEY, n_name char(25) NOT NULL, n_regionkey integer NOT NULL, n_comment varchar(152));
CREATE TABLE region (r_regionkey integer PRIMARY KEY, r_name char(25) NOT NULL, r_comment varchar(152));
CREATE TABLE part (p_partkey integer PRIMARY KEY, p_name varchar(55) NOT NULL, p_mfgr char(25) NOT NULL, p_brand char(10) NOT NULL,
  p_type varchar(25) NOT NULL, p_size integer NOT NULL, p_container char(10) NOT NULL, p_retailprice numeric(15,2) NOT NULL, p_comment varchar(23) NOT NULL);
CREATE TABLE supplier (s_suppkey integer PRIMARY KEY, s_name char(25) NOT NULL, s_address varchar(40) NOT NULL, s_nationkey integer NOT NULL,
  s_phone char(15) NOT NULL, s_acctbal numeric(15,2) NOT NULL, s_comment varchar(101) NOT NULL);
CREATE TABLE partsupp (ps_partkey integer NOT NULL, ps_suppkey integer NOT NULL, ps_availqty integer NOT NULL, ps_supplycost numeric(15,2) NOT NULL,
  ps_comment varchar(199) NOT NULL, PRIMARY KEY (ps_partkey, ps_suppkey));
CREATE TABLE customer (c_custkey integer PRIMARY KEY, c_name varchar(25) NOT NULL, c_address varchar(40) NOT NULL, c_nationkey integer NOT NULL,
  c_phone char(15) NOT NULL, c_acctbal numeric(15,2) NOT NULL, c_mktsegment char(10) NOT NULL, c_comment varchar(117) NOT NULL);
CREATE TABLE orders (o_orderkey bigint PRIMARY KEY, o_custkey integer NOT NULL, o_orderstatus char(1) NOT NULL, o_totalprice numeric(15,2) NOT NULL,
  o_orderdate date NOT NULL, o_orderpriority char(15) NOT NULL, o_clerk char(15) NOT NULL, o_shippriority integer NOT NULL, o_comment varchar(79) NOT NULL);
CREATE TABLE lineitem (l_orderkey bigint NOT NULL, l_partkey integer NOT NULL, l_suppkey integer NOT NULL, l_linenumber integer NOT NULL,
  l_quantity numeric(15,2) NOT NULL, l_extendedprice numeric(15,2) NOT NULL, l_discount numeric(15,2) NOT NULL, l_tax numeric(15,2) NOT NULL,
  l_returnflag char(1) NOT NULL, l_linestatus char(1) NOT NULL, l_shipdate date NOT NULL, l_commitdate date NOT NULL, l_receiptdate date NOT NULL,
  l_shipinstruct char(25) NOT NULL, l_shipmode char(10) NOT NULL, l_comment varchar(44) NOT NULL, PRIMARY KEY (l_orderkey, l_linenumber));
";

/// Creates the TPC-H tables at scale factor `scale` in `client`'s
/// database, loads them and analyzes them.
pub fn load(client: &mut Client, scale: f64) {
    client.batch_execute(SCHEMA).expect("create the TPC-H tables");
    copy(
        client,
        "nation",
        NationGenerator::new(scale, 1, 1).iter().map(NationCsv::new),
    );
    copy(
        client,
        "region",
        RegionGenerator::new(scale, 1, 1).iter().map(RegionCsv::new),
    );
    copy(client, "part", PartGenerator::new(scale, 1, 1).iter().map(PartCsv::new));
    copy(
        client,
        "supplier",
        SupplierGenerator::new(scale, 1, 1).iter().map(SupplierCsv::new),
    );
    copy(
        client,
        "partsupp",
        PartSuppGenerator::new(scale, 1, 1).iter().map(PartSuppCsv::new),
    );
    copy(
        client,
        "customer",
        CustomerGenerator::new(scale, 1, 1).iter().map(CustomerCsv::new),
    );
    copy(
        client,
        "orders",
        OrderGenerator::new(scale, 1, 1).iter().map(OrderCsv::new),
    );
    copy(
        client,
        "lineitem",
        LineItemGenerator::new(scale, 1, 1).iter().map(LineItemCsv::new),
    );
    client
        .batch_execute("VACUUM ANALYZE")
        .expect("analyze the TPC-H tables");
}

/// COPYs `rows` (CSV lines) into `table`.
fn copy<R: Display>(client: &mut Client, table: &str, rows: impl Iterator<Item = R>) {
    let mut writer = client
        .copy_in(&format!("COPY {table} FROM STDIN WITH (FORMAT csv)"))
        .expect("start COPY");
    let mut buffer = Vec::with_capacity(1 << 20);
    for row in rows {
        writeln!(buffer, "{row}").expect("format a row");
        if buffer.len() >= 1 << 20 {
            writer.write_all(&buffer).expect("COPY data");
            buffer.clear();
        }
    }
    writer.write_all(&buffer).expect("COPY data");
    writer.finish().expect("finish COPY");
}

/// The 22 queries with the kit's validation parameters, as (number, SQL).
pub fn queries() -> Vec<(usize, String)> {
    let texts = [
        include_str!("../../../runtime/tests/tpch/q01.sql"),
        include_str!("../../../runtime/tests/tpch/q02.sql"),
        include_str!("../../../runtime/tests/tpch/q03.sql"),
        include_str!("../../../runtime/tests/tpch/q04.sql"),
        include_str!("../../../runtime/tests/tpch/q05.sql"),
        include_str!("../../../runtime/tests/tpch/q06.sql"),
        include_str!("../../../runtime/tests/tpch/q07.sql"),
        include_str!("../../../runtime/tests/tpch/q08.sql"),
        include_str!("../../../runtime/tests/tpch/q09.sql"),
        include_str!("../../../runtime/tests/tpch/q10.sql"),
        include_str!("../../../runtime/tests/tpch/q11.sql"),
        include_str!("../../../runtime/tests/tpch/q12.sql"),
        include_str!("../../../runtime/tests/tpch/q13.sql"),
        include_str!("../../../runtime/tests/tpch/q14.sql"),
        include_str!("../../../runtime/tests/tpch/q15.sql"),
        include_str!("../../../runtime/tests/tpch/q16.sql"),
        include_str!("../../../runtime/tests/tpch/q17.sql"),
        include_str!("../../../runtime/tests/tpch/q18.sql"),
        include_str!("../../../runtime/tests/tpch/q19.sql"),
        include_str!("../../../runtime/tests/tpch/q20.sql"),
        include_str!("../../../runtime/tests/tpch/q21.sql"),
        include_str!("../../../runtime/tests/tpch/q22.sql"),
    ];
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| (i + 1, text.trim().trim_end_matches(';').to_string()))
        .collect()
}

/// `sql`'s result columns as a column definition list (the types Postgres
/// gives them, found by preparing `sql`), and those types' names.
pub fn definition(client: &mut Client, sql: &str) -> Result<(String, Vec<String>), postgres::Error> {
    let statement = client.prepare(sql)?;
    let columns = statement.columns();
    let types = columns.iter().map(|c| c.type_().name().to_string()).collect();
    let list = columns
        .iter()
        .map(|c| format!("\"{}\" {}", c.name(), c.type_().name()))
        .collect::<Vec<_>>()
        .join(", ");
    Ok((list, types))
}

/// `sql` wrapped in `weft.query` with its [`definition`] list.
pub fn through_weft(client: &mut Client, sql: &str) -> Result<String, postgres::Error> {
    let (list, _) = definition(client, sql)?;
    Ok(format!("SELECT * FROM weft.query($weft${sql}$weft$) AS t({list})"))
}

/// The benchmarks' setup, from `WEFT_BENCH_*` variables: a cluster with
/// weft (shared_buffers 4GB, work_mem 256MB, jit off), TPC-H at
/// `WEFT_BENCH_SF` (default 1) loaded and read once (warm), and a session
/// with max_parallel_workers_per_gather and weft.workers =
/// `WEFT_BENCH_WORKERS` (default 1) and a 300 s statement_timeout. Also
/// returns that worker count and the queries `WEFT_BENCH_QUERIES` picks
/// (`1,3,6` for instance; all when unset). `WEFT_BENCH_LOCALE` loads the
/// data into a database of that libc locale (`en_US.UTF-8`) or, as
/// `icu:en-US`, of that ICU default collation, instead of C.
pub fn bench_setup() -> (crate::Cluster, Client, u32, Option<Vec<usize>>) {
    let env = |name: &str| std::env::var(name).ok();
    let scale: f64 = env("WEFT_BENCH_SF").and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let workers: u32 = env("WEFT_BENCH_WORKERS").and_then(|v| v.parse().ok()).unwrap_or(1);
    let picked = env("WEFT_BENCH_QUERIES").map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    let cluster = crate::Cluster::start_with(&[
        ("shared_buffers", "4GB"),
        ("work_mem", "256MB"),
        ("jit", "off"),
        ("max_worker_processes", "16"),
        ("max_parallel_workers", "16"),
    ]);
    let mut client = match env("WEFT_BENCH_LOCALE").filter(|l| l != "C") {
        None => cluster.connect(),
        Some(locale) => {
            // `icu:<locale>` makes ICU the database's default collation;
            // anything else names a libc locale.
            let options = match locale.strip_prefix("icu:") {
                Some(icu) => format!("LOCALE_PROVIDER icu ICU_LOCALE '{icu}' LOCALE 'C'"),
                None => format!("LOCALE '{locale}'"),
            };
            cluster
                .connect()
                .batch_execute(&format!(
                    "CREATE DATABASE tpch TEMPLATE template0 ENCODING 'UTF8' {options}"
                ))
                .unwrap();
            cluster.connect_to("tpch", "postgres")
        }
    };
    client.batch_execute("CREATE EXTENSION weft").unwrap();
    let started = std::time::Instant::now();
    load(&mut client, scale);
    if let Some(locale) = env("WEFT_BENCH_LOCALE") {
        println!("database locale: {locale}");
    }
    println!("TPC-H SF{scale} loaded in {:.1?}", started.elapsed());
    // Whether the server's shared memory sits in huge pages weighs on both
    // sides' times, weft's more (benches/README.md, "Conditions"): say which it was.
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let huge: Vec<&str> = meminfo.lines().filter(|l| l.starts_with("HugePages_")).collect();
    println!("huge pages: {}", huge.join("; "));
    client
        .batch_execute(&format!(
            "SET max_parallel_workers_per_gather = {workers}; SET weft.workers = {workers};
             SET statement_timeout = '300s';"
        ))
        .unwrap();
    for table in [
        "lineitem", "orders", "partsupp", "part", "customer", "supplier", "nation", "region",
    ] {
        client.simple_query(&format!("SELECT count(*) FROM {table}")).unwrap();
    }
    (cluster, client, workers, picked)
}
