//! Plain SQL taken over by weft's planner hook: TPC-H at scale factor 0.1
//! with `weft.force` on and with weft off return the same rows in the same
//! order, in the same test; semantics and fallbacks are checked against
//! stock Postgres the same way.

use weft_pg_harness::postgres::{Client, SimpleQueryMessage};
use weft_pg_harness::{tpch, Cluster};

/// A result as text: rows of optional column values.
type Rows = Vec<Vec<Option<String>>>;

fn text_rows(client: &mut Client, sql: &str) -> Result<Rows, String> {
    let messages = client.simple_query(sql).map_err(|e| {
        e.as_db_error()
            .map_or(e.to_string(), |db| format!("{}: {}", db.code().code(), db.message()))
    })?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect())
}

/// Whether weft takes `sql` over (EXPLAIN shows its scan).
fn taken(client: &mut Client, sql: &str) -> bool {
    let plan = text_rows(client, &format!("EXPLAIN {sql}")).unwrap();
    plan.iter()
        .flatten()
        .flatten()
        .any(|line| line.contains("Custom Scan (Weft)"))
}

/// `sql`'s result with weft forced and with weft off.
fn both_ways(client: &mut Client, sql: &str) -> (Result<Rows, String>, Result<Rows, String>) {
    client
        .batch_execute("SET weft.enable = on; SET weft.force = on")
        .unwrap();
    let weft = text_rows(client, sql);
    client.batch_execute("SET weft.enable = off").unwrap();
    let stock = text_rows(client, sql);
    client.batch_execute("SET weft.enable = on").unwrap();
    (weft, stock)
}

#[test]
fn tpch_in_plain_sql_matches_stock_postgres() {
    let cluster = Cluster::start();
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION weft").unwrap();
    tpch::load(&mut client, 0.1);
    // Lets stock Postgres answer Q17 and Q20 in seconds (weft scans).
    client
        .batch_execute("CREATE INDEX ON lineitem (l_partkey, l_suppkey); ANALYZE lineitem")
        .unwrap();
    client
        .batch_execute("SET max_parallel_workers_per_gather = 2; SET weft.force = on")
        .unwrap();
    let mut taken_over = Vec::new();
    let mut failures = Vec::new();
    for (number, sql) in tpch::queries() {
        let sql = sql.trim().trim_end_matches(';').to_string();
        if taken(&mut client, &sql) {
            taken_over.push(number);
        }
        let (weft, stock) = both_ways(&mut client, &sql);
        let stock = stock.unwrap_or_else(|e| panic!("Q{number} on stock Postgres: {e}"));
        match weft {
            Ok(rows) if rows == stock => {}
            Ok(rows) => failures.push(format!(
                "Q{number}: {} rows differ from stock's {}; first: {:?} vs {:?}",
                rows.len(),
                stock.len(),
                rows.first(),
                stock.first()
            )),
            Err(e) => failures.push(format!("Q{number}: {e}")),
        }
    }
    println!("taken over: {taken_over:?}");
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        taken_over.len() >= 18,
        "weft took over only {} of 22 queries: {taken_over:?}",
        taken_over.len()
    );
}
