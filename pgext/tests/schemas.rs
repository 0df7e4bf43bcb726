//! The schemas analytic databases have: partitioned tables (by range,
//! list and hash, two levels deep, with a default partition, a partition
//! attached with its columns in another order and a dropped column) and
//! inheritance, read by weft leaf by leaf, only the partitions the query's
//! conditions leave, and answering as stock Postgres does.

use weft_pg_harness::differential::{check_both_ways, taken};
use weft_pg_harness::postgres::Client;
use weft_pg_harness::{text_rows, Cluster};

/// A cluster with weft and the partitioned tables, analyzed.
fn with_partitions() -> (Cluster, Client) {
    let cluster = Cluster::start();
    let mut client = cluster.connect();
    client
        .batch_execute(
            "CREATE EXTENSION weft;
             SET max_parallel_workers_per_gather = 2;
             -- By range of day, each month's partition by list of region
             -- (two levels), a default partition.
             CREATE TABLE sales (day date NOT NULL, region text, qty int, amount numeric(10, 2))
                 PARTITION BY RANGE (day);
             CREATE TABLE sales_2024_01 PARTITION OF sales FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')
                 PARTITION BY LIST (region);
             CREATE TABLE sales_2024_01_north PARTITION OF sales_2024_01 FOR VALUES IN ('north');
             CREATE TABLE sales_2024_01_rest PARTITION OF sales_2024_01 DEFAULT;
             CREATE TABLE sales_2024_02 PARTITION OF sales FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
             CREATE TABLE sales_other PARTITION OF sales DEFAULT;
             -- A partition made apart, with a dropped column and its
             -- columns in another order, then attached.
             CREATE TABLE sales_2024_03 (junk int, amount numeric(10, 2), qty int, region text, day date NOT NULL);
             ALTER TABLE sales_2024_03 DROP COLUMN junk;
             ALTER TABLE sales ATTACH PARTITION sales_2024_03 FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');
             INSERT INTO sales
                  SELECT date '2023-12-20' + g % 120, (ARRAY['north', 'south', NULL])[1 + g % 3], g % 11, (g % 50) * 1.25
                    FROM generate_series(1, 30000) g;
             -- By hash.
             CREATE TABLE events (id bigint, kind int, note text) PARTITION BY HASH (id);
             CREATE TABLE events_0 PARTITION OF events FOR VALUES WITH (MODULUS 3, REMAINDER 0);
             CREATE TABLE events_1 PARTITION OF events FOR VALUES WITH (MODULUS 3, REMAINDER 1);
             CREATE TABLE events_2 PARTITION OF events FOR VALUES WITH (MODULUS 3, REMAINDER 2);
             INSERT INTO events SELECT g, g % 7, 'n' || g % 5 FROM generate_series(1, 20000) g;
             -- Inheritance: a parent with rows of its own, a child with a
             -- column more.
             CREATE TABLE animals (name text, legs int);
             CREATE TABLE birds (wings int) INHERITS (animals);
             INSERT INTO animals SELECT 'cat' || g, 4 FROM generate_series(1, 3000) g;
             INSERT INTO birds SELECT 'bird' || g, 2, 2 FROM generate_series(1, 2000) g;
             ANALYZE",
        )
        .unwrap();
    (cluster, client)
}

/// Every partitioning, every level, each answer as stock's.
#[test]
fn partitioned_tables_and_inheritance_answer_as_postgres() {
    let (_cluster, mut client) = with_partitions();
    check_both_ways(
        &mut client,
        &[
            (true, "SELECT region, count(*), sum(amount), min(day), max(day) FROM sales GROUP BY region ORDER BY 1"),
            (true, "SELECT date_trunc('month', day)::date, count(*), sum(qty) FROM sales GROUP BY 1 ORDER BY 1"),
            (true, "SELECT count(*), sum(amount) FROM sales WHERE day >= '2024-02-10' AND day < '2024-03-05'"),
            (true, "SELECT count(*) FROM sales WHERE region = 'north' AND day < '2024-02-01'"),
            (true, "SELECT count(*) FROM sales WHERE day < '2023-01-01'"),
            (true, "SELECT count(*) FROM sales WHERE day = '2024-03-15' OR qty = 3"),
            (
                true,
                "SELECT s.region, count(*) FROM sales s JOIN events e ON e.id = s.qty WHERE s.day >= '2024-03-01'
                  GROUP BY 1 ORDER BY 1",
            ),
            (
                true,
                "SELECT e.kind, count(s.qty) FROM events e LEFT JOIN sales s ON s.qty = e.kind AND s.day < '2024-01-05'
                  WHERE e.id < 100 GROUP BY 1 ORDER BY 1",
            ),
            // A condition under an outer join decides which rows are
            // NULL-extended: every partition is read.
            (
                true,
                "SELECT count(*), count(s.day) FROM events e LEFT JOIN sales s ON s.qty = e.kind
                  WHERE e.id < 50 AND (s.day < '2024-01-03' OR s.day IS NULL)",
            ),
            (true, "SELECT kind, count(*), count(DISTINCT note) FROM events WHERE id IN (5, 17, 19999) GROUP BY 1 ORDER BY 1"),
            (true, "SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind"),
            (true, "SELECT legs, count(*) FROM animals GROUP BY legs ORDER BY legs"),
            (true, "SELECT legs, count(*) FROM ONLY animals GROUP BY legs ORDER BY legs"),
            (true, "SELECT count(*) FROM sales WHERE day IN (SELECT day FROM sales_2024_02 WHERE qty = 1)"),
        ],
    );
}

/// EXPLAIN names the leaves read: only those whose constraints the
/// conditions do not refute, with constants, and with a prepared
/// statement's parameter under its generic plan (known when it runs).
#[test]
fn only_the_partitions_a_query_can_read_are_read() {
    let (_cluster, mut client) = with_partitions();
    client.batch_execute("SET weft.force = on").unwrap();
    let leaves = |client: &mut Client, sql: &str| -> Vec<String> {
        let plan = text_rows(client, &format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}")).unwrap();
        let mut read: Vec<String> = plan
            .iter()
            .flatten()
            .flatten()
            .filter_map(|line| line.split("HeapScan: public.").nth(1))
            .map(|rest| rest.split([' ', '[']).next().unwrap_or_default().to_string())
            .collect();
        read.sort();
        read.dedup();
        read
    };
    assert_eq!(
        leaves(
            &mut client,
            "SELECT count(*) FROM sales WHERE day >= '2024-03-10' AND day < '2024-05-05'"
        ),
        ["sales_2024_03", "sales_other"]
    );
    // A default partition's constraint (no other partition's bounds) is
    // refuted only where the conditions contradict one of its parts: it
    // is read here, though Postgres's own pruning, which knows the other
    // bounds cover the range, skips it.
    assert_eq!(
        leaves(
            &mut client,
            "SELECT count(*) FROM sales WHERE day >= '2024-02-10' AND day < '2024-03-05'"
        ),
        ["sales_2024_02", "sales_2024_03", "sales_other"]
    );
    assert_eq!(
        leaves(
            &mut client,
            "SELECT count(*) FROM sales WHERE region = 'north' AND day < '2024-02-01'"
        ),
        ["sales_2024_01_north", "sales_other"]
    );
    assert_eq!(
        leaves(&mut client, "SELECT count(*) FROM sales"),
        [
            "sales_2024_01_north",
            "sales_2024_01_rest",
            "sales_2024_02",
            "sales_2024_03",
            "sales_other"
        ]
    );
    client
        .batch_execute(
            "SET plan_cache_mode = force_generic_plan;
             PREPARE month(date) AS SELECT count(*), sum(amount) FROM sales WHERE day >= $1 AND day < $1 + 28",
        )
        .unwrap();
    assert!(taken(&mut client, "EXECUTE month('2024-02-01')"));
    assert_eq!(leaves(&mut client, "EXECUTE month('2024-02-01')"), ["sales_2024_02"]);
    check_both_ways(
        &mut client,
        &[
            (true, "EXECUTE month('2024-02-01')"),
            (true, "EXECUTE month('2024-01-20')"),
            (true, "EXECUTE month(NULL)"),
        ],
    );
}
