//! Plain SQL taken over by weft's planner hook: TPC-H at scale factor 0.1
//! with `weft.force` on and with weft off return the same rows in the same
//! order, in the same test; semantics and fallbacks are checked against
//! stock Postgres the same way.

use weft_pg_harness::differential::{both_ways, check_both_ways, mismatch, taken};
use weft_pg_harness::postgres::Client;
use weft_pg_harness::{text_rows, tpch, Cluster};

/// TPC-H in a database of locale C, and again in one of the libc locale
/// en_US.UTF-8, where every text ORDER BY and comparison follows the
/// collation: the same answers as stock Postgres in both, and weft takes
/// the same queries in both.
#[test]
fn tpch_in_plain_sql_matches_stock_postgres() {
    let cluster = Cluster::start();
    let in_c = tpch_both_ways(&mut cluster.connect());
    assert_eq!(in_c, (1..=22).collect::<Vec<_>>(), "queries taken under C");
    let in_en_us = tpch_both_ways(&mut cluster.database("en", "LOCALE 'en_US.UTF-8'"));
    assert_eq!(in_en_us, in_c, "queries taken under en_US.UTF-8, and under C");
}

/// Loads TPC-H at scale factor 0.1 into `client`'s database and runs each
/// query with weft forced on and off, requiring the same rows in the same
/// order; the numbers of the queries weft took over.
fn tpch_both_ways(client: &mut Client) -> Vec<usize> {
    client.batch_execute("CREATE EXTENSION weft").unwrap();
    tpch::load(client, 0.1);
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
        if taken(client, &sql) {
            taken_over.push(number);
        }
        let (weft, stock) = both_ways(client, &sql);
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
    taken_over
}

/// Tables with the edge values the semantics tests read.
const SEMANTICS_SETUP: &str = "
    CREATE TABLE t (a int, b bigint, n numeric(12,3), f float8, ch char(5), s text, d date, ts timestamptz);
    INSERT INTO t VALUES
        (1, 10, 1.5, 1.0, 'ab', 'a_b', '2020-01-31', '2020-01-31 23:30:00+00'),
        (2, NULL, 2.25, 'NaN', 'ab  ', 'aXb', '2021-06-15', '2021-06-15 12:00:00+00'),
        (3, 30, NULL, '-Infinity', 'b', 'abc', NULL, NULL),
        (NULL, 40, -0.125, 'Infinity', NULL, NULL, '1999-12-31', '1999-12-31 23:59:59+00'),
        (2147483647, 9223372036854775807, 999999999.999, -0.0, 'zz', 'z', '2020-02-29', '2020-02-29 00:00:00+00'),
        (7, -7, 0.001, 0.0, 'a', 'é', '2020-01-01', '2020-01-01 00:00:00+00');
    CREATE TABLE nulls (c int);
    INSERT INTO nulls VALUES (1), (NULL), (3);
    CREATE TABLE nonnull (c int);
    INSERT INTO nonnull VALUES (1), (3);
    CREATE TABLE empty (a int, n numeric(10,2));
    CREATE TABLE grown (a int, gone text, t text);
    INSERT INTO grown VALUES (1, 'x', repeat('p', 3000)), (2, NULL, 'short');
    ALTER TABLE grown DROP COLUMN gone;
    ALTER TABLE grown ADD COLUMN b int;
    ALTER TABLE grown ADD COLUMN c int DEFAULT 7;
    INSERT INTO grown VALUES (3, NULL, 4, 5);
    CREATE TABLE keyed (k int NOT NULL);
    INSERT INTO keyed VALUES (1), (2), (3), (4);
    CREATE TABLE keyed2 (k int NOT NULL);
    INSERT INTO keyed2 VALUES (2), (4), (6);
    ANALYZE;
";

/// A cluster with weft and the semantics tests' tables, and a session.
fn with_semantics_tables() -> (Cluster, Client) {
    let cluster = Cluster::start();
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION weft").unwrap();
    client.batch_execute(SEMANTICS_SETUP).unwrap();
    (cluster, client)
}

#[test]
fn postgres_semantics_hold_when_weft_runs_a_query() {
    let (_cluster, mut client) = with_semantics_tables();
    check_both_ways(
        &mut client,
        &[
            // Integer overflow and division by zero: Postgres's errors.
            (true, "SELECT a + 1 FROM t WHERE a > 100"),
            (true, "SELECT sum(a * 2) FROM t"),
            (true, "SELECT b * 2 FROM t WHERE b > 1000"),
            (true, "SELECT a / (a - a) FROM t WHERE a = 1"),
            (true, "SELECT a / 2, -a / 2, a - 10 FROM t ORDER BY 1, 2, 3"),
            // NULLs in NOT IN, IN and aggregates.
            (true, "SELECT count(*) FROM t WHERE a NOT IN (SELECT c FROM nulls)"),
            (true, "SELECT count(*) FROM t WHERE a NOT IN (SELECT c FROM nonnull)"),
            (true, "SELECT count(*) FROM t WHERE a IN (SELECT c FROM nulls)"),
            // (Where its NULL is not false, IN over columns that may hold
            // NULLs stays with Postgres.)
            (false, "SELECT a IN (SELECT c FROM nulls) FROM t ORDER BY a"),
            (true, "SELECT count(*) FROM keyed WHERE k NOT IN (SELECT k FROM keyed2)"),
            (true, "SELECT count(*) FROM keyed WHERE k IN (SELECT k FROM keyed2)"),
            (true, "SELECT count(*) FROM t WHERE a NOT IN (1, NULL)"),
            (
                true,
                "SELECT count(*), count(a), sum(a::bigint), sum(b), min(n), max(d), count(DISTINCT ch) FROM t",
            ),
            // numeric: avg and division keep Postgres's scale.
            (true, "SELECT avg(n), sum(n) / count(n), avg(a), avg(b), sum(n) FROM t"),
            (true, "SELECT ch, avg(n) FROM t GROUP BY ch ORDER BY ch"),
            // Quotients compared by value: rounded where Postgres rounds.
            (true, "SELECT a FROM t WHERE n > (SELECT avg(n) FROM t) ORDER BY a"),
            (true, "SELECT a FROM t WHERE n / 3 < 0.5 ORDER BY a"),
            (true, "SELECT a FROM t WHERE a::numeric / 3 = 0.66666666666666666667"),
            (true, "SELECT a FROM t WHERE a::numeric / 3 = 0.6666666666666667"),
            (
                true,
                "SELECT a FROM t WHERE 1000000 / a::numeric > 142857.142857 ORDER BY a",
            ),
            (true, "SELECT count(*) FROM t WHERE n / (a - a) > 0"),
            // Sums of differences and products of numerics with each
            // value's display scale (COALESCE with 0): the sum shows the
            // largest; negation keeps a numeric's scale.
            (
                true,
                "SELECT ch, sum(n - coalesce(n * a, 0)), sum(coalesce(n, 0) * 2.50), sum(-coalesce(n, 1)), -sum(n)
                   FROM t GROUP BY ch ORDER BY ch",
            ),
            (true, "SELECT a, -n FROM t ORDER BY -n, a"),
            // concat: NULLs skipped, chars shown padded to their length,
            // an untyped literal as its text.
            (
                true,
                "SELECT a, concat('k', ch, s, a, NULL, b), concat(NULL::text), concat(ch) FROM t ORDER BY a",
            ),
            // Empty tables.
            (true, "SELECT count(*), sum(a), avg(n), max(n) FROM empty"),
            (true, "SELECT a, count(*) FROM empty GROUP BY a"),
            // Floats: Postgres's -0 = 0 and NaN ordering are its own;
            // weft sorts floats by Postgres's comparison (pg:order), and
            // compares them through Postgres's own function (the bridge).
            (true, "SELECT f FROM t ORDER BY f"),
            (true, "SELECT count(*) FROM t WHERE f = 0"),
            // bpchar: equality ignores padding.
            (true, "SELECT a FROM t WHERE ch = 'ab' ORDER BY a"),
            (true, "SELECT ch, count(*) FROM t GROUP BY ch ORDER BY 1"),
            // Dates, timestamps, EXTRACT, LIKE with its default escape.
            (
                true,
                "SELECT extract(year FROM d), count(*) FROM t GROUP BY 1 ORDER BY 1",
            ),
            (
                true,
                "SELECT ts FROM t WHERE ts > timestamptz '2020-01-01 00:00+00' ORDER BY ts",
            ),
            // A date compared with a timestamptz depends on TimeZone:
            // Postgres compares them in each participant, under the
            // session's TimeZone (the bridge).
            (true, "SELECT ts FROM t WHERE ts > date '2020-01-01' ORDER BY ts"),
            (true, "SELECT s FROM t WHERE s LIKE 'a\\_%' ORDER BY s"),
            (true, "SELECT s FROM t WHERE s NOT LIKE 'a%' ORDER BY s"),
            (
                true,
                "SELECT substring(s FROM 2 FOR 2), count(*) FROM t GROUP BY 1 ORDER BY 1",
            ),
            (false, "SELECT s FROM t WHERE substring(s FROM 0 FOR 2) = 'a'"),
            // CASE, COALESCE, IS NULL.
            (
                true,
                "SELECT CASE WHEN a > 2 THEN 'big' ELSE 'small' END, coalesce(b, -1) FROM t ORDER BY 2",
            ),
            (true, "SELECT count(*) FROM t WHERE d IS NULL OR n IS NOT NULL"),
            // LIMIT and OFFSET with ties (only the sort key is returned).
            (true, "SELECT ch FROM t ORDER BY ch NULLS FIRST LIMIT 3"),
            (true, "SELECT a FROM t ORDER BY a DESC LIMIT 2 OFFSET 1"),
            // A function off the allowlist in a result column: Postgres
            // finishes it; in WHERE: Postgres evaluates it in each
            // participant (the bridge).
            (true, "SELECT upper(s), a FROM t ORDER BY a"),
            (true, "SELECT a FROM t WHERE upper(s) = 'ABC'"),
            // Tuples written before columns were added (a NULL, and a
            // default Postgres keeps aside) and after one was dropped.
            (true, "SELECT a, b, length(t) FROM grown ORDER BY a"),
            (true, "SELECT a, c FROM grown ORDER BY a"),
            // Derived tables, WITH, EXISTS, scalar subqueries.
            (
                true,
                "WITH x AS (SELECT a, b FROM t WHERE a < 10) SELECT count(*) FROM x JOIN t USING (a)",
            ),
            (
                true,
                "SELECT a FROM t WHERE EXISTS (SELECT 1 FROM nulls WHERE c = t.a) ORDER BY a",
            ),
            (true, "SELECT a, (SELECT max(c) FROM nulls) FROM t ORDER BY a"),
            (
                true,
                "SELECT x.a FROM (SELECT a FROM t LEFT JOIN nulls ON c = a) x ORDER BY 1",
            ),
        ],
    );
    // timestamptz under another TimeZone: Postgres formats the values.
    client.batch_execute("SET TimeZone = 'America/St_Johns'").unwrap();
    check_both_ways(&mut client, &[(true, "SELECT ts, d FROM t ORDER BY ts")]);
}

#[test]
fn queries_weft_cannot_run_go_to_postgres() {
    let (_cluster, mut client) = with_semantics_tables();
    check_both_ways(
        &mut client,
        &[
            (false, "SELECT a FROM t WHERE random() < 2 ORDER BY a"),
            (false, "SELECT a FROM t ORDER BY a FOR UPDATE"),
            (
                false,
                "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 5) SELECT sum(i) FROM r",
            ),
            (true, "SELECT a FROM t INTERSECT ALL SELECT c FROM nulls ORDER BY 1"),
            (false, "SELECT a, lag(a) OVER (ORDER BY a) FROM t ORDER BY a"),
        ],
    );
    // Writes and cursors run through the stock executor.
    client
        .batch_execute("SET weft.force = on; CREATE TABLE copy (a int); INSERT INTO copy SELECT a FROM t WHERE a < 10")
        .unwrap();
    let copied = text_rows(&mut client, "SELECT count(*) FROM copy").unwrap();
    assert_eq!(copied, vec![vec![Some("4".to_string())]]);
    client
        .batch_execute("UPDATE copy SET a = a + 1 WHERE a IN (SELECT c FROM nulls)")
        .unwrap();
    assert_eq!(
        text_rows(&mut client, "SELECT a FROM copy ORDER BY a").unwrap(),
        text_rows(&mut client, "SELECT * FROM (VALUES (2), (2), (4), (7)) v ORDER BY 1").unwrap()
    );
    client
        .batch_execute("BEGIN; DECLARE c CURSOR FOR SELECT a FROM t ORDER BY a")
        .unwrap();
    let fetched = text_rows(&mut client, "FETCH ALL FROM c").unwrap();
    client.batch_execute("COMMIT").unwrap();
    client.batch_execute("SET weft.enable = off").unwrap();
    assert_eq!(fetched, text_rows(&mut client, "SELECT a FROM t ORDER BY a").unwrap());
    // A prepared statement's parameters: weft takes a custom plan, whose
    // values it knows, and a generic plan, translated again with the
    // values when it runs (made again here: the plan cache keeps the one
    // made while weft was off).
    client.batch_execute("SET weft.enable = on").unwrap();
    client
        .batch_execute("PREPARE p(int, text) AS SELECT count(*), max(a) FROM t WHERE a > $1 OR s = $2")
        .unwrap();
    for args in ["(2, 'z')", "(0, NULL)", "(100, 'abc')"] {
        let sql = format!("EXECUTE p{args}");
        let (weft, stock) = both_ways(&mut client, &sql);
        assert_eq!(weft.unwrap(), stock.unwrap(), "{sql}");
    }
    client
        .batch_execute("SET weft.force = on; SET plan_cache_mode = force_custom_plan")
        .unwrap();
    assert!(taken(&mut client, "EXECUTE p(2, 'z')"));
    client
        .batch_execute("SET plan_cache_mode = force_generic_plan; DISCARD PLANS")
        .unwrap();
    assert!(taken(&mut client, "EXECUTE p(2, 'z')"));
    let (weft, stock) = both_ways(&mut client, "EXECUTE p(2, 'z')");
    assert_eq!(weft.unwrap(), stock.unwrap());
}

#[test]
fn privileges_and_row_security_are_postgres_s() {
    let (cluster, mut client) = with_semantics_tables();
    client
        .batch_execute(
            "CREATE ROLE reader LOGIN; GRANT USAGE ON SCHEMA public TO reader;
             GRANT SELECT ON nulls TO reader;
             CREATE TABLE secret (owner text, v int);
             INSERT INTO secret VALUES ('reader', 1), ('other', 2), ('reader', 3);
             ALTER TABLE secret ENABLE ROW LEVEL SECURITY;
             CREATE POLICY mine ON secret USING (owner = current_user);
             GRANT SELECT ON secret TO reader;
             CREATE FUNCTION count_t() RETURNS bigint SECURITY DEFINER LANGUAGE sql
                 AS 'SELECT count(*) FROM t WHERE a > 1';
             GRANT EXECUTE ON FUNCTION count_t() TO reader;",
        )
        .unwrap();
    let mut reader = cluster.connect_as("reader");
    reader.batch_execute("SET weft.force = on").unwrap();
    // No SELECT on t: Postgres's own error, with weft on or off.
    let (weft, stock) = both_ways(&mut reader, "SELECT count(*) FROM t");
    assert_eq!(weft, stock);
    assert!(weft.unwrap_err().contains("permission denied for table t"));
    // Row-level security: the rows the policy allows (weft leaves it).
    check_both_ways(&mut reader, &[(false, "SELECT v FROM secret ORDER BY v")]);
    assert_eq!(
        text_rows(&mut reader, "SELECT v FROM secret ORDER BY v").unwrap(),
        vec![vec![Some("1".to_string())], vec![Some("3".to_string())]]
    );
    // A granted table works; a security definer function reads as its owner.
    check_both_ways(&mut reader, &[(true, "SELECT count(*) FROM nulls")]);
    let (weft, stock) = both_ways(&mut reader, "SELECT count_t()");
    assert_eq!(weft, stock);
    assert_eq!(weft.unwrap(), vec![vec![Some("4".to_string())]]);
}

#[test]
fn concurrent_sessions_and_timeouts_behave_as_in_postgres() {
    let cluster = Cluster::start_with(&[("max_worker_processes", "16"), ("max_parallel_workers", "16")]);
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION weft").unwrap();
    client
        .batch_execute(
            "CREATE TABLE big (id int, g int);
             INSERT INTO big SELECT i, i % 20 FROM generate_series(1, 200000) i; ANALYZE big;",
        )
        .unwrap();
    let sql = "SELECT g, count(*), sum(id::bigint) FROM big GROUP BY g ORDER BY g";
    client.batch_execute("SET weft.enable = off").unwrap();
    let expected = text_rows(&mut client, sql).unwrap();
    std::thread::scope(|scope| {
        let sessions: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mut session = cluster.connect();
                    session.batch_execute("SET weft.force = on").unwrap();
                    assert!(taken(&mut session, sql));
                    (0..3)
                        .map(|_| text_rows(&mut session, sql).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for session in sessions {
            for rows in session.join().unwrap() {
                assert_eq!(rows, expected);
            }
        }
    });
    // A statement_timeout ends a taken-over query with Postgres's error,
    // and the session goes on.
    client
        .batch_execute("SET weft.enable = on; SET weft.force = on; SET statement_timeout = '500ms'")
        .unwrap();
    let long = "SELECT count(*) FROM big a JOIN big b ON a.g = b.g";
    assert!(taken(&mut client, long));
    let started = std::time::Instant::now();
    let error = text_rows(&mut client, long).unwrap_err();
    assert!(
        error.contains("57014") && error.contains("statement timeout"),
        "{error}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    client.batch_execute("SET statement_timeout = 0").unwrap();
    assert_eq!(text_rows(&mut client, sql).unwrap(), expected);
}

#[test]
fn explain_shows_the_weft_scan_and_its_plan() {
    let (_cluster, mut client) = with_semantics_tables();
    client.batch_execute("SET weft.force = on").unwrap();
    let sql = "SELECT ch, count(*) FROM t GROUP BY ch ORDER BY ch";
    let plan = text_rows(&mut client, &format!("EXPLAIN {sql}")).unwrap();
    let plan: Vec<String> = plan.into_iter().flatten().flatten().collect();
    assert!(plan[0].starts_with("Custom Scan (Weft)"), "{plan:#?}");
    assert!(plan.iter().any(|l| l.contains("HeapScan: public.t")), "{plan:#?}");
    assert!(plan.iter().any(|l| l.contains("weft plan for")), "{plan:#?}");
    let analyzed = text_rows(&mut client, &format!("EXPLAIN ANALYZE {sql}")).unwrap();
    let analyzed: Vec<String> = analyzed.into_iter().flatten().flatten().collect();
    assert!(analyzed[0].contains("actual time"), "{analyzed:#?}");
    assert!(analyzed.iter().any(|l| l.contains("rows")), "{analyzed:#?}");
    // The scan says how many rows it output and how many tuples it read.
    let count: i64 = text_rows(&mut client, "SELECT count(*) FROM t").unwrap()[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let scan = analyzed
        .iter()
        .find(|l| l.contains("HeapScan: public.t"))
        .unwrap_or_else(|| panic!("{analyzed:#?}"));
    assert!(
        scan.contains("output_rows=") && scan.contains("tuples_examined="),
        "{scan}"
    );
    client.batch_execute("SET weft.workers = 0").unwrap();
    let single = explain_lines(&mut client, &format!("EXPLAIN ANALYZE {sql}"));
    let examined = format!("tuples_examined={count}");
    assert!(
        single
            .lines()
            .any(|l| l.contains("HeapScan: public.t") && l.contains(&examined)),
        "{examined}: {single}"
    );
    client.batch_execute("RESET weft.workers").unwrap();
    // A query left to Postgres says why, with weft.explain_fallback.
    client
        .batch_execute("SET weft.force = off; SET weft.min_cost = 1e9")
        .unwrap();
    let plan = text_rows(&mut client, &format!("EXPLAIN {sql}")).unwrap();
    assert!(!plan.iter().flatten().flatten().any(|l| l.contains("Weft")));
    client.batch_execute("SET weft.explain_fallback = on").unwrap();
    let plan = explain_lines(&mut client, &format!("EXPLAIN {sql}"));
    assert!(plan.contains("Weft: not used: the stock plan's cost"), "{plan}");
    client.batch_execute("SET weft.force = on").unwrap();
    let plan = explain_lines(&mut client, "EXPLAIN SELECT a FROM t WHERE random() < 2");
    assert!(
        plan.contains("Weft: not used: function random: a volatile function"),
        "{plan}"
    );
    // VERBOSE names the scan's output.
    let verbose = explain_lines(&mut client, &format!("EXPLAIN (VERBOSE) {sql}"));
    assert!(verbose.contains("Output:"), "{verbose}");
    let verbose = explain_lines(
        &mut client,
        "EXPLAIN (VERBOSE) SELECT avg(n), upper(s) FROM t GROUP BY s",
    );
    assert!(verbose.contains("Custom Scan (Weft)"), "{verbose}");
    // The other formats keep Postgres's structure.
    let json = explain_lines(&mut client, &format!("EXPLAIN (FORMAT JSON) {sql}"));
    assert!(json.contains("\"Custom Plan Provider\": \"Weft\""), "{json}");
}

/// A WITH query read in two places (TPC-H Q15's shape) is computed once,
/// under the place that ran first, and gives Postgres's rows.
/// EXPLAIN of a taken query in the structured formats is what Postgres's
/// own parsers accept, with the distributed plan's operators nested as
/// plan nodes under the Weft scan; after a run, an operator's rows are
/// summed over the participants (a scan shared among them counts every
/// row of its table once).
#[test]
fn explain_in_structured_formats_nests_the_distributed_plan() {
    let cluster = Cluster::start();
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION weft").unwrap();
    tpch::load(&mut client, 0.01);
    client
        .batch_execute("SET max_parallel_workers_per_gather = 2; SET weft.force = on")
        .unwrap();
    let lineitems: i64 = client.query_one("SELECT count(*) FROM lineitem", &[]).unwrap().get(0);
    let q1 = tpch::queries()
        .into_iter()
        .find(|(number, _)| *number == 1)
        .map(|(_, sql)| sql.trim().trim_end_matches(';').to_string())
        .unwrap();
    let whole = "SELECT l_returnflag, count(*) FROM lineitem GROUP BY l_returnflag ORDER BY 1";
    // The Weft scan's node, found wherever it sits in the plan.
    let weft = "strict $.** ? (@.\"Custom Plan Provider\" == \"Weft\")";
    for sql in [q1.as_str(), whole] {
        for options in ["FORMAT JSON", "FORMAT JSON, ANALYZE", "FORMAT JSON, ANALYZE, VERBOSE"] {
            let json = explain_lines(&mut client, &format!("EXPLAIN ({options}) {sql}"));
            let row = client
                .query_one(
                    &format!(
                        "SELECT jsonb_path_query_array(p, '{weft}.Plans[0].Plans[0].\"Node Type\"')::text,
                                jsonb_path_query_array(p, '{weft}.Plans.** ? (@.\"Node Type\" == \"HeapScanExec\").\"Actual Rows\"')::text,
                                jsonb_path_query_array(p, '{weft}.Plans.** ? (@.\"Node Type\" == \"HeapScanExec\").\"Actual Loops\"')::text,
                                jsonb_path_query_array(p, '{weft}.\"Weft Exchanges\"[*].Rows')::text
                           FROM (SELECT $1::text::jsonb AS p) plan"
                    ),
                    &[&json],
                )
                .unwrap_or_else(|e| panic!("EXPLAIN ({options}) is not JSON Postgres reads: {e}\n{json}"));
            let nested: String = row.get(0);
            assert!(
                nested.starts_with("[\"") && nested != "[]",
                "{options}: no nested plan nodes\n{json}"
            );
            let scanned: String = row.get(1);
            let loops: String = row.get(2);
            let exchanges: String = row.get(3);
            if options.contains("ANALYZE") {
                assert_eq!(loops, "[1]", "{options}: {json}");
                assert_ne!(exchanges, "[]", "{options}: no exchange traffic\n{json}");
                if sql == whole {
                    assert_eq!(scanned, format!("[{lineitems}]"), "{options}: {json}");
                }
            } else {
                assert_eq!((scanned.as_str(), loops.as_str()), ("[]", "[]"), "{options}: {json}");
            }
        }
        for format in ["XML", "YAML"] {
            for analyze in ["", ", ANALYZE, VERBOSE"] {
                let text = explain_lines(&mut client, &format!("EXPLAIN (FORMAT {format}{analyze}) {sql}"));
                assert!(text.contains("HeapScanExec"), "{format}{analyze}: {text}");
                if format == "XML" {
                    let document: bool = client
                        .query_one("SELECT $1::text::xml IS DOCUMENT", &[&text])
                        .unwrap_or_else(|e| panic!("EXPLAIN (FORMAT XML{analyze}) is not XML: {e}\n{text}"))
                        .get(0);
                    assert!(document, "{text}");
                }
            }
        }
    }
}

#[test]
fn a_with_query_read_twice_is_computed_once() {
    let (_cluster, mut client) = with_semantics_tables();
    let sql = "WITH s AS (SELECT ch AS g, sum(b) AS total FROM t GROUP BY ch) \
               SELECT g, total FROM s WHERE total = (SELECT max(total) FROM s) ORDER BY g";
    check_both_ways(&mut client, &[(true, sql)]);
    for workers in [0, 1] {
        client
            .batch_execute(&format!("SET weft.force = on; SET weft.workers = {workers}"))
            .unwrap();
        let plan = explain_lines(&mut client, &format!("EXPLAIN ANALYZE {sql}"));
        assert_eq!(plan.matches("WeftShared: id=0, consumers=2").count(), 2, "{plan}");
        assert_eq!(plan.matches("read from its other place").count(), 1, "{plan}");
        if workers == 0 {
            // Six tuples in t: read by one of the two scans.
            assert_eq!(plan.matches("tuples_examined=6").count(), 1, "{plan}");
        }
    }
    client.batch_execute("RESET weft.workers").unwrap();
}

/// EXPLAIN's output as one text.
fn explain_lines(client: &mut Client, sql: &str) -> String {
    let rows = text_rows(client, sql).unwrap();
    let lines: Vec<String> = rows.into_iter().flatten().flatten().collect();
    lines.join("\n")
}

#[test]
fn collations_other_than_c_keep_postgres_s_order() {
    let cluster = Cluster::start();
    let mut admin = cluster.connect();
    admin
        .batch_execute("CREATE DATABASE icu TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
        .unwrap();
    let mut client = cluster.connect_to("icu", "postgres");
    client
        .batch_execute(
            "CREATE EXTENSION weft;
             CREATE COLLATION caseless (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
             CREATE TABLE words (w text, c text COLLATE caseless, n int);
             INSERT INTO words VALUES ('b', 'b', 1), ('B', 'B', 2), ('a', 'A', 3), ('A', 'a', 4), ('é', 'É', 5), ('e', 'e', 6);
             ANALYZE words;",
        )
        .unwrap();
    check_both_ways(
        &mut client,
        &[
            // en-US orders a, A, b, B, e, é (bytes would put 'B' before
            // 'a'): weft orders and compares by Postgres's comparison.
            (true, "SELECT w FROM words ORDER BY w"),
            (true, "SELECT w, n FROM words WHERE w > 'a' ORDER BY n"),
            // Equality and grouping under a deterministic collation are
            // byte equality: weft takes them.
            (true, "SELECT count(*) FROM words WHERE w = 'b'"),
            (
                true,
                "SELECT count(*), sum(n) FROM (SELECT w, min(n) AS n FROM words GROUP BY w) x",
            ),
            // A nondeterministic collation's equality is not.
            (false, "SELECT count(*) FROM words WHERE c = 'b'"),
            (false, "SELECT c, count(*) FROM words GROUP BY c ORDER BY 2"),
            (false, "SELECT count(DISTINCT c) FROM words"),
        ],
    );
}

#[test]
fn a_database_not_in_utf8_stays_with_postgres() {
    let cluster = Cluster::start();
    cluster
        .connect()
        .batch_execute("CREATE DATABASE latin TEMPLATE template0 ENCODING 'LATIN1' LOCALE 'C'")
        .unwrap();
    let mut client = cluster.connect_to("latin", "postgres");
    client
        .batch_execute(
            "CREATE EXTENSION weft;
             CREATE TABLE w (s text, n int);
             INSERT INTO w VALUES ('caf\u{e9}', 1), ('b', 2);",
        )
        .unwrap();
    // weft reads text as UTF-8: in another encoding it leaves every query
    // to Postgres, which answers as always.
    check_both_ways(&mut client, &[(false, "SELECT s, n FROM w ORDER BY n")]);
}

/// Rows with every kind of value the scan's filters compare: extremes,
/// infinities and NaN, NULLs in every column, empty and multibyte strings, bpchar padding,
/// LIKE's own characters, a compressed (TOASTed) value, a dropped column
/// before the filtered ones; then enough generated rows that the scan
/// spans many pages and both participants.
const FILTER_SETUP: &str = "
    CREATE TABLE f (id int4, gone int4, i2 int2, i4 int4, i8 int8, n numeric(15,2), n0 numeric(10,0),
                    d date, ts timestamp, tz timestamptz, t text, c char(5), v varchar(10), b bool);
    ALTER TABLE f DROP COLUMN gone;
    INSERT INTO f VALUES
      (1, 32767, 2147483647, 9223372036854775807, 9999999999999.99, 9999999999, '1995-06-01',
          '1995-02-01 12:00', '1995-03-01 00:00+00', 'abc', 'ab', 'a', true),
      (2, -32768, -2147483648, -9223372036854775808, -9999999999999.99, -9999999999, '1995-06-30',
          '1995-02-01 11:59:59.999999', '1995-02-28 23:59:59+00', '', 'ab   ', 'b', false),
      (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (4, 0, 0, 0, 0.00, 0, '1995-07-01', '1995-01-01', '1995-03-01 00:00:00.000001+00',
          'é%_\\x', '', 'x', NULL),
      (5, 5, 5, 5, 0.05, 5, '1996-01-01', '2000-01-01', '2001-01-01+00', 'abcdeff', 'x', NULL, true),
      (6, -1, -1, -1, -0.01, -1, '1995-05-31', '1994-12-31 23:59', '1990-01-01+00', 'cd', 'zz', 'zz', false);
    INSERT INTO f VALUES (7, 1, 1, 1, 1, 1, '1995-06-15', '1995-06-15', '1995-06-15+00',
                          repeat('x', 200000) || 'tail', 'x', 'x', true);
    -- Values Arrow cannot hold: filters on them still give Postgres's answer.
    INSERT INTO f (id, n, d, ts, tz) VALUES (8, 'NaN', 'infinity', '-infinity', 'infinity'),
                                            (9, NULL, '-infinity', 'infinity', '-infinity');
    INSERT INTO f SELECT g, (g % 100 - 50)::int2, g * 7 % 1000, g::int8 * 1000003 % 99991,
                         (g % 1000) / 7.0, g % 97, date '1995-01-01' + g % 800,
                         timestamp '1995-01-01' + g * interval '37 minutes',
                         timestamptz '1995-01-01 00:00+00' + g * interval '41 minutes',
                         CASE WHEN g % 11 = 0 THEN NULL ELSE md5(g::text) END,
                         substr(md5(g::text), 1, g % 5), substr(md5(g::text), 2, g % 7),
                         CASE WHEN g % 13 = 0 THEN NULL ELSE g % 3 = 0 END
                  FROM generate_series(10, 60000) g;
    CREATE TABLE late (id int4, a int4);
    INSERT INTO late SELECT g, g % 10 FROM generate_series(1, 20000) g;
    ALTER TABLE late ADD COLUMN extra int4 DEFAULT 7;
    INSERT INTO late SELECT g, g % 10, g % 9 FROM generate_series(20001, 30000) g;
    ANALYZE f; ANALYZE late;
";

#[test]
fn filters_evaluated_in_the_scan_keep_postgres_s_answers() {
    let cluster = Cluster::start();
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION weft").unwrap();
    client.batch_execute(FILTER_SETUP).unwrap();
    // Each filter goes into the scan (EXPLAIN shows it there) and returns
    // stock Postgres's rows.
    let pushed = [
        "i4 > 500",
        "i2 = -3",
        "i8 >= 100 AND i8 <= 5000",
        "i8 = 9223372036854775807 OR i8 = -9223372036854775808",
        "i4 = 2147483647 OR i4 = -2147483648 OR i2 = -32768",
        "n < 50.5",
        "n >= 10",
        "n = 9999999999999.99 OR n = -9999999999999.99 OR n = -0.01",
        "n0 = 42",
        "d >= date '1995-06-01' AND d < date '1995-06-01' + interval '1 month'",
        "d = date '1996-01-01'",
        "d > date '1995-06-01' - 1",
        "ts < timestamp '1995-02-01 12:00'",
        "ts >= timestamp '1995-02-01 11:59:59.999999' AND ts <= timestamp '1995-02-01 12:00'",
        "tz >= timestamptz '1995-03-01 00:00+00'",
        "tz < timestamptz '1995-03-01 00:00:00.000001+00'",
        "t = 'abc'",
        "t = ''",
        "t = 'é%_\\x'",
        "t LIKE 'ab%'",
        "t LIKE '%c%d%'",
        "t LIKE '%ff'",
        "t LIKE '%tail'",
        "t LIKE 'é%'",
        "t NOT LIKE '%a%'",
        "c = 'ab'",
        "c = ''",
        "c IN ('ab', 'x')",
        "v IN ('a', 'zz')",
        "v NOT IN ('a', 'b')",
        "v IN ('a', NULL)",
        "b",
        "NOT b",
        "b IS NULL",
        "t IS NOT NULL AND c IS NULL",
        "i4 IS NULL OR n > 100",
        "NOT (i4 > 10 AND n < 5)",
        "i4 > i2",
        "ts > d",
        "d < date '1995-06-01'",
        "d >= date '1995-06-01' OR ts >= timestamp '1995-06-01'",
        "n > 9999999999999.98",
        "n IN (0.05, -0.01)",
        "i4 = 999999",
        // Conjuncts on attributes far apart, each tested once its inputs
        // are read (a tuple leaves at the first that fails).
        "i2 < 0 AND n > 10 AND t LIKE '%a%'",
        "b AND i4 > 100 AND d < date '1995-09-01'",
        "t IS NULL AND i2 > 0",
        "v <> 'zz' AND (i8 > 50000 OR c IS NULL) AND n0 < 3",
        // Comparisons with constants tested as the walk reads the column
        // (one range per column): empty and one-value ranges, the type's
        // extremes, infinities beyond every finite date and timestamp.
        "i4 > 10 AND i4 < 5",
        "i4 >= 7 AND i4 <= 7 AND i2 > -100",
        "i8 > 9223372036854775806 OR i8 < -9223372036854775807",
        "i8 >= 9223372036854775807 AND i2 >= 32767",
        "i2 < -32767",
        "d > date '1995-06-01' AND d < date '1995-07-01' AND ts >= timestamp '1995-01-01'",
        "d > date '2100-01-01'",
        "d < date '1900-01-01' AND n IS NULL",
        "ts > timestamp '1999-01-01' AND i4 <> 5",
        "tz <= timestamptz '1990-01-01 00:00+00'",
        "i4 > 100 AND d >= date '1995-03-01' AND n > 50 AND i4 < 600",
        // Numerics too, NaN above every number (so within `n > c`'s
        // range and no other): TPC-H Q6's quantities and discounts.
        "n >= 0.05 AND n <= 0.07 AND n0 < 24",
        "n > 10 AND n < 10.5",
        "n BETWEEN -0.01 AND 0",
        "n <= -9999999999999.99 OR n0 >= 9999999999",
        "n > 9999999999999.98 AND n0 > 0",
        "n0 > 2.5 AND n0 < 7.000001",
        "n < 50.505 AND n = 0.05",
        "n = 0.055",
        "0.05 < n AND 1 > n",
        // A date against timestamps (a cast by 86400 seconds' worth):
        // bounds between two days, on one, and on none.
        "d >= date '1995-06-01' AND d < date '1995-06-01' + interval '1 year'",
        "d < timestamp '1995-06-01 12:00' AND d > timestamp '1995-05-30 23:59:59.999999'",
        "d <= timestamp '1995-06-01 00:00' OR d >= timestamp '1996-01-01 00:00:00.000001'",
        "d = timestamp '1995-06-01'",
        "d = timestamp '1995-06-01 00:00:01'",
    ];
    // Filters the scan leaves to DataFusion, still exact.
    let kept = [
        "t LIKE 'a_c%'",
        "t LIKE '%\\%%'",
        // DataFusion rewrites it to a CASE.
        "t LIKE '%'",
        "substring(t from 1 for 2) = 'ab'",
        "i4 + 1 > 500",
    ];
    let mut failures = Vec::new();
    for (filter, expect_pushed) in pushed.iter().map(|f| (f, true)).chain(kept.iter().map(|f| (f, false))) {
        let sql = format!("SELECT id FROM f WHERE {filter} ORDER BY id");
        client.batch_execute("SET weft.force = on").unwrap();
        let plan = explain_lines(&mut client, &format!("EXPLAIN {sql}"));
        let in_scan = plan
            .lines()
            .any(|l| l.contains("HeapScan: public.f") && l.contains("filter=["));
        if !plan.contains("Custom Scan (Weft)") || in_scan != expect_pushed {
            failures.push(format!("{filter}: expected in the scan: {expect_pushed}\n{plan}"));
        }
        let (weft, stock) = both_ways(&mut client, &sql);
        if weft != stock {
            failures.push(format!("{filter}\n  weft:  {weft:?}\n  stock: {stock:?}"));
        }
        // count(*) reads no output column: the filter alone.
        let (weft, stock) = both_ways(&mut client, &format!("SELECT count(*) FROM f WHERE {filter}"));
        if weft != stock {
            failures.push(format!(
                "count(*) WHERE {filter}\n  weft:  {weft:?}\n  stock: {stock:?}"
            ));
        }
    }
    // Folded away before any scan: the answer alone.
    for filter in ["v NOT IN ('a', NULL)", "i4 > 1 AND false"] {
        let (weft, stock) = both_ways(&mut client, &format!("SELECT count(*) FROM f WHERE {filter}"));
        if weft != stock {
            failures.push(format!("{filter}\n  weft:  {weft:?}\n  stock: {stock:?}"));
        }
    }
    // A column added with a default after rows were written: Postgres's
    // tuple path, the same filter.
    for filter in ["extra = 7", "extra <> 7 AND a = 3", "extra IS NULL"] {
        let sql = format!("SELECT count(*), sum(id) FROM late WHERE {filter}");
        let (weft, stock) = both_ways(&mut client, &sql);
        if weft != stock {
            failures.push(format!("{sql}\n  weft:  {weft:?}\n  stock: {stock:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A large probe table `p` with integer keys of three widths (NULLs,
/// negatives and extremes among them), and small build tables: `b` with
/// dense keys, repeats and NULLs, `w` with keys spanning the whole int8
/// range (a hash set rather than a bitmap).
const KEYS_SETUP: &str = "
CREATE TABLE p (id int, k2 int2, k4 int4, k8 int8, pad text);
INSERT INTO p SELECT g,
    CASE WHEN g % 97 = 0 THEN NULL ELSE (g % 20000 - 10000)::int2 END,
    CASE WHEN g % 89 = 0 THEN NULL ELSE g / 3 END,
    CASE WHEN g % 83 = 0 THEN NULL WHEN g % 1000 = 1 THEN 9223372036854775807
         WHEN g % 1000 = 2 THEN -9223372036854775808 ELSE g::int8 * 1000003 END,
    repeat('x', g % 40)
  FROM generate_series(1, 200000) g;
CREATE TABLE b (k2 int2, k4 int4, k8 int8, tag text);
INSERT INTO b SELECT (g * 7 - 300)::int2, g * 311, g::int8 * 1000003 * 13, 't' || g % 7
  FROM generate_series(1, 150) g;
INSERT INTO b VALUES (NULL, NULL, NULL, 'null'), (-9999, 3, 1000003, 'dup'), (-9999, 3, 1000003, 'dup2'),
    (32767, 999999999, 42, 'absent');
CREATE TABLE w (k8 int8, tag text);
INSERT INTO w VALUES (9223372036854775807, 'max'), (-9223372036854775808, 'min'), (13000039, 'mid'),
    (NULL, 'null'), (5, 'absent');
ANALYZE p; ANALYZE b; ANALYZE w;
";

#[test]
fn join_keys_filter_the_probe_scan_without_changing_answers() {
    let cluster = Cluster::start();
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION weft").unwrap();
    client.batch_execute(KEYS_SETUP).unwrap();
    // (query, whether p's scan must be filtered by the join's keys with 0
    // and with 1 worker)
    let cases = [
        (
            "SELECT p.id, b.tag FROM p JOIN b ON p.k4 = b.k4 ORDER BY 1, 2",
            [true, true],
        ),
        (
            "SELECT p.id, b.tag FROM p JOIN b ON p.k2 = b.k2 ORDER BY 1, 2",
            [true, true],
        ),
        (
            "SELECT p.id, b.tag FROM p JOIN b ON p.k8 = b.k8 ORDER BY 1, 2",
            [true, true],
        ),
        (
            "SELECT p.id, w.tag FROM p JOIN w ON p.k8 = w.k8 ORDER BY 1, 2",
            [true, true],
        ),
        (
            "SELECT p.id, b.tag FROM p JOIN b ON p.k4 = b.k4 AND p.id > b.k2 ORDER BY 1, 2",
            [true, true],
        ),
        (
            "SELECT p.id FROM p WHERE EXISTS (SELECT 1 FROM b WHERE b.k2 = p.k2) ORDER BY 1",
            [true, true],
        ),
        // A build side preserved by a LEFT JOIN is partitioned across
        // participants (each emits its unmatched rows once).
        (
            "SELECT b.tag, count(p.id) FROM b LEFT JOIN p ON p.k4 = b.k4 GROUP BY 1 ORDER BY 1",
            [true, false],
        ),
        (
            "SELECT count(*), sum(p.id) FROM p JOIN b ON p.k4 = b.k4 JOIN w ON p.k8 = w.k8",
            [true, true],
        ),
        (
            "SELECT x.id, b.tag FROM (SELECT id, k4 FROM p WHERE pad LIKE 'xx%') x JOIN b ON x.k4 = b.k4 ORDER BY 1, 2",
            [true, true],
        ),
        // Rows of p that match nothing are in these answers: no filter.
        (
            "SELECT p.id FROM p WHERE NOT EXISTS (SELECT 1 FROM b WHERE b.k4 = p.k4) ORDER BY 1",
            [false, false],
        ),
        (
            "SELECT p.id, b.tag FROM p LEFT JOIN b ON p.k4 = b.k4 ORDER BY 1, 2",
            [false, false],
        ),
        (
            "SELECT p.id, b.tag FROM p FULL JOIN b ON p.k4 = b.k4 ORDER BY 1, 2",
            [false, false],
        ),
        // Which rows reach a LIMIT depends on all of them.
        (
            "SELECT p.id FROM (SELECT id, k4 FROM p ORDER BY id LIMIT 5000) p JOIN b ON p.k4 = b.k4 ORDER BY 1",
            [false, false],
        ),
        // A computed key is not a column of the scan.
        (
            "SELECT p.id, b.tag FROM p JOIN b ON p.k4 + 0 = b.k4 ORDER BY 1, 2",
            [false, false],
        ),
    ];
    let mut failures = Vec::new();
    for (sql, expect_keys) in cases {
        for (workers, expect_keys) in expect_keys.into_iter().enumerate() {
            client
                .batch_execute(&format!("SET weft.force = on; SET weft.workers = {workers}"))
                .unwrap();
            let plan = explain_lines(&mut client, &format!("EXPLAIN {sql}"));
            let keyed = plan
                .lines()
                .any(|l| l.contains("HeapScan: public.p ") && l.contains("join_keys=["));
            if !plan.contains("Custom Scan (Weft)") || keyed != expect_keys {
                failures.push(format!(
                    "{workers} workers: expected join keys in p's scan: {expect_keys}\n{plan}"
                ));
            }
            failures.extend(mismatch(&mut client, sql, &format!("{workers} workers")));
        }
    }
    // A filtered scan's size is Postgres's estimate (EXPLAIN shows it),
    // also inside subqueries, beside outer references and subqueries.
    client
        .batch_execute("SET weft.force = on; SET weft.workers = 1")
        .unwrap();
    for (sql, low, high) in [
        ("SELECT count(*) FROM p WHERE id < 1000", 500.0, 2000.0),
        (
            "SELECT count(*) FROM p WHERE k4 IS NULL AND pad LIKE 'x%'",
            1000.0,
            4000.0,
        ),
        (
            "SELECT count(*) FROM b WHERE EXISTS (SELECT 1 FROM p WHERE p.k4 = b.k4 AND p.id < 5000)",
            2500.0,
            10000.0,
        ),
        (
            "SELECT count(*) FROM p WHERE id < 1000 AND EXISTS (SELECT 1 FROM b WHERE b.k4 = p.k4 AND b.k2 > 0)",
            500.0,
            2000.0,
        ),
    ] {
        let plan = explain_lines(&mut client, &format!("EXPLAIN {sql}"));
        let estimate = plan
            .lines()
            .filter(|l| l.contains("HeapScan: public.p "))
            .find_map(|l| {
                l.split("estimated_rows=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<f64>()
                    .ok()
            });
        match estimate {
            Some(rows) if (low..=high).contains(&rows) => {}
            _ => failures.push(format!("{sql}: p's estimate {estimate:?} not in {low}..{high}\n{plan}")),
        }
        let (weft, stock) = both_ways(&mut client, sql);
        if weft.is_err() || weft != stock {
            failures.push(format!("{sql}\n  weft:  {weft:?}\n  stock: {stock:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Indexes on `p` (of KEYS_SETUP) that lookups may use, and two they must
/// not (a partial index and an expression index); then dead and updated
/// rows, so that lookups meet index entries of invisible tuples.
const LOOKUP_SETUP: &str = "
CREATE INDEX p_k4 ON p (k4);
CREATE INDEX p_k2 ON p (k2);
CREATE UNIQUE INDEX p_k8_id ON p (k8, id);
CREATE INDEX p_id_partial ON p (id) WHERE id > 100;
CREATE INDEX p_k4_plus ON p ((k4 + 1));
DELETE FROM p WHERE id % 11 = 0;
UPDATE p SET pad = pad || 'u', k4 = k4 + 1 WHERE id % 13 = 0;
ANALYZE p;
";

#[test]
fn index_lookups_read_the_probe_table_through_its_index_without_changing_answers() {
    let cluster = Cluster::start();
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION weft").unwrap();
    client.batch_execute(KEYS_SETUP).unwrap();
    client.batch_execute(LOOKUP_SETUP).unwrap();
    // (query, what p's scan must show: a lookup in that index, "first
    // match" or not, the keys divided among the participants or not with
    // 0 and with 1 worker; None for a scan)
    let own = |index: &'static str, first: bool| Some((index, first, [false, false]));
    let divided = |index: &'static str| Some((index, false, [true, true]));
    let cases = [
        (
            "SELECT p.id, b.tag FROM p JOIN b ON p.k4 = b.k4 ORDER BY 1, 2",
            own("p_k4", false),
        ),
        (
            "SELECT p.id, b.tag FROM p JOIN b ON p.k2 = b.k2 ORDER BY 1, 2",
            own("p_k2", false),
        ),
        // The leading column of a two-column index; int8 extremes.
        (
            "SELECT p.id, b.tag FROM p JOIN b ON p.k8 = b.k8 ORDER BY 1, 2",
            own("p_k8_id", false),
        ),
        (
            "SELECT p.id, w.tag FROM p JOIN w ON p.k8 = w.k8 ORDER BY 1, 2",
            own("p_k8_id", false),
        ),
        (
            "SELECT p.id, b.tag FROM p JOIN b ON p.k4 = b.k4 AND p.id > b.k2 ORDER BY 1, 2",
            own("p_k4", false),
        ),
        (
            "SELECT p.id, b.tag FROM p JOIN b ON p.k4 = b.k4 WHERE p.pad LIKE 'xx%' ORDER BY 1, 2",
            own("p_k4", false),
        ),
        // The build side preserved: its unmatched rows come from the
        // participant that holds them.
        (
            "SELECT b.tag, count(p.id), sum(p.id) FROM b LEFT JOIN p ON p.k4 = b.k4 GROUP BY 1 ORDER BY 1",
            own("p_k4", false),
        ),
        // Semi and anti joins on the key alone stop at a key's first row.
        (
            "SELECT b.tag, b.k4 FROM b WHERE EXISTS (SELECT 1 FROM p WHERE p.k4 = b.k4) ORDER BY 1, 2",
            own("p_k4", true),
        ),
        (
            "SELECT b.tag, b.k4 FROM b WHERE NOT EXISTS (SELECT 1 FROM p WHERE p.k4 = b.k4) ORDER BY 1, 2",
            own("p_k4", true),
        ),
        (
            "SELECT b.tag, b.k4 FROM b WHERE EXISTS (SELECT 1 FROM p WHERE p.k4 = b.k4 AND p.pad LIKE 'xxxx%') ORDER BY 1, 2",
            own("p_k4", true),
        ),
        // One that tests more than the key needs every row of the key.
        (
            "SELECT b.tag, b.k4 FROM b WHERE EXISTS (SELECT 1 FROM p WHERE p.k4 = b.k4 AND p.id <> b.k4 * 3) ORDER BY 1, 2",
            own("p_k4", false),
        ),
        // p's rows once for all the build rows sharing a key: each
        // participant looks up a part of all the keys.
        (
            "SELECT p.id FROM p WHERE EXISTS (SELECT 1 FROM b WHERE b.k2 = p.k2) ORDER BY 1",
            divided("p_k2"),
        ),
        (
            "SELECT p.id FROM p WHERE EXISTS (SELECT 1 FROM b WHERE b.k2 = p.k2) AND p.pad LIKE '%x' ORDER BY 1",
            divided("p_k2"),
        ),
        // A build side that is one participant's (under a LIMIT) is
        // broadcast for 1 worker, and its keys divided.
        (
            "SELECT p.id, s.k4 FROM p JOIN (SELECT k4 FROM b ORDER BY k4 LIMIT 60) s ON p.k4 = s.k4 ORDER BY 1, 2",
            Some(("p_k4", false, [false, true])),
        ),
        // Joins that output p's rows that match nothing scan p.
        (
            "SELECT p.id, b.tag FROM p LEFT JOIN b ON p.k4 = b.k4 ORDER BY 1, 2",
            None,
        ),
        (
            "SELECT p.id, b.tag FROM p FULL JOIN b ON p.k4 = b.k4 ORDER BY 1, 2",
            None,
        ),
        // A partial index does not hold every row; an expression index
        // is not on the column.
        (
            "SELECT p.id, b.tag FROM p JOIN b ON p.id = b.k4 ORDER BY 1, 2",
            None,
        ),
        (
            "SELECT p.id, b.tag FROM p JOIN b ON p.k4 + 1 = b.k4 ORDER BY 1, 2",
            None,
        ),
    ];
    let mut failures = Vec::new();
    let check =
        |client: &mut Client, sql: &str, expect: Option<(&str, bool, [bool; 2])>, failures: &mut Vec<String>| {
            for workers in [0, 1] {
                client
                    .batch_execute(&format!(
                        "SET weft.force = on; SET weft.workers = {workers}; SET weft.explain_fallback = on"
                    ))
                    .unwrap();
                let plan = explain_lines(client, &format!("EXPLAIN {sql}"));
                let shown = plan
                    .lines()
                    .filter(|l| l.contains("HeapScan: public.p "))
                    .find_map(|l| l.split("index_lookup=[").nth(1))
                    .map(|l| l.split(']').next().unwrap_or_default().to_string());
                let expected = expect.map(|(index, first, divided)| {
                    let column = sql_column(sql);
                    let first = if first { ", first match" } else { "" };
                    let divided = if divided[workers] { ", keys divided" } else { "" };
                    format!("{column} in {index}{divided}{first}")
                });
                if !plan.contains("Custom Scan (Weft)") || shown != expected {
                    failures.push(format!(
                        "{workers} workers: {sql}\n  expected lookup {expected:?}, shown {shown:?}\n{plan}"
                    ));
                }
                failures.extend(mismatch(client, sql, &format!("{workers} workers")));
            }
        };
    for (sql, expect) in cases {
        check(&mut client, sql, expect, &mut failures);
    }
    // weft.index_lookup_ratio = 0 turns lookups off.
    client.batch_execute("SET weft.index_lookup_ratio = 0").unwrap();
    check(&mut client, cases[0].0, None, &mut failures);
    // Divided keys are counted when the scan starts: past what lookups
    // pay for (none, at this ratio), every participant scans its share.
    client.batch_execute("SET weft.index_lookup_ratio = 1000000").unwrap();
    for (sql, _) in cases
        .iter()
        .filter(|(_, e)| e.is_some_and(|(_, _, d)| d == [true, true]))
    {
        for workers in [0, 1] {
            client
                .batch_execute(&format!("SET weft.force = on; SET weft.workers = {workers}"))
                .unwrap();
            let plan = explain_lines(&mut client, &format!("EXPLAIN (ANALYZE) {sql}"));
            let scan = plan
                .lines()
                .find(|l| l.contains("HeapScan: public.p "))
                .unwrap_or_default();
            if !scan.contains("scan_past_keys=0") || !scan.contains("keys_looked_up=0") {
                failures.push(format!(
                    "{workers} workers: {sql}\n  expected p scanned past 0 keys\n{plan}"
                ));
            }
            failures.extend(mismatch(&mut client, sql, &format!("{workers} workers, scanned")));
        }
    }
    client.batch_execute("RESET weft.index_lookup_ratio").unwrap();

    // Lookups see the transaction's snapshot: its own deletes and
    // inserts, not another session's uncommitted rows.
    let mut other = cluster.connect();
    other
        .batch_execute(
            "BEGIN; INSERT INTO p SELECT g, 1, 311, 1000003 * 13, 'other' FROM generate_series(300001, 300050) g",
        )
        .unwrap();
    client
        .batch_execute(
            "BEGIN; DELETE FROM p WHERE k4 BETWEEN 600 AND 1300; \
             INSERT INTO p SELECT g, 2, 622, 1000003 * 26, 'mine' FROM generate_series(400001, 400040) g",
        )
        .unwrap();
    for sql in [cases[0].0, cases[2].0, cases[7].0, cases[8].0, cases[11].0] {
        check(
            &mut client,
            sql,
            cases.iter().find(|c| c.0 == sql).unwrap().1,
            &mut failures,
        );
    }
    client.batch_execute("ROLLBACK").unwrap();
    other.batch_execute("ROLLBACK").unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A table whose few heavy keys' entries fill leaves of their own
/// (deduplicated into posting lists in `d_k`, one entry per row in
/// `d_k4`), with NULLs, dead entries and HOT chains, looked up by keys
/// in range, out of it and absent.
const WALK_SETUP: &str = "
CREATE TABLE d (id int, k int8, k4 int4, pad text) WITH (fillfactor = 70);
INSERT INTO d SELECT g,
    CASE WHEN g % 10 = 0 THEN g % 3 ELSE g END,
    CASE WHEN g % 7 = 0 THEN NULL WHEN g % 10 = 1 THEN g % 4 ELSE g END,
    repeat('y', g % 30)
  FROM generate_series(1, 200000) g;
CREATE INDEX d_k ON d (k);
CREATE INDEX d_k4 ON d (k4) WITH (deduplicate_items = off);
DELETE FROM d WHERE id % 5 = 1;
UPDATE d SET pad = pad || 'h' WHERE id % 3 = 0;
CREATE TABLE q (k int8, k4 int4, tag text);
INSERT INTO q SELECT g * 397 - 2000, g * 397 - 2000, 't' || g % 5 FROM generate_series(1, 60) g;
INSERT INTO q VALUES (0, 0, 'heavy'), (1, 1, 'heavy'), (2, 2, 'heavy'), (3, 3, 'heavy'),
    (NULL, NULL, 'null'), (9223372036854775807, 2147483647, 'max');
ANALYZE d; ANALYZE q;
";

/// The leaf walk's counts of `d`'s scan in `plan` (EXPLAIN ANALYZE):
/// leaves read and descents, summed over the participants.
fn walked(plan: &str) -> (f64, f64) {
    // DataFusion prints counts as "72" or "1.20 K".
    let count = |name: &str| -> f64 {
        plan.lines()
            .filter(|l| l.contains("HeapScan: public.d "))
            .filter_map(|l| {
                l.split(&format!("{name}="))
                    .nth(1)?
                    .split([',', ' ', ']'])
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
            .sum()
    };
    (count("index_leaves_read"), count("index_descents"))
}

#[test]
fn index_lookups_walk_btree_leaves_and_fall_back_to_index_scans_where_they_cannot() {
    let cluster = Cluster::start();
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION weft").unwrap();
    client.batch_execute(WALK_SETUP).unwrap();
    let queries = [
        "SELECT d.id, q.tag FROM d JOIN q ON d.k = q.k ORDER BY 1, 2",
        "SELECT d.id, d.pad, q.tag FROM d JOIN q ON d.k4 = q.k4 ORDER BY 1, 2, 3",
        "SELECT q.tag, count(d.id), sum(d.id) FROM q LEFT JOIN d ON d.k = q.k GROUP BY 1 ORDER BY 1",
        // First match: the filter drops a key's first rows, not its last.
        "SELECT q.k, q.tag FROM q WHERE EXISTS (SELECT 1 FROM d WHERE d.k = q.k AND d.id > 199000) ORDER BY 1, 2",
        "SELECT q.k4, q.tag FROM q WHERE NOT EXISTS (SELECT 1 FROM d WHERE d.k4 = q.k4 AND d.pad LIKE '%h') ORDER BY 1, 2",
    ];
    let mut failures = Vec::new();
    let run = |client: &mut Client, what: &str, walks: bool, failures: &mut Vec<String>| {
        for workers in [0, 1] {
            client
                .batch_execute(&format!("SET weft.force = on; SET weft.workers = {workers}"))
                .unwrap();
            for sql in queries {
                let plan = explain_lines(client, &format!("EXPLAIN (ANALYZE) {sql}"));
                let (leaves, descents) = walked(&plan);
                // EXPLAIN shows the leader's counts: with a worker, q's one
                // page may be the worker's, and all the lookups with it.
                let shown = workers == 0 || leaves > 0.0;
                if !plan.contains("index_lookup=[") || (shown && ((leaves > 0.0) != walks || (descents > 0.0) != walks))
                {
                    failures.push(format!(
                        "{what}, {workers} workers: {sql}\n  expected walked: {walks}, \
                         {leaves} leaves, {descents} descents\n{plan}"
                    ));
                }
                failures.extend(mismatch(client, sql, &format!("{what}, {workers} workers")));
            }
        }
    };
    run(&mut client, "walked", true, &mut failures);
    // Another session's splits of the heavy keys' leaves, committed after
    // this snapshot was taken: the walk sees the rows the snapshot sees.
    let mut other = cluster.connect();
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1 FROM q LIMIT 1")
        .unwrap();
    other
        .batch_execute("INSERT INTO d SELECT 300000 + g, g % 4, g % 4, 'late' FROM generate_series(1, 40000) g")
        .unwrap();
    run(&mut client, "after splits", true, &mut failures);
    client.batch_execute("COMMIT").unwrap();
    run(&mut client, "split", true, &mut failures);
    // SERIALIZABLE reads take predicate locks only Postgres's index scan
    // takes; a descending index is not in the walk's order.
    client.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE").unwrap();
    run(&mut client, "serializable", false, &mut failures);
    client.batch_execute("COMMIT").unwrap();
    client
        .batch_execute(
            "DROP INDEX d_k, d_k4; CREATE INDEX d_k ON d (k DESC); \
             CREATE INDEX d_k4 ON d (k4 NULLS FIRST); ANALYZE d",
        )
        .unwrap();
    run(&mut client, "descending", false, &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Lookups walking the leaves while another session splits them: every
/// answer inside a REPEATABLE READ transaction is stock Postgres's in the
/// same snapshot.
#[test]
fn index_lookups_walk_leaves_split_under_them() {
    let cluster = Cluster::start();
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION weft").unwrap();
    client.batch_execute(WALK_SETUP).unwrap();
    let sql = "SELECT q.tag, count(d.id), sum(d.id), sum(d.k4), count(d.pad) FROM q JOIN d ON d.k = q.k GROUP BY 1 ORDER BY 1";
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut other = cluster.connect();
            let mut next = 400000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Heavy keys and the looked-up light ones, so that their
                // leaves split; some deleted again for dead entries.
                other
                    .batch_execute(&format!(
                        "INSERT INTO d SELECT {next} + g, CASE WHEN g % 2 = 0 THEN g % 4 ELSE (g % 60 + 1) * 397 - 2000 END, \
                         g, 'w' FROM generate_series(1, 2000) g; \
                         DELETE FROM d WHERE id > {next} AND id % 7 = 0"
                    ))
                    .unwrap();
                next += 2000;
            }
            next
        });
        let mut failures = Vec::new();
        for round in 0..12 {
            let workers = round % 2;
            client
                .batch_execute(&format!(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL weft.force = on; SET LOCAL weft.workers = {workers}"
                ))
                .unwrap();
            let plan = explain_lines(&mut client, &format!("EXPLAIN {sql}"));
            if !plan.contains("index_lookup=[") {
                failures.push(format!("round {round}: no lookup\n{plan}"));
            }
            failures.extend(mismatch(&mut client, sql, &format!("round {round}")));
            client.batch_execute("COMMIT").unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written = writer.join().unwrap() - 400000;
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(written > 0, "the writer inserted nothing while the lookups ran");
    });
}

/// The column of `p` a test query joins on (the first `p.k..` it names).
fn sql_column(sql: &str) -> &str {
    let at = sql.find("p.k").expect("a query joining on a column of p") + 2;
    let end = sql[at..]
        .find(|c: char| !c.is_ascii_alphanumeric())
        .map_or(sql.len(), |e| at + e);
    &sql[at..end]
}
