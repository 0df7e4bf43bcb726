//! How clients send queries, and weft taking them the same way each time:
//! prepared statements under generic and custom plans, portals fetched a
//! few rows at a time (the extended protocol's row limit, as pgjdbc's
//! fetch size sends it), cursors (`DECLARE`, `FETCH` forward and backward,
//! `WITH HOLD`), and PL/pgSQL queries that read the function's variables.
//! Each answer is compared with stock Postgres's, and each plan read
//! through auto_explain's notices: run by weft, not handed back.

use std::sync::{Arc, Mutex};

use weft_pg_harness::explained::{plans, run_by_weft, AUTO_EXPLAIN, SALES};
use weft_pg_harness::postgres::Client;
use weft_pg_harness::{text_rows, Cluster, Rows};

/// Two sessions of one cluster, each with its own plan cache: `weft`
/// (weft.force on; the notices auto_explain sends it, each executed plan
/// with ANALYZE's lines, nested statements too) and `stock` (weft off).
struct Sessions {
    _cluster: Cluster,
    weft: Client,
    stock: Client,
    notices: Arc<Mutex<Vec<String>>>,
}

impl Sessions {
    /// A cluster with weft and a table of 20,000 sales.
    fn start() -> Sessions {
        let cluster = Cluster::start();
        let (mut weft, notices) = cluster.connect_collecting_notices();
        weft.batch_execute(&format!(
            "CREATE EXTENSION weft; {SALES}; SET max_parallel_workers_per_gather = 2; SET weft.force = on; {AUTO_EXPLAIN}"
        ))
        .unwrap();
        let mut stock = cluster.connect();
        stock
            .batch_execute("SET max_parallel_workers_per_gather = 2; SET weft.enable = off")
            .unwrap();
        Sessions {
            _cluster: cluster,
            weft,
            stock,
            notices,
        }
    }

    /// Runs `sql` in both sessions.
    fn both(&mut self, sql: &str) {
        self.weft.batch_execute(sql).unwrap();
        self.stock.batch_execute(sql).unwrap();
    }

    /// `sql`'s rows in the weft session and in the stock one.
    fn rows(&mut self, sql: &str) -> (Result<Rows, String>, Result<Rows, String>) {
        (text_rows(&mut self.weft, sql), text_rows(&mut self.stock, sql))
    }

    /// The plans auto_explain reported in the weft session since the last
    /// call.
    fn plans(&self) -> Vec<String> {
        plans(&self.notices)
    }
}

/// A prepared statement runs under its custom plans and, once Postgres's
/// plan cache picks it, its generic plan (parameters unknown when it was
/// planned): weft takes both, translating the query again with each
/// execution's values, and answers as stock each time.
#[test]
fn prepared_statements_are_taken_under_generic_and_custom_plans() {
    let mut s = Sessions::start();
    let query = "SELECT region, count(*), sum(amount) FROM sales WHERE qty < $1 GROUP BY region ORDER BY 1";
    for mode in ["force_generic_plan", "force_custom_plan", "auto"] {
        s.both(&format!(
            "SET plan_cache_mode = {mode}; DEALLOCATE ALL; PREPARE q(int) AS {query}"
        ));
        for value in 0..10 {
            let execute = format!("EXECUTE q({value})");
            s.plans();
            let (weft, stock) = s.rows(&execute);
            assert_eq!(weft, stock, "{mode}: {execute}");
            let plans = s.plans();
            assert_eq!(
                run_by_weft(&plans),
                1,
                "{mode}: {execute} was not run by weft: {plans:#?}"
            );
        }
    }
    // Through the extended protocol: a named statement executed again and
    // again (the plan cache turns to its generic plan), and rows fetched
    // 100 at a time from a portal, as pgjdbc's fetch size fetches them.
    s.both("SET plan_cache_mode = auto");
    let (weft, stock) = (s.weft.prepare(query).unwrap(), s.stock.prepare(query).unwrap());
    // The groups and their counts (the sums are numerics, which this
    // client does not decode; the text protocol's comparisons above read
    // them).
    let read = |rows: Vec<weft_pg_harness::postgres::Row>| -> Vec<(Option<String>, i64)> {
        rows.iter().map(|row| (row.get(0), row.get(1))).collect()
    };
    s.plans();
    for value in 0..10i32 {
        let ours = read(s.weft.query(&weft, &[&value]).unwrap());
        let theirs = read(s.stock.query(&stock, &[&value]).unwrap());
        assert_eq!(ours, theirs, "qty < {value}");
    }
    let executed = s.plans();
    assert_eq!(run_by_weft(&executed), 10, "every execution run by weft: {executed:#?}");
    let portal_query = "SELECT i, qty FROM sales WHERE qty < $1 ORDER BY i";
    let mut fetched = Vec::new();
    let mut transaction = s.weft.transaction().unwrap();
    let portal = transaction.bind(portal_query, &[&5i32]).unwrap();
    loop {
        let rows = transaction.query_portal(&portal, 100).unwrap();
        if rows.is_empty() {
            break;
        }
        assert!(rows.len() <= 100);
        fetched.extend(rows.iter().map(|row| (row.get::<_, i32>(0), row.get::<_, i32>(1))));
    }
    transaction.commit().unwrap();
    let expected: Vec<(i32, i32)> = s
        .stock
        .query(portal_query, &[&5i32])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(fetched, expected);
    let executed = s.plans();
    assert_eq!(
        run_by_weft(&executed),
        1,
        "the portal's query run by weft: {executed:#?}"
    );
}

/// A parameter whose value weft does not take (a negative LIMIT) hands a
/// generic plan back to Postgres, which raises its own error.
#[test]
fn a_generic_plan_whose_values_weft_refuses_goes_back_to_postgres() {
    let mut s = Sessions::start();
    s.both(
        "SET plan_cache_mode = force_generic_plan;
         PREPARE q(bigint) AS SELECT region, count(*) FROM sales GROUP BY region ORDER BY 1 LIMIT $1",
    );
    for execute in ["EXECUTE q(2)", "EXECUTE q(NULL)", "EXECUTE q(-1)"] {
        let (weft, stock) = s.rows(execute);
        assert_eq!(weft, stock, "{execute}");
    }
    let (weft, _) = s.rows("EXECUTE q(-1)");
    assert!(
        weft.is_err_and(|e| e.starts_with("2201W")),
        "LIMIT must not be negative"
    );
}

/// Cursors fetch from weft's kept result a few rows at a time, backward
/// where the stock plan could (SCROLL), and after COMMIT (WITH HOLD).
#[test]
fn cursors_fetch_from_weft_s_result() {
    let mut s = Sessions::start();
    let sequences = [
        "BEGIN;
         DECLARE c CURSOR FOR SELECT qty, count(*), sum(amount) FROM sales GROUP BY qty ORDER BY qty;
         FETCH 3 FROM c; FETCH 2 FROM c; MOVE 2 FROM c; FETCH ALL FROM c; FETCH 1 FROM c;
         CLOSE c; COMMIT",
        "BEGIN;
         DECLARE c SCROLL CURSOR FOR SELECT region, count(*) FROM sales GROUP BY region ORDER BY 1;
         FETCH 2 FROM c; FETCH BACKWARD 1 FROM c; FETCH LAST FROM c; FETCH ABSOLUTE 2 FROM c; FETCH PRIOR FROM c;
         FETCH RELATIVE 3 FROM c; FETCH BACKWARD ALL FROM c;
         COMMIT",
        "BEGIN;
         DECLARE c CURSOR WITH HOLD FOR SELECT s.qty, count(*) FROM sales s JOIN sales t ON s.i = t.i + 1
          GROUP BY s.qty ORDER BY 1;
         FETCH 2 FROM c;
         COMMIT;
         FETCH 3 FROM c; FETCH ALL FROM c; CLOSE c",
        "BEGIN;
         DECLARE c CURSOR WITH HOLD FOR SELECT region, max(amount) FROM sales GROUP BY region ORDER BY 1 NULLS FIRST;
         COMMIT;
         FETCH ALL FROM c; CLOSE c",
    ];
    for sequence in sequences {
        s.plans();
        let (weft, stock) = s.rows(sequence);
        assert!(weft.as_ref().is_ok_and(|rows| !rows.is_empty()), "{sequence}: {weft:?}");
        assert_eq!(weft, stock, "{sequence}");
        let plans = s.plans();
        assert_eq!(run_by_weft(&plans), 1, "{sequence}: not run by weft: {plans:#?}");
    }
    // A plain scan of one table stays with Postgres: WHERE CURRENT OF
    // updates through it.
    let (weft, stock) = s.rows(
        "BEGIN;
         DECLARE c CURSOR FOR SELECT i, qty FROM sales WHERE qty = 3 ORDER BY i;
         FETCH 1 FROM c;
         UPDATE sales SET qty = 4 WHERE CURRENT OF c RETURNING i, qty;
         ROLLBACK",
    );
    assert!(weft.is_ok(), "{weft:?}");
    assert_eq!(weft, stock);
}

/// A PL/pgSQL function's queries read its variables as parameters: taken
/// at every call (custom plans, then the generic one the plan cache
/// keeps), in a FOR loop over a query too, and equal to stock.
#[test]
fn pl_pgsql_queries_with_variables_are_taken() {
    let mut s = Sessions::start();
    s.both(
        "CREATE OR REPLACE FUNCTION report(below int) RETURNS text LANGUAGE plpgsql AS $$
         DECLARE
             total numeric;
             line text := '';
             r record;
         BEGIN
             SELECT sum(amount) INTO total FROM sales WHERE qty < below;
             FOR r IN SELECT region, count(*) AS n FROM sales WHERE qty >= below GROUP BY region ORDER BY 1 LOOP
                 line := line || coalesce(r.region, '-') || '=' || r.n || ' ';
             END LOOP;
             RETURN total || ' ' || line;
         END $$",
    );
    // A function's cached plan run inside a parallel query's leader,
    // in parallel mode, where weft cannot start workers: the stock plan
    // answers.
    s.both(
        "CREATE OR REPLACE FUNCTION peek(k int) RETURNS bigint LANGUAGE plpgsql PARALLEL RESTRICTED AS $$
         BEGIN RETURN (SELECT count(*) FROM sales s JOIN sales t ON s.i = t.i WHERE s.qty < k); END $$;
         SELECT peek(3);",
    );
    let (weft, stock) = s.rows(
        "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
         SELECT qty, peek(qty), count(*) FROM sales WHERE i < 5000 GROUP BY qty ORDER BY 1;
         RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET min_parallel_table_scan_size",
    );
    assert!(weft.as_ref().is_ok_and(|rows| rows.len() == 13), "{weft:?}");
    assert_eq!(weft, stock);
    for below in 0..10 {
        let call = format!("SELECT report({below})");
        s.plans();
        let (weft, stock) = s.rows(&call);
        assert_eq!(weft, stock, "{call}");
        let plans = s.plans();
        let nested: Vec<String> = plans.into_iter().filter(|p| p.contains("FROM sales")).collect();
        assert_eq!(run_by_weft(&nested), 2, "{call}: {nested:#?}");
    }
}
