//! Queries that write their result: `CREATE TABLE AS`, `SELECT INTO`,
//! `CREATE MATERIALIZED VIEW` and `REFRESH` of it, `COPY (SELECT ..) TO`,
//! and `INSERT INTO .. SELECT` (which Postgres 15 never runs in
//! parallel). weft computes the rows, the leader writes them; each written
//! table equals the one stock Postgres writes from the same statement, and
//! each statement's plan (read through auto_explain) is weft's.

use std::sync::{Arc, Mutex};

use weft_pg_harness::explained::{plans, run_by_weft, AUTO_EXPLAIN, SALES};
use weft_pg_harness::postgres::Client;
use weft_pg_harness::{text_rows, Cluster};

/// A cluster with weft, sales to read and a session collecting the plans
/// auto_explain reports.
fn with_sales() -> (Cluster, Client, Arc<Mutex<Vec<String>>>) {
    let cluster = Cluster::start();
    let (mut client, notices) = cluster.connect_collecting_notices();
    client
        .batch_execute(&format!(
            "CREATE EXTENSION weft; {SALES}; SET max_parallel_workers_per_gather = 2; {AUTO_EXPLAIN}"
        ))
        .unwrap();
    (cluster, client, notices)
}

/// Runs `write` (with `{}` for the table it writes) with weft forced into
/// `{name}_weft` and with weft off into `{name}_stock`, and requires the
/// two tables to hold the same rows (`columns` of them compared) and
/// weft's run to be weft's.
fn written_alike(client: &mut Client, notices: &Arc<Mutex<Vec<String>>>, name: &str, write: &str, columns: &str) {
    let weft_table = format!("{name}_weft");
    let stock_table = format!("{name}_stock");
    plans(notices);
    client
        .batch_execute(&format!("SET weft.force = on; {}", write.replace("{}", &weft_table)))
        .unwrap_or_else(|e| panic!("{write}: {e}"));
    let ran = plans(notices);
    assert!(run_by_weft(&ran) > 0, "{write}: not run by weft: {ran:#?}");
    client
        .batch_execute(&format!(
            "SET weft.enable = off; {}; SET weft.enable = on",
            write.replace("{}", &stock_table)
        ))
        .unwrap();
    let rows = |client: &mut Client, table: &str| {
        text_rows(client, &format!("SELECT {columns} FROM {table} ORDER BY {columns}")).unwrap()
    };
    let (weft, stock) = (rows(client, &weft_table), rows(client, &stock_table));
    assert!(!weft.is_empty(), "{write}: nothing written");
    assert_eq!(weft, stock, "{write}");
}

/// CREATE TABLE AS, SELECT INTO and materialized views, created and
/// refreshed.
#[test]
fn tables_created_from_a_query_hold_postgres_s_rows() {
    let (_cluster, mut client, notices) = with_sales();
    let query = "SELECT region, qty, count(*) AS n, sum(amount) AS total FROM sales GROUP BY region, qty";
    written_alike(
        &mut client,
        &notices,
        "ctas",
        &format!("CREATE TABLE {{}} AS {query}"),
        "region, qty, n, total",
    );
    written_alike(
        &mut client,
        &notices,
        "into",
        "SELECT region, avg(amount) AS mean INTO {} FROM sales GROUP BY region",
        "region, mean",
    );
    written_alike(
        &mut client,
        &notices,
        "mv",
        &format!("CREATE MATERIALIZED VIEW {{}} AS {query}"),
        "region, qty, n, total",
    );
    // Refreshed after a change, concurrently (which needs a unique index)
    // and not.
    client
        .batch_execute(
            "CREATE UNIQUE INDEX ON mv_weft (region, qty); CREATE UNIQUE INDEX ON mv_stock (region, qty);
             UPDATE sales SET amount = amount + 1 WHERE i % 10 = 0",
        )
        .unwrap();
    for refresh in [
        "REFRESH MATERIALIZED VIEW {}",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY {}",
    ] {
        plans(&notices);
        client
            .batch_execute(&format!("SET weft.force = on; {}", refresh.replace("{}", "mv_weft")))
            .unwrap();
        let ran = plans(&notices);
        assert!(run_by_weft(&ran) > 0, "{refresh}: not run by weft: {ran:#?}");
        client
            .batch_execute(&format!(
                "SET weft.enable = off; {}; SET weft.enable = on",
                refresh.replace("{}", "mv_stock")
            ))
            .unwrap();
        let rows = |client: &mut Client, table: &str| {
            text_rows(client, &format!("SELECT * FROM {table} ORDER BY 1, 2")).unwrap()
        };
        assert_eq!(rows(&mut client, "mv_weft"), rows(&mut client, "mv_stock"), "{refresh}");
    }
}

/// COPY of a query's rows out: the same text as stock's.
#[test]
fn copy_of_a_query_writes_postgres_s_rows() {
    let (_cluster, mut client, notices) = with_sales();
    let copy = "COPY (SELECT region, qty, count(*), sum(amount) FROM sales GROUP BY 1, 2 ORDER BY 1, 2) TO STDOUT";
    let read = |client: &mut Client| {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut client.copy_out(copy).unwrap(), &mut out).unwrap();
        out
    };
    client.batch_execute("SET weft.force = on").unwrap();
    plans(&notices);
    let weft = read(&mut client);
    let ran = plans(&notices);
    assert!(run_by_weft(&ran) > 0, "not run by weft: {ran:#?}");
    client.batch_execute("SET weft.enable = off").unwrap();
    let stock = read(&mut client);
    assert_eq!(weft, stock);
    assert!(weft.lines().count() > 40);
}

/// INSERT .. SELECT: weft computes the rows; the leader writes them, with
/// the table's defaults (a serial column's sequence among them), dropped
/// columns, constraints, triggers, RETURNING and partition routing as
/// Postgres applies them.
#[test]
fn insert_of_a_query_writes_postgres_s_rows() {
    let (_cluster, mut client, notices) = with_sales();
    client
        .batch_execute(
            "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN NEW.note := 'seen ' || NEW.n; RETURN NEW; END $$;
             CREATE TABLE summary_weft (id serial, junk int, region text, qty int, n bigint CHECK (n > 0),
                                        total numeric, note text DEFAULT 'none', k int DEFAULT 7);
             ALTER TABLE summary_weft DROP COLUMN junk;
             CREATE TRIGGER stamp BEFORE INSERT ON summary_weft FOR EACH ROW EXECUTE FUNCTION stamp();
             CREATE TABLE summary_stock (LIKE summary_weft INCLUDING ALL);
             CREATE TRIGGER stamp BEFORE INSERT ON summary_stock FOR EACH ROW EXECUTE FUNCTION stamp();
             CREATE TABLE parted_weft (region text, n bigint) PARTITION BY LIST (region);
             CREATE TABLE parted_weft_n PARTITION OF parted_weft FOR VALUES IN ('north');
             CREATE TABLE parted_weft_rest PARTITION OF parted_weft DEFAULT;
             CREATE TABLE parted_stock (region text, n bigint) PARTITION BY LIST (region);
             CREATE TABLE parted_stock_n PARTITION OF parted_stock FOR VALUES IN ('north');
             CREATE TABLE parted_stock_rest PARTITION OF parted_stock DEFAULT;",
        )
        .unwrap();
    written_alike(
        &mut client,
        &notices,
        "summary",
        "INSERT INTO {} (region, qty, n, total) SELECT region, qty, count(*), sum(amount) FROM sales GROUP BY 1, 2",
        "region, qty, n, total, note, k",
    );
    written_alike(
        &mut client,
        &notices,
        "parted",
        "INSERT INTO {} SELECT region, count(*) FROM sales GROUP BY region",
        "region, n",
    );
    let (weft, stock) = (
        text_rows(&mut client, "SELECT count(*) FROM parted_weft_n").unwrap(),
        text_rows(&mut client, "SELECT count(*) FROM parted_stock_n").unwrap(),
    );
    assert_eq!(weft, stock);
    // RETURNING, and a constraint the rows break: Postgres's error.
    client.batch_execute("SET weft.force = on").unwrap();
    let returned = text_rows(
        &mut client,
        "INSERT INTO summary_weft (region, n) SELECT region, count(*) FROM sales WHERE qty = 1 GROUP BY region
         RETURNING region, n, note",
    )
    .unwrap();
    assert_eq!(returned.len(), 4);
    let broken = text_rows(
        &mut client,
        "INSERT INTO summary_weft (region, n) SELECT region, count(*) - 5000 FROM sales GROUP BY region",
    );
    assert!(
        broken.is_err_and(|e| e.starts_with("23514")),
        "the CHECK constraint's error"
    );
}
