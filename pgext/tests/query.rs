//! `weft.query` and `weft.explain` in real Postgres: every supported type
//! read through weft equals what Postgres returns; MVCC visibility is the
//! statement's; bad input is a clear error that leaves the session usable;
//! concurrent sessions get correct results.

use std::thread;

use weft_pg_harness::postgres::Client;
use weft_pg_harness::Cluster;

/// A session with weft created, after running `sql` (the test's tables
/// and settings).
fn setup(cluster: &Cluster, sql: &str) -> Client {
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION weft").unwrap();
    client.batch_execute(sql).unwrap();
    client
}

/// `weft.explain(sql, run)` as one text.
fn explain(client: &mut Client, sql: &str, run: bool) -> String {
    let lines: Vec<String> = client
        .query("SELECT * FROM weft.explain($1, run => $2)", &[&sql, &run])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    lines.join("\n")
}

/// Postgres's own `EXPLAIN sql` as one text.
fn postgres_plan(client: &mut Client, sql: &str) -> String {
    let lines: Vec<String> = client
        .query(&format!("EXPLAIN {sql}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    lines.join("\n")
}

/// `sql`'s rows as text (each row's record output), in order.
fn rows(client: &mut Client, sql: &str) -> Result<Vec<String>, String> {
    let wrapped = format!("SELECT r::text FROM ({sql}) AS r");
    client
        .query(&wrapped, &[])
        .map(|rows| rows.iter().map(|row| row.get::<_, String>(0)).collect())
        .map_err(message)
}

/// A failed statement's message: the server's, or the client's error.
fn message(e: weft_pg_harness::postgres::Error) -> String {
    e.as_db_error().map_or(e.to_string(), |db| db.message().to_owned())
}

/// `sql` through weft.query with the column definition list `columns`.
fn weft(client: &mut Client, sql: &str, columns: &str) -> Result<Vec<String>, String> {
    rows(
        client,
        &format!("SELECT * FROM weft.query($weft${sql}$weft$) AS t({columns})"),
    )
}

/// The columns of the type table and their definition list.
const TYPES: &str = "id int, b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, \
     n numeric(38,10), n2 numeric(15,2), nneg numeric(10,-3), t text, v varchar(20), c char(5), nm name, \
     d date, ts timestamp, tz timestamptz, tm time, iv interval, u uuid, by bytea, o oid";

fn types_table(client: &mut Client) {
    client
        .batch_execute(&format!(
            "CREATE TABLE types ({TYPES});
             INSERT INTO types VALUES
               (1, true, 32767, 2147483647, 9223372036854775807, 'NaN', 'Infinity',
                '9999999999999999999999999999.9999999999', 12.34, 1234567, '', 'héllo wörld ✓', 'ab', 'pg',
                '2024-02-29', '2000-01-01 00:00:00.000001', '2024-06-30 23:59:59.999999+02', '23:59:59.999999',
                '1 year 2 mons -3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10', 4294967295),
               (2, false, -32768, -2147483648, -9223372036854775808, '-Infinity', '-0',
                '-9999999999999999999999999999.9999999999', -0.01, -1000, 'x', '', '', '',
                '0001-01-01', '1970-01-01 00:00:00', '1900-01-01 00:00:00+00', '00:00:00',
                '-178000000 years', '00000000-0000-0000-0000-000000000000', '\\x', 0),
               (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
               (4, true, 0, 0, 0, 1.5e-30, 1e300, 0.0000000001, 0, 0, repeat('€', 3), 'a b  ', 'a  b', 'x',
                '5874897-12-31', '100000-01-01 23:59:59.999999', '4714-11-24 00:00:00+00 BC', '12:00',
                '0', 'ffffffff-ffff-ffff-ffff-ffffffffffff', decode(repeat('ab', 1000), 'hex'), 1);"
        ))
        .unwrap();
}

#[test]
fn every_type_reads_back_as_postgres_returns_it() {
    let cluster = Cluster::start();
    let mut client = setup(&cluster, "");
    types_table(&mut client);
    for zone in ["UTC", "America/St_Johns"] {
        client.batch_execute(&format!("SET TimeZone = '{zone}'")).unwrap();
        for workers in [0, 2] {
            client.batch_execute(&format!("SET weft.workers = {workers}")).unwrap();
            let expected = rows(&mut client, "SELECT * FROM types ORDER BY id").unwrap();
            let got = weft(&mut client, "SELECT * FROM types ORDER BY id", TYPES).unwrap();
            assert_eq!(got, expected, "TimeZone {zone}, {workers} workers");
        }
    }
}

/// The columns of the generated numeric and char(n) table.
const PADDED: &str = "id int, n2 numeric(15,2), wide numeric(15,2), n0 numeric(12,0), n5 numeric(20,5), \
     hundreds numeric(8,-2), c1 char(1), c10 char(10), c25 char(25)";

#[test]
fn numerics_and_padded_chars_read_exactly_at_every_length() {
    let cluster = Cluster::start();
    // Numerics of one to six base-10000 digits, both signs, scales ending
    // inside a digit or on its edge; char(n) values of every length up to
    // n, some with blanks inside or at their start.
    let mut client = setup(
        &cluster,
        &format!(
            "CREATE TABLE padded ({PADDED});
             INSERT INTO padded SELECT g,
               ((g::bigint * 7919) % 20000003 - 10000001)::numeric / 100,
               ((g::bigint * 982451653) % 1999999999999 - 999999999999)::numeric * 10 + (g % 100)::numeric / 100,
               (g::bigint * 104729) % 999999999999 - 499999999999,
               round(((g::bigint * 15485863) % 2000000000 - 1000000000)::numeric / 7, 5),
               ((g * 31) % 1000000 - 500000) * 100,
               chr(32 + g % 95),
               left(md5(g::text) || ' ', g % 11),
               CASE WHEN g % 7 = 0 THEN ' ' || left(md5(g::text), g % 22) || ' x'
                    ELSE left(repeat('ab ', 9), g % 26) END
             FROM generate_series(1, 3000) g;
             INSERT INTO padded VALUES (0, 0, 0, 0, 0, 0, NULL, '', '');"
        ),
    );
    for workers in [0, 2] {
        client.batch_execute(&format!("SET weft.workers = {workers}")).unwrap();
        let expected = rows(&mut client, "SELECT * FROM padded ORDER BY id").unwrap();
        let got = weft(&mut client, "SELECT * FROM padded ORDER BY id", PADDED).unwrap();
        assert_eq!(got.len(), 3001);
        assert_eq!(got, expected, "{workers} workers");
    }
}

#[test]
fn toasted_and_long_values_read_whole() {
    let cluster = Cluster::start();
    let mut client = setup(
        &cluster,
        "CREATE TABLE big (id int, t text, b bytea);
             INSERT INTO big SELECT g, repeat(md5(g::text), 32768), decode(repeat(md5(g::text), 1000), 'hex')
               FROM generate_series(1, 5) g;
             INSERT INTO big VALUES (6, repeat('ж', 600000), NULL);",
    );
    let expected = rows(&mut client, "SELECT id, md5(t), length(t), md5(b) FROM big ORDER BY id").unwrap();
    // The whole values come back through weft; Postgres hashes them.
    let got = rows(
        &mut client,
        "SELECT id, md5(t), length(t), md5(b) FROM weft.query('SELECT id, t, b FROM big ORDER BY id') AS q(id int, t text, b bytea)",
    )
    .unwrap();
    assert_eq!(got, expected);
}

#[test]
fn columns_walked_past_are_sized_as_stored() {
    let cluster = Cluster::start();
    // Between the columns read, every way Postgres stores a value: short
    // and 4-byte varlena headers, values compressed inline (`l`, storage
    // main) and TOAST pointers (`big`), fixed widths of each alignment
    // after a varlena, NULLs in some rows, and rows written before a
    // column was added (they store fewer attributes).
    let mut client = setup(
        &cluster,
        "CREATE TABLE walked (id int, s text, f8 float8, n numeric, c char(3), l text, i2 int2, big text, i8 int8,
                              tail int);
         ALTER TABLE walked ALTER l SET STORAGE MAIN;
         INSERT INTO walked SELECT g,
             CASE WHEN g % 5 = 0 THEN repeat('s', 100 + g % 200) ELSE left(md5(g::text), g % 30) END,
             g * 1.5, (g * 7919) % 100003 / 7.0, chr(97 + g % 26),
             CASE WHEN g % 4 = 0 THEN repeat(md5(g::text), 100) ELSE 'l' || g END,
             g % 7,
             CASE WHEN g % 10 = 0
                  THEN (SELECT string_agg(md5((g * k)::text), '') FROM generate_series(1, 300) k)
                  WHEN g % 13 = 0 THEN NULL ELSE 'b' END,
             g * 1000003, g
           FROM generate_series(1, 2000) g;
         ALTER TABLE walked ADD COLUMN extra int;
         INSERT INTO walked SELECT g, 'x', 1, 2, 'y', 'z', 3, NULL, 4, g, g FROM generate_series(2001, 2100) g;
         ANALYZE walked;",
    );
    let queries = [
        ("SELECT id, tail FROM walked ORDER BY id", "id int, tail int"),
        ("SELECT id, i8 FROM walked WHERE i2 > 3 ORDER BY id", "id int, i8 int8"),
        (
            "SELECT id, c, extra FROM walked ORDER BY id",
            "id int, c char(3), extra int",
        ),
        ("SELECT count(*) AS n FROM walked WHERE tail > 700 AND i2 < 5", "n int8"),
    ];
    for workers in [0, 2] {
        client.batch_execute(&format!("SET weft.workers = {workers}")).unwrap();
        for (sql, columns) in queries {
            client.batch_execute("SET weft.enable = off").unwrap();
            let expected = rows(&mut client, sql).unwrap();
            assert!(expected.len() > 1 || sql.contains("count"), "{sql}");
            assert_eq!(
                weft(&mut client, sql, columns).unwrap(),
                expected,
                "{sql}, {workers} workers"
            );
            client
                .batch_execute("SET weft.enable = on; SET weft.force = on")
                .unwrap();
            let plan = postgres_plan(&mut client, sql);
            assert!(plan.contains("Custom Scan (Weft)"), "{sql}: {plan}");
            assert_eq!(
                rows(&mut client, sql).unwrap(),
                expected,
                "{sql}, plain SQL, {workers} workers"
            );
            client.batch_execute("SET weft.force = off").unwrap();
        }
    }
}

#[test]
fn values_arrow_cannot_hold_are_errors() {
    let cluster = Cluster::start();
    let mut client = setup(
        &cluster,
        "CREATE TABLE inf (d date, ts timestamp, n numeric(10,2), u numeric, far timestamp);
             INSERT INTO inf VALUES ('infinity', NULL, 'NaN', 'NaN', '294276-12-31 23:59:59');",
    );
    let error = weft(&mut client, "SELECT d FROM inf", "d date").unwrap_err();
    assert!(
        error.contains("date infinity") && error.contains("column \"d\" of public.inf"),
        "{error}"
    );
    // Postgres's timestamps reach further than Arrow's microseconds.
    let error = weft(&mut client, "SELECT far FROM inf", "far timestamp").unwrap_err();
    assert!(error.contains("beyond Arrow's range"), "{error}");
    let error = weft(&mut client, "SELECT n FROM inf", "n numeric").unwrap_err();
    assert!(error.contains("NaN"), "{error}");
    // A numeric without a declared scale travels as its image, NaN and
    // all.
    assert_eq!(weft(&mut client, "SELECT u FROM inf", "u numeric").unwrap(), ["(NaN)"]);
    // Columns the query does not read do not matter.
    assert_eq!(weft(&mut client, "SELECT ts FROM inf", "ts timestamp").unwrap(), ["()"]);
}

#[test]
fn each_participant_sees_the_statements_snapshot() {
    let cluster = Cluster::start();
    let mut client = setup(
        &cluster,
        "CREATE TABLE m (id int); INSERT INTO m SELECT generate_series(1, 100000);",
    );
    let count = |client: &mut Client| -> i64 {
        let rows = weft(client, "SELECT count(*) AS n FROM m", "n bigint").unwrap();
        rows[0].trim_matches(|c| c == '(' || c == ')').parse().unwrap()
    };
    client.batch_execute("SET weft.workers = 2").unwrap();
    assert_eq!(count(&mut client), 100000);

    // A concurrent uncommitted insert is invisible.
    let mut other = cluster.connect();
    other
        .batch_execute("BEGIN; INSERT INTO m SELECT generate_series(1, 5000);")
        .unwrap();
    assert_eq!(count(&mut client), 100000);

    // Rows this transaction deleted are invisible to it.
    client.batch_execute("BEGIN; DELETE FROM m WHERE id <= 10").unwrap();
    assert_eq!(count(&mut client), 99990);
    client.batch_execute("ROLLBACK").unwrap();

    // REPEATABLE READ: a concurrent commit is not seen.
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").unwrap();
    assert_eq!(count(&mut client), 100000);
    other.batch_execute("COMMIT").unwrap();
    assert_eq!(count(&mut client), 100000);
    client.batch_execute("COMMIT").unwrap();
    assert_eq!(count(&mut client), 105000);
}

/// The SQLSTATE of each step's error (None where it succeeded), steps
/// run in order, each on session 0 or 1.
fn outcomes(sessions: &mut [Client; 2], steps: &[(usize, &str)]) -> Vec<Option<String>> {
    let outcomes = steps
        .iter()
        .map(|&(session, sql)| {
            sessions[session]
                .batch_execute(sql)
                .err()
                .map(|e| e.code().map_or(e.to_string(), |code| code.code().to_owned()))
        })
        .collect();
    for session in sessions.iter_mut() {
        session.batch_execute("ROLLBACK").unwrap();
    }
    outcomes
}

#[test]
fn serializable_reads_conflict_as_postgres_s_do() {
    let cluster = Cluster::start();
    // All-visible pages (vacuumed) and pages whose tuples are each tested
    // (just inserted): the two ways a page's tuples are listed.
    let mut client = setup(
        &cluster,
        "CREATE TABLE a (v int); CREATE TABLE b (v int);
         INSERT INTO a SELECT generate_series(1, 50000); INSERT INTO b SELECT generate_series(1, 50000);",
    );
    client.batch_execute("VACUUM a, b").unwrap();
    client
        .batch_execute("INSERT INTO a SELECT generate_series(1, 50000)")
        .unwrap();
    client.batch_execute("SET weft.workers = 1").unwrap();
    let other = cluster.connect();
    let mut sessions = [client, other];
    // Write skew: each transaction reads the table the other writes. Under
    // SERIALIZABLE Postgres fails one of them; a read through weft must
    // leave the same trace (its predicate locks and conflicts) as its own.
    let skew = |sessions: &mut [Client; 2], read: &str| {
        outcomes(
            sessions,
            &[
                (0, "BEGIN ISOLATION LEVEL SERIALIZABLE"),
                (1, "BEGIN ISOLATION LEVEL SERIALIZABLE"),
                (0, read),
                (1, "SELECT sum(v) FROM b"),
                (0, "INSERT INTO b VALUES (0)"),
                (1, "INSERT INTO a VALUES (0)"),
                (1, "COMMIT"),
                (0, "COMMIT"),
            ],
        )
    };
    // The same, the other transaction writing first: the read meets its
    // invisible row, a conflict only the scan's check of each tuple sees.
    let skew_read_late = |sessions: &mut [Client; 2], read: &str| {
        outcomes(
            sessions,
            &[
                (0, "BEGIN ISOLATION LEVEL SERIALIZABLE"),
                (1, "BEGIN ISOLATION LEVEL SERIALIZABLE"),
                (0, "SELECT 1"),
                (1, "INSERT INTO a VALUES (0)"),
                (0, read),
                (1, "SELECT sum(v) FROM b"),
                (0, "INSERT INTO b VALUES (0)"),
                (1, "COMMIT"),
                (0, "COMMIT"),
            ],
        )
    };
    let through_weft = "SELECT * FROM weft.query($$SELECT sum(v) AS s FROM a$$) AS t(s bigint)";
    for way in [skew, skew_read_late] {
        let stock = way(&mut sessions, "SELECT sum(v) FROM a");
        assert!(stock.iter().flatten().any(|code| code == "40001"), "{stock:?}");
        assert_eq!(way(&mut sessions, through_weft), stock);
    }
    // Without the other transaction, both ways commit.
    for read in ["SELECT sum(v) FROM a", through_weft] {
        let steps = [
            (0, "BEGIN ISOLATION LEVEL SERIALIZABLE"),
            (0, read),
            (0, "INSERT INTO b VALUES (0)"),
            (0, "COMMIT"),
        ];
        assert_eq!(outcomes(&mut sessions, &steps), vec![None; 4], "{read}");
    }
}

#[test]
fn bad_input_is_a_clear_error_and_the_session_goes_on() {
    let cluster = Cluster::start();
    let mut client = setup(
        &cluster,
        "CREATE TABLE ok (a int, b text); INSERT INTO ok VALUES (1, 'x');
             CREATE TABLE secret (a int); INSERT INTO secret VALUES (1);
             CREATE TABLE guarded (a int); ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
             CREATE TYPE pair AS (x int, y int);
             CREATE TABLE odd (a int, p pair);
             CREATE ROLE reader LOGIN; GRANT USAGE ON SCHEMA weft TO reader;
             GRANT SELECT ON ok, guarded, odd TO reader;",
    );
    let cases: &[(&str, &str, &str)] = &[
        ("SELECT * FROM missing", "a int", "relation \"missing\" does not exist"),
        ("SELECT nope FROM ok", "a int", "nope"),
        ("SELEC 1", "a int", "weft.query"),
        (
            "SELECT p FROM odd",
            "p text",
            "column \"p\" of table public.odd has type pair",
        ),
        ("SELECT a, b FROM ok", "a int", "the query returns 2 columns"),
        ("SELECT b FROM ok", "b int", "cannot be returned as integer"),
        ("INSERT INTO ok VALUES (2, 'y')", "a int", "weft.query"),
    ];
    for (sql, columns, message) in cases {
        let error = weft(&mut client, sql, columns).unwrap_err();
        assert!(error.contains(message), "{sql}: {error}");
        assert_eq!(weft(&mut client, "SELECT a FROM ok", "a int").unwrap(), ["(1)"]);
    }
    // A column weft cannot read is fine when the query does not read it.
    assert!(weft(&mut client, "SELECT a FROM odd", "a int").unwrap().is_empty());

    let mut reader = cluster.connect_as("reader");
    let denied = weft(&mut reader, "SELECT a FROM secret", "a int").unwrap_err();
    let stock = rows(&mut reader, "SELECT a FROM secret").unwrap_err();
    assert_eq!(denied, stock, "the same permission error as Postgres's");
    let error = weft(&mut reader, "SELECT a FROM guarded", "a int").unwrap_err();
    assert!(error.contains("row-level security"), "{error}");
    assert_eq!(
        weft(&mut reader, "SELECT a, b FROM ok", "a int, b text").unwrap(),
        ["(1,x)"]
    );
}

/// A heap page is untrusted input to the scan: a varlena header no
/// Postgres writes to a page (a TOAST pointer with an unknown tag, or an
/// in-memory one, whose pointer a reader would follow) is an error naming
/// the column, through weft.query and plain SQL alike, and the session
/// goes on; rows the scan's filter leaves before the damage, and columns
/// before it, read as always.
#[test]
fn a_corrupt_heap_tuple_is_an_error_naming_its_column() {
    let cluster = Cluster::start();
    let mut client = setup(
        &cluster,
        "CREATE TABLE damaged (id int, t text, after int);
         INSERT INTO damaged SELECT g, 'value ' || lpad(g::text, 3, '0'), g FROM generate_series(1, 200) g;
         SELECT count(*) FROM damaged;",
    );
    let path: String = client
        .query_one("SELECT pg_relation_filepath('damaged')", &[])
        .unwrap()
        .get(0);
    drop(client);
    let file = cluster.data_dir().join(path);
    cluster.while_stopped(|| {
        let mut bytes = std::fs::read(&file).unwrap();
        // A value with its short header ((9 + 1) << 1 | 1) becomes a TOAST
        // pointer (0x01) whose tag is its first letter ('v', which no
        // Postgres writes), or whose tag is made 1 (an indirect pointer,
        // of the value's own length, valid in memory only).
        for (value, tag) in [("value 100", None), ("value 150", Some(1))] {
            let stored = [&[0x15u8][..], value.as_bytes()].concat();
            let at = bytes
                .windows(stored.len())
                .position(|w| w == stored)
                .expect("the value is in the table's file");
            bytes[at] = 0x01;
            if let Some(tag) = tag {
                bytes[at + 1] = tag;
            }
        }
        std::fs::write(&file, bytes).unwrap();
    });
    let mut client = cluster.connect();
    let corrupt = |error: &str| error.contains("column \"t\"") && error.contains("a corrupt heap tuple");
    for filter in ["id < 120", "id > 120"] {
        let sql = format!("SELECT id, t FROM damaged WHERE {filter}");
        let error = weft(&mut client, &sql, "id int, t text").unwrap_err();
        assert!(corrupt(&error), "{sql}: {error}");
    }
    assert_eq!(
        weft(&mut client, "SELECT count(id) AS n FROM damaged", "n int8").unwrap(),
        ["(200)"]
    );
    assert_eq!(
        weft(
            &mut client,
            "SELECT count(t) AS n FROM damaged WHERE id > 150",
            "n int8"
        )
        .unwrap(),
        ["(50)"]
    );
    // Plain SQL taken over by weft (not wrapped as `rows` wraps it: a
    // whole-row reference stays with Postgres).
    client.batch_execute("SET weft.force = on").unwrap();
    let plan = postgres_plan(&mut client, "SELECT count(t) FROM damaged");
    assert!(plan.contains("Custom Scan (Weft)"), "{plan}");
    let error = message(client.query("SELECT count(t) FROM damaged", &[]).unwrap_err());
    assert!(corrupt(&error), "{error}");
    let count: i64 = client.query_one("SELECT count(id) FROM damaged", &[]).unwrap().get(0);
    assert_eq!(count, 200);
    // Walked past to a column after it, unread, the damaged value stops
    // the scan all the same.
    let error = weft(&mut client, "SELECT sum(after) AS n FROM damaged", "n int8").unwrap_err();
    assert!(corrupt(&error), "{error}");
}

#[test]
fn explain_shows_the_distributed_plan() {
    let cluster = Cluster::start();
    let mut client = setup(
        &cluster,
        "CREATE TABLE e (k int, v int); INSERT INTO e SELECT g % 100, g FROM generate_series(1, 100000) g;
             ANALYZE e; SET weft.workers = 2;",
    );
    let sql = "SELECT k, sum(v) FROM e GROUP BY k";
    let plan = explain(&mut client, sql, false);
    assert!(
        plan.contains("3 participants") && plan.contains("HeapScan: public.e"),
        "{plan}"
    );
    assert!(plan.contains("WeftExchange"), "{plan}");
    let analyzed = explain(&mut client, sql, true);
    assert!(
        analyzed.contains("Edges") && analyzed.contains("output_rows"),
        "{analyzed}"
    );
    // Every edge of the hash exchange between 3 participants appears.
    assert!(analyzed.contains("x0 2->1"), "{analyzed}");
}

#[test]
fn filtered_scans_take_postgres_s_estimates() {
    let cluster = Cluster::start();
    let mut client = setup(
        &cluster,
        "CREATE TABLE est (k int, v int, d date, t text, c char(4));
         INSERT INTO est SELECT g % 100, g, date '2020-01-01' + g % 1000, md5(g::text), (g % 7)::text
           FROM generate_series(1, 100000) g;
         ANALYZE est; SET weft.workers = 1;",
    );
    // Each condition's estimate must be Postgres's own for the same
    // condition (within 10%: an IN list is estimated as ORed equalities),
    // and the count right.
    let cases = [
        "v < 1000",
        "v BETWEEN 10000 AND 20000",
        "k IN (1, 2, 3)",
        "k = 5 AND v > 50000",
        "NOT (k <> 7)",
        "d < date '2020-01-01' + interval '10 day'",
        "d IS NULL OR v <= 100",
        "c = '3'",
        "t LIKE 'ab%'",
    ];
    let rows_after = |text: &str, key: &str| {
        text.lines().find_map(|l| {
            l.split(key)
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit() && c != '.')
                .next()?
                .parse::<f64>()
                .ok()
        })
    };
    let mut failures = Vec::new();
    for condition in cases {
        let sql = format!("SELECT count(*) FROM est WHERE {condition}");
        let plan = explain(&mut client, &sql, false);
        let estimate = rows_after(&plan, "estimated_rows=");
        client.batch_execute("SET max_parallel_workers_per_gather = 0").unwrap();
        let stock_plan = postgres_plan(&mut client, &format!("SELECT * FROM est WHERE {condition}"));
        client.batch_execute("RESET max_parallel_workers_per_gather").unwrap();
        let postgres = rows_after(&stock_plan, "rows=");
        let close = match (estimate, postgres) {
            (Some(e), Some(p)) => (e - p).abs() <= 0.1 * p + 1.0,
            _ => false,
        };
        if !close {
            failures.push(format!(
                "{condition}: estimate {estimate:?}, Postgres's {postgres:?}\n{plan}"
            ));
        }
        let weft: i64 = client
            .query_one(&format!("SELECT * FROM weft.query($${sql}$$) AS t(n int8)"), &[])
            .unwrap()
            .get(0);
        let stock: i64 = client.query_one(&sql, &[]).unwrap().get(0);
        if weft != stock {
            failures.push(format!("{condition}: weft {weft}, stock {stock}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A session with weft and a table `g (k int, v bigint)` of `count` rows
/// in `groups` groups; the query summing `v` per `k` in order, and its
/// rows as stock Postgres returns them.
fn grouped(cluster: &Cluster, groups: u32, count: u32) -> (Client, &'static str, Vec<String>) {
    let mut client = setup(
        cluster,
        &format!(
            "CREATE TABLE g (k int, v bigint); INSERT INTO g SELECT x % {groups}, x FROM generate_series(1, {count}) x;"
        ),
    );
    let sql = "SELECT k, sum(v) AS s FROM g GROUP BY k ORDER BY k";
    let expected = rows(&mut client, sql).unwrap();
    (client, sql, expected)
}

#[test]
fn concurrent_sessions_get_their_own_results() {
    let cluster = Cluster::start_with(&[("max_worker_processes", "16"), ("max_parallel_workers", "16")]);
    let (_client, sql, expected) = grouped(&cluster, 10, 200_000);
    let sessions: Vec<_> = (0..4)
        .map(|i| {
            let mut client = cluster.connect();
            thread::spawn(move || {
                client.batch_execute(&format!("SET weft.workers = {}", i % 3)).unwrap();
                (0..3)
                    .map(|_| weft(&mut client, sql, "k int, s numeric").unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for session in sessions {
        for got in session.join().unwrap() {
            assert_eq!(got, expected);
        }
    }
}

#[test]
fn meshes_run_in_the_reserved_memory_and_beyond_it() {
    // weft.shared_memory is added to the region the configuration asks for.
    let cluster = Cluster::start_with(&[("min_dynamic_shared_memory", "16MB"), ("weft.shared_memory", "8MB")]);
    let (mut client, sql, expected) = grouped(&cluster, 1000, 100_000);
    let reserved: String = client.query_one("SHOW min_dynamic_shared_memory", &[]).unwrap().get(0);
    assert_eq!(reserved, "24MB");
    // 64 kB rings: the mesh (an exchange and a gather, 2-3 participants)
    // fits in the region; 8 MB rings: 32-72 MB do not, and the segment
    // comes from the operating system.
    client.batch_execute("SET weft.max_mesh_size = '1GB'").unwrap();
    for (ring, whence) in [("64kB", "in weft.shared_memory"), ("8MB", "in a segment of its own")] {
        for workers in [1, 2] {
            client
                .batch_execute(&format!("SET weft.ring_size = '{ring}'; SET weft.workers = {workers}"))
                .unwrap();
            let got = weft(&mut client, sql, "k int, s numeric").unwrap();
            assert_eq!(got, expected, "rings of {ring}, {workers} workers");
            let plan = explain(&mut client, sql, true);
            let line = plan.lines().find(|l| l.contains("shared memory:")).unwrap_or_default();
            assert!(line.contains(whence), "rings of {ring}, {workers} workers: {plan}");
        }
    }
}

/// EXPLAIN ANALYZE's shared memory line: the segment's megabytes, the
/// exchanges and the rings' kB.
fn mesh_of(plan: &str) -> (f64, u32, usize) {
    let line = plan.lines().find(|l| l.contains("shared memory:")).unwrap_or_default();
    let number_after = |key: &str| line.split(key).nth(1)?.split_whitespace().next().map(str::to_owned);
    let megabytes = number_after("shared memory: ").and_then(|n| n.parse().ok());
    let exchanges = number_after(" for ").and_then(|n| n.parse().ok());
    let ring = number_after("rings of ").and_then(|n| n.parse().ok());
    match (megabytes, exchanges, ring) {
        (Some(m), Some(x), Some(r)) => (m, x, r),
        _ => panic!("no shared memory line in {plan}"),
    }
}

#[test]
fn rings_shrink_to_keep_the_mesh_within_its_limit() {
    let cluster = Cluster::start_with(&[("max_worker_processes", "16"), ("max_parallel_workers", "16")]);
    let (mut client, sql, expected) = grouped(&cluster, 1000, 100_000);
    // Rings are powers of two: 1000 kB is 512 kB.
    client
        .batch_execute("SET weft.ring_size = '1000kB'; SET weft.workers = 1; SET weft.max_mesh_size = '1GB'")
        .unwrap();
    assert_eq!(weft(&mut client, sql, "k int, s numeric").unwrap(), expected);
    assert_eq!(mesh_of(&explain(&mut client, sql, true)).2, 512);
    // With more participants (rings grow as their square) the rings
    // halve until the mesh fits in its limit, and no further: the largest
    // of 64..=512 kB whose rings (each with a 512-byte header) fit.
    client.batch_execute("SET weft.max_mesh_size = '4MB'").unwrap();
    for workers in [1, 2, 4] {
        client.batch_execute(&format!("SET weft.workers = {workers}")).unwrap();
        assert_eq!(weft(&mut client, sql, "k int, s numeric").unwrap(), expected);
        let plan = explain(&mut client, sql, true);
        let (_, exchanges, ring) = mesh_of(&plan);
        let rings = exchanges as usize * (workers + 1) * (workers + 1);
        let fits = |kb: usize| rings * (kb * 1024 + 512) <= 4 << 20;
        let largest = [512, 256, 128, 64].into_iter().find(|&kb| fits(kb)).unwrap_or(64);
        assert_eq!(ring, largest, "{workers} workers: {plan}");
    }
    // A limit even 64 kB rings cannot meet: those, over it.
    client
        .batch_execute("SET weft.max_mesh_size = '1MB'; SET weft.workers = 4")
        .unwrap();
    assert_eq!(weft(&mut client, sql, "k int, s numeric").unwrap(), expected);
    let (megabytes, _, ring) = mesh_of(&explain(&mut client, sql, true));
    assert_eq!(ring, 64);
    assert!(megabytes > 1.0);
}

#[test]
fn a_statement_timeout_ends_a_running_query() {
    let cluster = Cluster::start();
    let mut client = setup(
        &cluster,
        "CREATE TABLE n (id int); INSERT INTO n SELECT generate_series(1, 200000);
             SET weft.workers = 2; SET statement_timeout = '500ms';",
    );
    let started = std::time::Instant::now();
    // A hash join producing 2 * 10^9 rows: far longer than the timeout,
    // in batches, so every participant looks for the cancel often. (A
    // single DataFusion step that runs long, such as one nested-loop join
    // of a huge batch pair, defers the cancel until it returns.)
    let error = weft(
        &mut client,
        "SELECT count(*) AS n FROM n a JOIN n b ON a.id % 20 = b.id % 20",
        "n bigint",
    )
    .unwrap_err();
    assert!(error.contains("statement timeout"), "{error}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    client.batch_execute("SET statement_timeout = 0").unwrap();
    assert_eq!(
        weft(&mut client, "SELECT count(*) AS n FROM n", "n bigint").unwrap(),
        ["(200000)"]
    );
}

#[test]
fn a_union_of_distributed_inputs_runs_on_every_participant() {
    let cluster = Cluster::start();
    let mut client = setup(
        &cluster,
        "CREATE TABLE u1 (a int, gone text, b int); CREATE TABLE u2 (a int);
             INSERT INTO u1 SELECT g, 'x', g * 2 FROM generate_series(1, 50000) g;
             INSERT INTO u2 SELECT g FROM generate_series(1, 30000) g;
             ALTER TABLE u1 DROP COLUMN gone; SET weft.workers = 2;",
    );
    // Each participant puts its shares of both inputs together.
    let sql = "SELECT count(*) AS n, sum(a) AS s FROM (SELECT a FROM u1 UNION ALL SELECT a FROM u2) AS x";
    let expected = rows(&mut client, sql).unwrap();
    assert_eq!(weft(&mut client, sql, "n bigint, s bigint").unwrap(), expected);
    let plan = explain(&mut client, sql, false);
    assert!(plan.lines().next().unwrap().contains("3 participants"), "{plan}");
    assert!(plan.contains("WeftUnion"), "{plan}");
    // Dropped columns are skipped: the live ones keep their names.
    assert_eq!(
        weft(&mut client, "SELECT * FROM u1 WHERE a = 7", "a int, b int").unwrap(),
        ["(7,14)"]
    );
}

#[test]
fn a_participants_postgres_error_reaches_the_client() {
    let cluster = Cluster::start();
    let mut client = setup(
        &cluster,
        "CREATE TABLE f (a int); INSERT INTO f SELECT generate_series(1, 300000); SET weft.workers = 2;",
    );
    for participant in [0, 2] {
        client
            .batch_execute(&format!("SET weft.test_fail_participant = {participant}"))
            .unwrap();
        let error = weft(&mut client, "SELECT sum(a) AS s FROM f", "s bigint").unwrap_err();
        assert!(
            error.contains(&format!("injected failure in participant {participant}")),
            "{error}"
        );
        client.batch_execute("RESET weft.test_fail_participant").unwrap();
        assert_eq!(
            weft(&mut client, "SELECT sum(a) AS s FROM f", "s bigint").unwrap(),
            ["(45000150000)"]
        );
    }
}

#[test]
fn joins_follow_postgres_s_plan_of_the_same_text() {
    let cluster = Cluster::start();
    let mut client = setup(
        &cluster,
        "CREATE TABLE fact (k text, d int, v int);
         CREATE TABLE dim_a (k text, name text); CREATE TABLE dim_b (d int, label text);
         INSERT INTO fact SELECT (g % 1000)::text, g % 10, g FROM generate_series(1, 100000) g;
         INSERT INTO dim_a SELECT g::text, 'n' || g FROM generate_series(0, 999) g;
         INSERT INTO dim_b SELECT g, 'l' || g FROM generate_series(0, 9) g;
         ANALYZE fact, dim_a, dim_b; SET weft.workers = 1;",
    );
    // As written, fact joins dim_b first: all 100000 rows. Postgres's plan
    // joins the one dim_a row first, and so must weft. (The keys are text,
    // which a join does not hand to the scan below it as a filter: the
    // order alone decides.)
    let sql = "SELECT count(*) AS n, sum(v) AS s FROM fact, dim_b, dim_a
               WHERE fact.d = dim_b.d AND fact.k = dim_a.k AND dim_a.name = 'n7'";
    let expected = rows(&mut client, sql).unwrap();
    assert_eq!(weft(&mut client, sql, "n bigint, s bigint").unwrap(), expected);
    let analyzed = explain(&mut client, sql, true);
    let widest = analyzed
        .lines()
        .filter(|line| line.contains("HashJoinExec"))
        .filter_map(|line| metric_count(line.split("output_rows=").nth(1)?))
        .reduce(f64::max);
    assert!(matches!(widest, Some(rows) if rows <= 1000.0), "{analyzed}");

    // Text Postgres refuses (nvl is DataFusion's) runs in its written
    // order, also inside a transaction block, which goes on.
    let datafusion_only = "SELECT count(*) AS n FROM fact, dim_b WHERE fact.d = dim_b.d AND nvl(fact.v, 0) > 50000";
    client.batch_execute("BEGIN").unwrap();
    assert_eq!(weft(&mut client, datafusion_only, "n bigint").unwrap(), ["(50000)"]);
    assert_eq!(weft(&mut client, sql, "n bigint, s bigint").unwrap(), expected);
    client.batch_execute("COMMIT").unwrap();

    // An unqualified * keeps its columns in FROM order.
    assert_eq!(
        weft(
            &mut client,
            "SELECT * FROM dim_b, dim_a WHERE dim_b.d::text = dim_a.k AND dim_a.name = 'n3'",
            "d int, label text, k text, name text"
        )
        .unwrap(),
        ["(3,l3,3,n3)"]
    );
}

/// A count as DataFusion's metrics print it at the start of `text`:
/// `100`, `74.40 K`, `1.20 M`.
fn metric_count(text: &str) -> Option<f64> {
    let number: String = text.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let value = number.parse::<f64>().ok()?;
    let scale = match text[number.len()..].trim_start().chars().next() {
        Some('K') => 1e3,
        Some('M') => 1e6,
        Some('B') => 1e9,
        _ => 1.0,
    };
    Some(value * scale)
}
