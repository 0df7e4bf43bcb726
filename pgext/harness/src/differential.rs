//! Differential checks: a query with weft forced on against the same query
//! with weft off, in the same session, and whether weft took it over.

use postgres::Client;

use crate::{text_rows, Rows};

/// Whether weft takes `sql` over (its EXPLAIN shows the Weft scan).
///
/// # Panics
/// If EXPLAIN fails.
pub fn taken(client: &mut Client, sql: &str) -> bool {
    let plan = text_rows(client, &format!("EXPLAIN {sql}")).unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
    plan.iter()
        .flatten()
        .flatten()
        .any(|line| line.contains("Custom Scan (Weft)"))
}

/// `sql`'s result with weft forced on and with weft off, in that order
/// (weft is left on afterwards). Plans the session has cached (prepared
/// statements', PL/pgSQL's) are dropped before each run and after: a plan
/// made with weft on would otherwise run again with it off, and the other
/// way round.
///
/// # Panics
/// If the settings cannot be changed.
pub fn both_ways(client: &mut Client, sql: &str) -> (Result<Rows, String>, Result<Rows, String>) {
    client
        .batch_execute("SET weft.enable = on; SET weft.force = on; DISCARD PLANS")
        .unwrap();
    let weft = text_rows(client, sql);
    client.batch_execute("SET weft.enable = off; DISCARD PLANS").unwrap();
    let stock = text_rows(client, sql);
    client.batch_execute("SET weft.enable = on; DISCARD PLANS").unwrap();
    (weft, stock)
}

/// Why `sql` fails [`both_ways`] (either side is an error, or weft's
/// rows are not stock's), labelled `what`; None when both return the same
/// rows.
pub fn mismatch(client: &mut Client, sql: &str, what: &str) -> Option<String> {
    let (weft, stock) = both_ways(client, sql);
    match (&weft, &stock) {
        (Ok(w), Ok(s)) if w == s => None,
        _ => Some(format!("{what}: {sql}\n  weft:  {weft:?}\n  stock: {stock:?}")),
    }
}

/// Runs each query with weft forced and with weft off, and requires the
/// same rows (or the same error: SQLSTATE and message), and weft to take over exactly the ones
/// marked so.
///
/// # Panics
/// With every case that failed.
pub fn check_both_ways(client: &mut Client, cases: &[(bool, &str)]) {
    let mut failures = Vec::new();
    for &(expect_taken, sql) in cases {
        client.batch_execute("SET weft.force = on").unwrap();
        let was_taken = taken(client, sql);
        if was_taken != expect_taken {
            failures.push(format!("taken over: {was_taken}, expected {expect_taken}: {sql}"));
        }
        let (weft, stock) = both_ways(client, sql);
        if weft != stock {
            failures.push(format!("{sql}\n  weft:  {weft:?}\n  stock: {stock:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// [`check_both_ways`] of every query in `taken`, which weft must take
/// over, and every one in `kept`, which it must leave to Postgres.
///
/// # Panics
/// With every case that failed.
pub fn check_taken_and_kept(client: &mut Client, taken: &[&str], kept: &[&str]) {
    let cases: Vec<(bool, &str)> = taken
        .iter()
        .map(|&sql| (true, sql))
        .chain(kept.iter().map(|&sql| (false, sql)))
        .collect();
    check_both_ways(client, &cases);
}
