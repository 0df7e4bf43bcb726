//! Exact or stock: cases where weft once answered otherwise than Postgres
//! (a wrong answer, an error Postgres does not raise, a plan Postgres
//! cannot use), each checked with weft forced on against weft off in the
//! same session. Each test names the case it guards.

use weft_pg_harness::differential::{both_ways, check_both_ways, taken};
use weft_pg_harness::postgres::Client;
use weft_pg_harness::{text_rows, Cluster};

/// A cluster with weft, and a session.
fn with_weft() -> (Cluster, Client) {
    let cluster = Cluster::start();
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION weft").unwrap();
    (cluster, client)
}

/// The one value `sql` returns.
fn value(client: &mut Client, sql: &str) -> String {
    let rows = text_rows(client, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.first()
        .and_then(|row| row.first().cloned().flatten())
        .unwrap_or_else(|| panic!("{sql}: no value in {rows:?}"))
}

/// An index created over a broken HOT chain (a row whose indexed column a
/// HOT update changed before the index existed) has no entry for the row
/// versions that older snapshots still see; Postgres does not use it for
/// them (`pg_index.indcheckxmin`), and neither may weft's index lookups.
#[test]
fn index_lookups_skip_an_index_older_snapshots_cannot_use() {
    let cluster = Cluster::start();
    let mut old = cluster.connect();
    let mut writer = cluster.connect();
    writer
        .batch_execute(
            "CREATE EXTENSION weft;
             CREATE TABLE big (id int, k int, pad text) WITH (fillfactor = 50);
             INSERT INTO big SELECT g, g, repeat('x', 40) FROM generate_series(1, 50000) g;
             CREATE TABLE small (k int NOT NULL);
             INSERT INTO small SELECT g FROM generate_series(1, 20) g;
             ANALYZE",
        )
        .unwrap();
    // The old snapshot, taken before the update and the index.
    old.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM small")
        .unwrap();
    // HOT updates (no index yet, room left on every page), then the index
    // over the broken chains.
    writer
        .batch_execute(
            "UPDATE big SET k = k + 1000000 WHERE id <= 20;
             CREATE INDEX big_k ON big (k);
             ANALYZE big",
        )
        .unwrap();
    assert_eq!(
        value(
            &mut writer,
            "SELECT indcheckxmin FROM pg_index WHERE indexrelid = 'big_k'::regclass"
        ),
        "t",
        "the index does not cover a broken HOT chain: the test tests nothing"
    );
    let join = "SELECT s.k, b.id FROM small s JOIN big b ON b.k = s.k ORDER BY 1, 2";
    let anti = "SELECT count(*) FROM small s WHERE NOT EXISTS (SELECT 1 FROM big b WHERE b.k = s.k)";
    // A new snapshot may use the index, and weft looks the keys up in it.
    writer.batch_execute("SET weft.force = on").unwrap();
    let plan = text_rows(&mut writer, &format!("EXPLAIN {join}")).unwrap();
    assert!(
        format!("{plan:?}").contains("index_lookup=[") && format!("{plan:?}").contains("big_k"),
        "weft does not look keys up in big_k, so the old snapshot's case tests nothing: {plan:?}"
    );
    // The old one may not.
    for sql in [join, anti] {
        let (weft, stock) = both_ways(&mut old, sql);
        assert_eq!(weft, stock, "{sql}");
    }
    let (_, stock) = both_ways(&mut old, join);
    assert_eq!(stock.unwrap().len(), 20, "the old snapshot sees every old row");
    old.batch_execute("COMMIT").unwrap();
}

/// Parallel workers cannot read a temporary table (its pages are in the
/// leader's local buffers): such queries stay with Postgres.
#[test]
fn temporary_tables_stay_with_postgres() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "CREATE TEMP TABLE tt AS SELECT g AS a, g % 7 AS b FROM generate_series(1, 100000) g;
             CREATE TABLE plain AS SELECT g AS b FROM generate_series(0, 6) g;
             ANALYZE tt; ANALYZE plain",
        )
        .unwrap();
    check_both_ways(
        &mut client,
        &[
            (false, "SELECT count(*), sum(a) FROM tt"),
            (
                false,
                "SELECT p.b, count(*) FROM tt JOIN plain p USING (b) GROUP BY 1 ORDER BY 1",
            ),
            (true, "SELECT count(*) FROM plain"),
        ],
    );
}

/// A materialized view created WITH NO DATA is an error to read, with
/// Postgres's SQLSTATE, not an empty table.
#[test]
fn an_unpopulated_materialized_view_is_an_error() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "CREATE TABLE base AS SELECT g AS a FROM generate_series(1, 1000) g;
             CREATE MATERIALIZED VIEW mv AS SELECT a FROM base WITH NO DATA",
        )
        .unwrap();
    let (weft, stock) = both_ways(&mut client, "SELECT count(*) FROM mv");
    assert_eq!(weft, stock);
    assert!(stock.as_ref().is_err_and(|e| e.starts_with("55000:")), "{stock:?}");
    let direct = text_rows(
        &mut client,
        "SELECT * FROM weft.query('SELECT count(*) FROM mv') AS (n bigint)",
    );
    assert_eq!(
        direct.map_err(|e| e.split(':').next().map(str::to_string)),
        Err(Some("55000".to_string()))
    );
    client.batch_execute("REFRESH MATERIALIZED VIEW mv").unwrap();
    check_both_ways(&mut client, &[(true, "SELECT count(*), sum(a) FROM mv")]);
}

/// Values Postgres deems equal whose bits differ: float -0 and 0, NaNs,
/// interval '1 mon' and '30 days'. Grouping by them stays with Postgres.
#[test]
fn grouping_follows_postgres_s_equality_not_the_bits() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "CREATE TABLE fl (f float8, r real, i interval, n int);
             INSERT INTO fl VALUES
                 (0, 0, '1 mon', 1), ('-0', '-0', '30 days', 2), ('NaN', 'NaN', '720 hours', 3),
                 ('NaN', 'NaN', '1 day', 4), (1, 1, '24 hours', 5), (NULL, NULL, NULL, 6);
             INSERT INTO fl SELECT 'NaN'::float8 * -1, 'NaN'::real * -1, '1 year', 7;
             ANALYZE fl",
        )
        .unwrap();
    check_both_ways(
        &mut client,
        &[
            (false, "SELECT count(DISTINCT f) FROM fl"),
            (false, "SELECT count(DISTINCT r) FROM fl"),
            (false, "SELECT count(*) FROM (SELECT DISTINCT f FROM fl) s"),
            (false, "SELECT count(*) FROM (SELECT f FROM fl GROUP BY f) s"),
            (false, "SELECT count(*) FROM (SELECT i FROM fl GROUP BY i) s"),
            (false, "SELECT count(DISTINCT i) FROM fl"),
            // What does not group by them is still weft's.
            (true, "SELECT count(*), count(f), count(i), sum(n) FROM fl"),
            // IS NULL on a float is answered in the scan without reading the value.
            (true, "SELECT count(*) FROM fl WHERE f IS NULL"),
            (
                true,
                "SELECT n FROM fl WHERE f IS NOT NULL AND i IS NOT NULL ORDER BY n",
            ),
        ],
    );
}

/// numeric values keep their own display scale in Postgres: a CASE or
/// COALESCE mixing scales shows each value with its own, where DataFusion
/// would give the column one scale.
#[test]
fn numeric_results_keep_postgres_s_display_scale() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "CREATE TABLE sales (price numeric(7,2), q int);
             INSERT INTO sales SELECT (g % 100) * 1.25, g % 10 FROM generate_series(1, 1000) g;
             INSERT INTO sales VALUES (NULL, 3);
             ANALYZE sales",
        )
        .unwrap();
    check_both_ways(
        &mut client,
        &[
            // A sum shows the largest display scale among the values it
            // added: only the ELSE branch summed shows 0, not 0.00. weft
            // sums at the largest scale and Postgres rounds the sum to the
            // largest scale seen.
            (true, "SELECT sum(CASE WHEN q > 100 THEN price ELSE 0 END) FROM sales"),
            (
                true,
                "SELECT q, sum(CASE WHEN q > 5 THEN price ELSE 0 END) FROM sales GROUP BY q ORDER BY q",
            ),
            (
                true,
                "SELECT q, sum(CASE WHEN q > 5 THEN price WHEN q > 2 THEN 1.5 END),
                        sum(coalesce(CASE WHEN q = 3 THEN price END, 7)) FROM sales GROUP BY q ORDER BY q",
            ),
            (
                true,
                "SELECT 100.00 * sum(CASE WHEN q = 3 THEN price * 2 ELSE 0 END) / sum(price) FROM sales",
            ),
            (
                true,
                "SELECT sum(CASE WHEN q > 100 THEN price ELSE 0 END) FROM sales WHERE q = 3",
            ),
            (
                true,
                "SELECT sum(CASE WHEN q > 100 THEN price ELSE 0 END) FROM sales WHERE q < 0",
            ),
            // Shown values of different scales: Postgres's numerics,
            // each with its own scale.
            (true, "SELECT coalesce(price, 0), q FROM sales ORDER BY q, 1 LIMIT 20"),
            (
                true,
                "SELECT q, CASE WHEN avg(price) > 60 THEN avg(price) ELSE 0 END, sum(price) / count(*),
                        coalesce(sum(price) / nullif(sum(q), 0), 0) FROM sales GROUP BY q ORDER BY q",
            ),
            (
                true,
                "SELECT q, avg(price) FROM sales GROUP BY q ORDER BY 2 DESC NULLS LAST, 1",
            ),
            // A NULL has no scale of its own.
            (
                true,
                "SELECT CASE WHEN q > 5 THEN price END, NULL::numeric, q FROM sales ORDER BY q, 1 LIMIT 20",
            ),
            // One scale throughout: weft's.
            (
                true,
                "SELECT sum(CASE WHEN q > 100 THEN price ELSE 0.00 END) FROM sales",
            ),
            (
                true,
                "SELECT sum(CASE WHEN q > 5 THEN price ELSE price * 2 END) FROM sales",
            ),
            // Compared by value only: weft's.
            (
                true,
                "SELECT count(*) FROM sales WHERE CASE WHEN q > 5 THEN price ELSE 0 END > 10",
            ),
        ],
    );
}

/// PL/pgSQL evaluates `SELECT <expr>` without a plan tree of the
/// executor's: queries without a table stay with Postgres, wherever
/// weft.force or weft.min_cost would otherwise take them.
#[test]
fn pl_pgsql_runs_with_weft_forced() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "SET weft.force = on; SET weft.min_cost = 0;
             CREATE TABLE acc (id int, v int);
             INSERT INTO acc SELECT g, g FROM generate_series(1, 1000) g;
             CREATE FUNCTION total(lim int) RETURNS bigint LANGUAGE plpgsql AS $$
             DECLARE s bigint := 0;
             BEGIN
                 FOR i IN 1..3 LOOP s := s + i; END LOOP;
                 RETURN s + (SELECT sum(v) FROM acc WHERE id <= lim);
             END $$;
             CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN NEW.v := NEW.v * 2 + 1; RETURN NEW; END $$;
             CREATE TRIGGER bump BEFORE INSERT ON acc FOR EACH ROW EXECUTE FUNCTION bump();",
        )
        .unwrap();
    client
        .batch_execute("DO $$ BEGIN FOR i IN 1..3 LOOP NULL; END LOOP; END $$")
        .unwrap();
    client.batch_execute("INSERT INTO acc VALUES (1001, 5)").unwrap();
    assert_eq!(value(&mut client, "SELECT v FROM acc WHERE id = 1001"), "11");
    assert!(!taken(&mut client, "SELECT 1 + 1"));
    check_both_ways(
        &mut client,
        &[(false, "SELECT total(10)"), (true, "SELECT sum(v) FROM acc")],
    );
}

/// An expression over an aggregate without GROUP BY is computed where the
/// aggregate's one row is: participants whose share is empty must not
/// evaluate `13 / count(*)` over a count of 0.
#[test]
fn expressions_over_a_final_aggregate_run_once() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "CREATE TABLE few (a int);
             INSERT INTO few VALUES (1), (2), (3);
             CREATE TABLE none (a int);
             ANALYZE",
        )
        .unwrap();
    for workers in [1, 3] {
        client.batch_execute(&format!("SET weft.workers = {workers}")).unwrap();
        check_both_ways(
            &mut client,
            &[
                (true, "SELECT 13 / count(*) FROM few"),
                (true, "SELECT 13 / count(*), sum(a) / count(a) FROM few WHERE a > 1"),
                // Where the one row really has a zero count: Postgres's error.
                (true, "SELECT 13 / count(*) FROM none"),
                (
                    true,
                    "SELECT a FROM few WHERE a > (SELECT 6 / count(*) FROM few) ORDER BY a",
                ),
            ],
        );
    }
}

/// A hash repartition of one sorted partition keeps each output
/// partition in order, and DataFusion counts on it (a window partitioned
/// by the keys another window sorted by, without a sort of its own):
/// rows hashed to a participant from several senders must be sorted again.
#[test]
fn a_repartition_that_kept_order_still_does_across_participants() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "CREATE TABLE t (i int, k int, d date);
             INSERT INTO t SELECT g, g % 13, date '2024-01-01' + g % 40 FROM generate_series(1, 20000) g;
             ANALYZE t",
        )
        .unwrap();
    check_both_ways(
        &mut client,
        &[
            (
                true,
                "SELECT i, k, rank() OVER (ORDER BY k), count(*) OVER (PARTITION BY k) FROM t ORDER BY i",
            ),
            (
                true,
                "SELECT i, rank() OVER (ORDER BY k, d), sum(i) OVER (PARTITION BY k ORDER BY d) FROM t ORDER BY i",
            ),
        ],
    );
}

/// DataFusion's sum of Decimal128 values adds with wrapping 128-bit
/// arithmetic: three values of numeric(38, 0) near 10^38 summed to a
/// negative number. Sums of values of more than 20 digits are checked, and
/// one past 38 digits (76 for the squares a variance sums) is handed back
/// to Postgres, as a plain aggregate, grouped, over a window frame, in an
/// average and in a variance.
#[test]
fn a_numeric_sum_past_128_bits_is_handed_back_not_wrapped() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "CREATE TABLE w (k int PRIMARY KEY, x numeric(38, 0), g int);
             INSERT INTO w SELECT g, CASE WHEN g < 4 THEN 90000000000000000000000000000000000000
                                          ELSE -90000000000000000000000000000000000000 END, g % 2
               FROM generate_series(1, 6) g;
             ANALYZE w",
        )
        .unwrap();
    let sums = [
        "SELECT sum(x) FROM w",
        "SELECT g, sum(x), avg(x) FROM w GROUP BY g ORDER BY g",
        "SELECT sum(x), avg(x) FROM w WHERE k < 4",
        "SELECT var_pop(x), stddev_samp(x) FROM w",
        "SELECT k, sum(x) OVER (ORDER BY k ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) FROM w ORDER BY k",
    ];
    check_both_ways(&mut client, &sums.map(|sql| (true, sql)));
    client.batch_execute("SET weft.force = on").unwrap();
    let plan = text_rows(
        &mut client,
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT sum(x) FROM w WHERE k < 4",
    )
    .unwrap();
    assert!(
        plan.iter()
            .flatten()
            .flatten()
            .any(|line| line.contains("handed back to Postgres's plan: a numeric sum beyond 38 digits")),
        "{plan:?}"
    );
}

/// A join of many tables ships a deep plan; every participant decodes it.
#[test]
fn a_join_of_64_tables_runs() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "CREATE TABLE j (a int NOT NULL, b int);
             INSERT INTO j SELECT g, g * 2 FROM generate_series(1, 50) g;
             ANALYZE j",
        )
        .unwrap();
    let from = (1..=64)
        .map(|i| {
            if i == 1 {
                "j t1".to_string()
            } else {
                format!("JOIN j t{i} ON t{i}.a = t{}.a", i - 1)
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let sql = format!("SELECT count(*), sum(t64.b) FROM {from}");
    check_both_ways(&mut client, &[(true, &sql)]);
}

/// A FULL JOIN under a LEFT JOIN (from Postgres's join regression test),
/// once failed by a participant that never started an exchange: run many
/// times, it always answers as Postgres does.
#[test]
fn a_full_join_under_a_left_join_answers_every_time() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "CREATE TABLE tenk1 AS SELECT g AS unique1, g % 100 AS hundred FROM generate_series(0, 9999) g;
             ANALYZE tenk1",
        )
        .unwrap();
    let sql = "SELECT count(*) FROM (SELECT 1 AS id) xx LEFT JOIN \
               (tenk1 a1 FULL JOIN (SELECT 1 AS id) yy ON a1.unique1 = yy.id) ON xx.id = coalesce(yy.id)";
    let taken_over = taken(&mut client, sql);
    let (_, stock) = both_ways(&mut client, sql);
    client
        .batch_execute("SET weft.enable = on; SET weft.force = on")
        .unwrap();
    for round in 0..200 {
        let weft = text_rows(&mut client, sql);
        assert_eq!(weft, stock, "round {round} (taken over: {taken_over})");
    }
}

/// Values Arrow cannot hold (infinite timestamps and dates, a numeric NaN
/// in a `numeric(p, s)` column): the query is handed back to the stock
/// plan before any row is returned, and answers as Postgres does.
#[test]
fn values_weft_cannot_carry_hand_the_query_back() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "CREATE TABLE inf (id int, ts timestamp, tz timestamptz, d date, n numeric(10,2));
             INSERT INTO inf SELECT g, timestamp '2020-01-01' + g * interval '1 hour',
                 timestamptz '2020-01-01 00:00+00' + g * interval '1 hour', date '2020-01-01' + g, g / 4.0
                 FROM generate_series(1, 20000) g;
             INSERT INTO inf VALUES (20001, 'infinity', '-infinity', 'infinity', 'NaN'),
                 (20002, '-infinity', 'infinity', '-infinity', 1.5);
             ANALYZE inf",
        )
        .unwrap();
    for workers in [0, 2] {
        client.batch_execute(&format!("SET weft.workers = {workers}")).unwrap();
        check_both_ways(
            &mut client,
            &[
                (true, "SELECT id, ts, tz, d FROM inf WHERE id > 19990 ORDER BY id"),
                (true, "SELECT max(ts), min(tz), max(d), min(d) FROM inf"),
                (true, "SELECT count(*), sum(n), max(n) FROM inf"),
                (true, "SELECT d, count(*) FROM inf GROUP BY d ORDER BY d DESC LIMIT 3"),
                // Rows the scan's filter leaves out are never converted.
                (
                    true,
                    "SELECT count(*), max(ts) FROM inf WHERE ts < timestamp '2021-01-01'",
                ),
            ],
        );
    }
    // Text that is not UTF-8 in a UTF8 database (a binary cast from bytea
    // makes it; a C function could too): Postgres counts its bytes.
    client
        .batch_execute(
            "CREATE CAST (bytea AS text) WITHOUT FUNCTION;
             CREATE TABLE bad (id int, t text);
             INSERT INTO bad SELECT g, 'fine ' || g FROM generate_series(1, 5000) g;
             INSERT INTO bad VALUES (5001, '\\x61ff62'::bytea::text);
             ANALYZE bad",
        )
        .unwrap();
    check_both_ways(
        &mut client,
        &[
            (true, "SELECT count(t), max(id) FROM bad"),
            (true, "SELECT id, octet_length(t) FROM bad WHERE id > 4998 ORDER BY id"),
        ],
    );
    for (sql, why) in [
        ("SELECT max(ts) FROM inf", "infinity"),
        (
            "SELECT id, octet_length(t) FROM bad WHERE id > 4998 ORDER BY id",
            "UTF-8",
        ),
    ] {
        let plan = text_rows(&mut client, &format!("EXPLAIN (ANALYZE, COSTS OFF) {sql}")).unwrap();
        let plan = format!("{plan:?}");
        assert!(
            plan.contains("handed back to Postgres's plan") && plan.contains(why),
            "{plan}"
        );
    }
}

/// weft carries char(n) values without their padding and pads them back to
/// the declared length. A char expression of unknown length (`COALESCE(c,
/// '')`, a CASE over chars of different lengths) keeps the padding of the
/// row it came from in Postgres, which a function's text of it or the
/// result column shows (TPC-DS query 84 concatenated such values): weft
/// must leave those to Postgres, and keep taking what ignores the padding.
#[test]
fn char_padding_is_postgres_s() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "CREATE TABLE bp (i int, c char(6), d char(4));
             INSERT INTO bp SELECT g, 'n' || g % 5, CASE WHEN g % 7 <> 0 THEN 'x' || g % 3 END
               FROM generate_series(1, 20000) g;
             ANALYZE bp",
        )
        .unwrap();
    check_both_ways(
        &mut client,
        &[
            // Padding shown: a known length is padded back.
            (true, "SELECT c, d, count(*) FROM bp GROUP BY c, d ORDER BY 1, 2"),
            (
                true,
                "SELECT octet_length(c), format('[%s|%s]', c, d), count(*) FROM bp GROUP BY 1, 2 ORDER BY 1, 2",
            ),
            // Padding ignored: comparisons, casts to text, concatenation
            // of text.
            (true, "SELECT count(*) FROM bp WHERE coalesce(d, c) = 'n1'"),
            (
                true,
                "SELECT coalesce(d, c)::text || '|', count(*) FROM bp GROUP BY 1 ORDER BY 1",
            ),
            // Padding of unknown length shown: Postgres's.
            (false, "SELECT coalesce(d, ''), count(*) FROM bp GROUP BY 1 ORDER BY 1"),
            (
                false,
                "SELECT CASE WHEN i % 2 = 0 THEN c ELSE d END, count(*) FROM bp GROUP BY 1 ORDER BY 1",
            ),
            (
                false,
                "SELECT octet_length(coalesce(d, c)), count(*) FROM bp GROUP BY 1 ORDER BY 1",
            ),
            (
                false,
                "SELECT format('[%s]', coalesce(d, '')), count(*) FROM bp GROUP BY 1 ORDER BY 1",
            ),
            // A result column Postgres finishes: its char parts of unknown
            // length are not handed to it unpadded, Postgres computes them
            // from the chars of known length (TPC-DS query 84's text).
            (
                true,
                "SELECT i, concat(concat(coalesce(c, ''), ', '), coalesce(d, '')) FROM bp ORDER BY i LIMIT 20",
            ),
        ],
    );
}

/// Errors DataFusion raises in its own words carry Postgres's SQLSTATE and
/// message; functions of a value's stored form (its compression, its size
/// on disk) stay with Postgres, which reads the stored value.
#[test]
fn errors_and_stored_forms_are_postgres_s() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "CREATE TABLE few (a int, t text);
             INSERT INTO few SELECT g, repeat('x', 5000 + g) FROM generate_series(1, 3) g;
             ANALYZE few",
        )
        .unwrap();
    for workers in [0, 2] {
        client.batch_execute(&format!("SET weft.workers = {workers}")).unwrap();
        check_both_ways(
            &mut client,
            &[
                (true, "SELECT a FROM few WHERE a = (SELECT a FROM few) ORDER BY a"),
                (
                    true,
                    "SELECT a, (SELECT a FROM few WHERE a > 1) AS b FROM few ORDER BY 1",
                ),
                (
                    false,
                    "SELECT a, pg_column_compression(t), pg_column_size(t) FROM few ORDER BY a",
                ),
            ],
        );
    }
    let (_, stock) = both_ways(&mut client, "SELECT a FROM few WHERE a = (SELECT a FROM few)");
    assert!(stock.is_err_and(|e| e.starts_with("21000:")));
}

/// The tuples weft's scans read count in `pg_stat_user_tables` as those of
/// Postgres's own sequential scans do.
#[test]
fn weft_s_scans_count_in_the_table_statistics() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "CREATE TABLE st AS SELECT g AS a FROM generate_series(1, 50000) g;
             DELETE FROM st WHERE a % 10 = 0;
             ANALYZE st",
        )
        .unwrap();
    let sql = "SELECT count(*), sum(a) FROM st WHERE a > 3000";
    // The counter after everything counted so far has reached the shared
    // statistics (a backend flushes when idle; workers as they exit).
    let read = |client: &mut Client| -> i64 {
        client.batch_execute("SELECT pg_stat_force_next_flush()").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        client.batch_execute("SELECT pg_stat_clear_snapshot()").unwrap();
        value(
            client,
            "SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = 'st'",
        )
        .parse()
        .unwrap()
    };
    let mut read_by = Vec::new();
    for setting in ["SET weft.enable = off", "SET weft.enable = on; SET weft.force = on"] {
        client.batch_execute(setting).unwrap();
        let before = read(&mut client);
        text_rows(&mut client, sql).unwrap();
        read_by.push(read(&mut client) - before);
    }
    assert!(taken(&mut client, sql));
    assert_eq!(read_by[0], 45000, "stock's scan");
    assert_eq!(read_by[1], read_by[0], "weft's scan against stock's");
}

/// A NOTICE raised while a query is planned (a constant text search query
/// without lexemes, folded by the planner) reaches the client once, as
/// without weft: weft's own folding of the same expressions stays silent.
#[test]
fn notices_of_planning_reach_the_client_once() {
    let cluster = Cluster::start();
    let (mut client, notices) = cluster.connect_collecting_notices();
    client
        .batch_execute(
            "CREATE EXTENSION weft;
             CREATE TABLE docs AS SELECT g AS id, 'the quick brown fox ' || g AS body FROM generate_series(1, 1000) g;
             ANALYZE docs",
        )
        .unwrap();
    let sql =
        "SELECT id, ts_headline('english', body, to_tsquery('english', 'the')) FROM docs WHERE id < 4 ORDER BY id";
    let mut heard = Vec::new();
    for setting in ["SET weft.enable = off", "SET weft.enable = on; SET weft.force = on"] {
        client.batch_execute(setting).unwrap();
        notices.lock().unwrap().clear();
        text_rows(&mut client, sql).unwrap();
        heard.push(notices.lock().unwrap().clone());
    }
    assert!(taken(&mut client, sql));
    assert!(!heard[0].is_empty(), "stock raised no NOTICE: the test tests nothing");
    assert_eq!(heard[1], heard[0], "weft's notices against stock's");
}

/// A TPC-DS-style query (Q6's shape): a SELECT DISTINCT scalar subquery,
/// whose rows the participants aggregate by hash, beside a correlated
/// avg() subquery. Every participant reads the subquery's value; run many
/// times, it always answers as Postgres does.
#[test]
fn a_distinct_scalar_subquery_beside_a_correlated_one_answers_every_time() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "CREATE TABLE date_dim (d_date_sk int, d_year int, d_moy int, d_month_seq int);
             INSERT INTO date_dim SELECT g, 1998 + g / 365, 1 + (g / 30) % 12, g / 30 FROM generate_series(0, 3000) g;
             CREATE TABLE item (i_item_sk int, i_category text, i_current_price numeric(7,2));
             INSERT INTO item SELECT g, 'cat' || (g % 10), (g % 97) + 0.5 FROM generate_series(1, 5000) g;
             CREATE TABLE store_sales (ss_sold_date_sk int, ss_item_sk int, ss_qty int);
             INSERT INTO store_sales SELECT g % 3000, 1 + g % 5000, g % 7 FROM generate_series(1, 100000) g;
             ANALYZE",
        )
        .unwrap();
    let sql = "SELECT i.i_category, count(*), sum(s.ss_qty) FROM store_sales s, date_dim d, item i \
               WHERE s.ss_sold_date_sk = d.d_date_sk AND s.ss_item_sk = i.i_item_sk \
               AND d.d_month_seq = (SELECT DISTINCT d_month_seq FROM date_dim WHERE d_year = 2001 AND d_moy = 2) \
               AND i.i_current_price > 1.2 * (SELECT avg(j.i_current_price) FROM item j WHERE j.i_category = i.i_category) \
               GROUP BY i.i_category ORDER BY 1";
    client.batch_execute("SET weft.force = on").unwrap();
    assert!(taken(&mut client, sql));
    let (_, stock) = both_ways(&mut client, sql);
    assert!(stock.as_ref().is_ok_and(|rows| !rows.is_empty()), "{stock:?}");
    client.batch_execute("SET weft.force = on").unwrap();
    for round in 0..50 {
        assert_eq!(text_rows(&mut client, sql), stock, "round {round}");
    }
}

/// The backend's peak resident memory (`VmHWM`), in kB.
fn peak_memory_kb(client: &mut Client) -> u64 {
    let pid = value(client, "SELECT pg_backend_pid()");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

/// Values a scan detoasts to test them (a LIKE on large TOASTed text) are
/// freed as the scan moves on, not kept until its batch of up to 32,768
/// examined tuples ends: 600 values of 256 kB, a few to a page, stay far
/// below their 150 MB in the backend's peak memory.
#[test]
fn detoasted_values_are_freed_as_the_scan_goes() {
    let (_cluster, mut client) = with_weft();
    client
        .batch_execute(
            "CREATE TABLE big (id int, pad text, t text);
             ALTER TABLE big ALTER pad SET STORAGE PLAIN, ALTER t SET STORAGE EXTERNAL;
             INSERT INTO big SELECT g, repeat('p', 2000), repeat(chr(97 + g % 20), 262144) FROM generate_series(1, 600) g;
             ANALYZE big;
             SET weft.workers = 0; SET weft.force = on",
        )
        .unwrap();
    let sql = "SELECT count(*), sum(id) FROM big WHERE t LIKE 'c%'";
    assert!(taken(&mut client, sql));
    text_rows(&mut client, "SELECT count(*) FROM big").unwrap();
    let before = peak_memory_kb(&mut client);
    let (weft, stock) = both_ways(&mut client, sql);
    assert_eq!(weft, stock);
    let grown = peak_memory_kb(&mut client).saturating_sub(before);
    assert!(grown < 64 * 1024, "the backend's peak grew by {grown} kB");
}
