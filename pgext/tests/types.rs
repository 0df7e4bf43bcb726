//! Column types without an Arrow counterpart, differentially (weft forced
//! on against off, in a C and an `en_US.UTF-8` database): enums (one value
//! added out of order), domains, jsonb, arrays, inet, macaddr, money,
//! ranges, and the native types DataFusion does not order as Postgres
//! (floats with NaN and -0, intervals equal by their span). weft carries
//! such values as their images and lets Postgres compare, order and
//! compute them; equality, grouping and joins on the bytes only where
//! the type's btree opclass says equal values have equal images. Casts
//! through text and ANY/ALL over arrays go through Postgres too.

use weft_pg_harness::differential::check_taken_and_kept;
use weft_pg_harness::postgres::Client;
use weft_pg_harness::Cluster;

/// A table of 20,000 rows of those types (NULLs among them) in database
/// `name`, created with `options`.
fn database(cluster: &Cluster, name: &str, options: &str) -> Client {
    let mut client = cluster.database(name, options);
    client
        .batch_execute(
            "CREATE EXTENSION weft;
             CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
        )
        .unwrap();
    // An odd OID, which Postgres orders by pg_enum's sort order; committed
    // before use, as Postgres requires.
    client
        .batch_execute("ALTER TYPE mood ADD VALUE 'meh' BEFORE 'ok'")
        .unwrap();
    client
        .batch_execute(
            "CREATE DOMAIN positive AS int CHECK (VALUE > 0);
             CREATE DOMAIN label AS text;
             CREATE TYPE pair AS (x int, y text);
             CREATE TABLE kinds (i int, m mood, p positive, l label, j jsonb, a int[], ip inet, iv interval,
                                 f float8, u uuid, mc macaddr, mo money, r int4range, c pair, n numeric,
                                 w numeric(50, 4));
             INSERT INTO kinds
                  SELECT g,
                         CASE WHEN g % 29 <> 0 THEN (ARRAY['happy', 'sad', 'meh', 'ok'])[1 + g % 4]::mood END,
                         g,
                         CASE WHEN g % 31 <> 0 THEN (ARRAY['éclair', 'Eclair', 'apple', 'Zebra', 'co-op', 'coop'])[1 + g % 6] END,
                         CASE WHEN g % 37 <> 0 THEN
                              jsonb_build_object('k', g % 5, 'name', 'n' || (g % 7), 'w', (g % 3)::numeric / 2,
                                                 'tags', jsonb_build_array(g % 2, 'x'))
                         END,
                         CASE WHEN g % 41 <> 0 THEN ARRAY[g % 4, NULLIF(g % 3, 0)] END,
                         ('10.' || (g % 3) || '.' || (g % 5) || '.0/' || (16 + g % 2 * 8))::inet,
                         (g % 9) * interval '1 day' + (g % 2) * interval '1 mon' + (g % 4 = 0)::int * interval '30 days',
                         CASE g % 11 WHEN 0 THEN 'NaN' WHEN 1 THEN '-0' WHEN 2 THEN '0' WHEN 3 THEN 'Infinity'
                                     WHEN 4 THEN NULL ELSE (g % 17)::float8 / 3 END,
                         md5((g % 5000)::text)::uuid,
                         ('08:00:2b:01:02:' || lpad(to_hex(g % 256), 2, '0'))::macaddr,
                         ((g % 100) * 1.25)::money,
                         int4range(g % 10, g % 10 + g % 3 + 1),
                         ROW(g % 3, 'y')::pair,
                         CASE WHEN g % 43 = 0 THEN NULL WHEN g % 501 = 0 THEN 'NaN' WHEN g % 997 = 0 THEN 'Infinity'
                              WHEN g % 1999 = 0 THEN '-Infinity' ELSE round((g % 1000)::numeric / 7, g % 4) END,
                         (g::numeric ^ 3) * 1000000000000000000000.5
                    FROM generate_series(1, 20000) g;
             CREATE TABLE moods (m mood, label text);
             INSERT INTO moods VALUES ('sad', 'low'), ('meh', 'flat'), ('ok', 'fine'), ('happy', 'high');
             ANALYZE kinds; ANALYZE moods;
             SET max_parallel_workers_per_gather = 2",
        )
        .unwrap();
    client
}

/// Queries weft takes, answered as Postgres answers them.
const TAKEN: &[&str] = &[
    // Enums: equality on the bytes (grouping, a hash join, a constant),
    // order and comparisons by Postgres's enum_cmp.
    "SELECT m, count(*) FROM kinds GROUP BY m ORDER BY m",
    "SELECT m, i FROM kinds ORDER BY m DESC NULLS LAST, i LIMIT 50",
    "SELECT DISTINCT m FROM kinds ORDER BY m NULLS FIRST",
    "SELECT moods.label, count(*) FROM kinds JOIN moods ON kinds.m = moods.m GROUP BY 1 ORDER BY 1",
    "SELECT count(*) FROM kinds WHERE m = 'meh' OR m <> 'ok'",
    "SELECT count(*), min(i) FROM kinds WHERE m > 'sad' AND m BETWEEN 'meh' AND 'happy'",
    // Domains read as their base types.
    "SELECT p, l FROM kinds WHERE p < 40 ORDER BY l, p",
    "SELECT l, count(*), sum(p) FROM kinds GROUP BY l ORDER BY l",
    // jsonb through Postgres's operators, in filters, group keys, outputs.
    "SELECT j->>'name' AS n, sum((j->'k')::int), count(j) FROM kinds GROUP BY 1 ORDER BY 1",
    "SELECT count(*) FROM kinds WHERE j @> '{\"k\": 2}' AND j ? 'name'",
    "SELECT j->'tags', j, i FROM kinds WHERE i % 997 = 3 ORDER BY i",
    "SELECT j, i FROM kinds ORDER BY j, i LIMIT 40",
    "SELECT jsonb_typeof(j->'w'), count(*) FROM kinds GROUP BY 1 ORDER BY 1",
    // Arrays, ranges and other types ordered by their btree comparison.
    "SELECT a, i FROM kinds ORDER BY a DESC NULLS LAST, i LIMIT 40",
    "SELECT array_length(a, 1), count(*) FROM kinds GROUP BY 1 ORDER BY 1",
    "SELECT r, i FROM kinds ORDER BY r, i DESC LIMIT 30",
    "SELECT ip, count(*) FROM kinds GROUP BY ip ORDER BY ip",
    "SELECT count(DISTINCT ip), count(DISTINCT m) FROM kinds",
    "SELECT host(ip), masklen(ip), count(*) FROM kinds GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT mc, mo, r, u, i FROM kinds WHERE i % 997 = 1 ORDER BY i",
    "SELECT mo, count(*) FROM kinds GROUP BY mo ORDER BY mo DESC LIMIT 10",
    // Intervals ('1 mon' = '30 days' are peers, ordered by the next key)
    // and floats (NaN greatest, -0 = 0) in Postgres's order.
    "SELECT iv, i FROM kinds ORDER BY iv, i LIMIT 60",
    "SELECT f, i FROM kinds ORDER BY f DESC, i LIMIT 60",
    "SELECT f, i FROM kinds WHERE i < 300 ORDER BY f NULLS FIRST, i",
    "SELECT u, i FROM kinds ORDER BY u, i LIMIT 20",
    // Polymorphic functions read their arguments' types through the
    // bridge's call expression.
    "SELECT concat(m, ':', p, ':', ip), format('%s/%s', m, iv), i FROM kinds WHERE i % 501 = 0 ORDER BY i",
    // ANY/ALL over arrays that are not constant lists, and with
    // operators other than = and <>: Postgres's own evaluation, NULLs
    // included.
    "SELECT count(*) FROM kinds WHERE 2 = ANY(a)",
    "SELECT count(*), count(a) FROM kinds WHERE 2 <> ALL(a)",
    "SELECT count(*) FROM kinds WHERE p > ALL(ARRAY[3, NULL]) OR p < ANY(a)",
    "SELECT count(*) FROM kinds WHERE m = ANY('{ok,sad}') AND l <> ALL('{coop,Zebra}')",
    "SELECT count(*) FROM kinds WHERE i = ANY('{}')",
    // Casts through text (CoerceViaIO), by the types' I/O functions.
    "SELECT m::text, ip::text, count(*) FROM kinds GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT (j->>'k')::int + 1 AS k, ('2020-01-' || (i % 28 + 1))::date AS d, count(*) FROM kinds GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT j::text, iv::text, f::text, i FROM kinds WHERE i % 499 = 7 ORDER BY i",
    // numeric without a declared scale: each value's own display scale,
    // NaN and infinities; computed by Postgres (sums by numeric_add).
    "SELECT i, n, w FROM kinds WHERE i % 97 = 0 OR n = 'NaN' ORDER BY i",
    "SELECT sum(n), avg(n), count(n), sum(w), avg(w) FROM kinds",
    "SELECT i % 7 AS k, sum(n), avg(n), sum(n * 2) FROM kinds WHERE n < 1000 GROUP BY 1 ORDER BY 1",
    "SELECT n, i FROM kinds ORDER BY n DESC NULLS LAST, i LIMIT 40",
    "SELECT count(*) FROM kinds WHERE n > 100 AND n <> 'NaN' OR n IN (1.5, 2) OR n BETWEEN 0 AND 0.5",
    "SELECT i, n * 2, n + p, n / 3, -n, round(n, 1), n::numeric(10, 1), w / 1000 FROM kinds WHERE i % 89 = 1 ORDER BY i",
    "SELECT sum(extract(epoch FROM iv)), max(extract(day FROM iv)::int) FROM kinds",
    "SELECT count(*) FROM kinds a JOIN moods ON a.n = length(moods.label) WHERE a.i < 3000",
    "SELECT sum(n / (i % 3)) FROM kinds",
    "SELECT sum(n::int) FROM kinds WHERE n NOT IN ('Infinity', '-Infinity')",
    // GREATEST and LEAST by the type's own comparison: NaN above every
    // number, of equal values the first.
    "SELECT GREATEST(m, 'meh'), LEAST(ip, '10.1.0.0/16'), GREATEST(f, 1.5, NULL), LEAST(iv, interval '3 days'),
            GREATEST(n, n * 2), LEAST(-0.0::float8, f), i FROM kinds WHERE i % 211 = 5 OR i % 11 = 1 ORDER BY i LIMIT 80",
    // Aggregates Postgres folds with their own transition function.
    "SELECT bool_and(i > 0), bool_or(m = 'meh'), every(p < 20000), bit_or(i), bit_and(i | 1), min(m), max(m), min(ip), max(l) FROM kinds",
    "SELECT m, min(ip), max(mo), sum(mo), sum(iv) FROM kinds GROUP BY m ORDER BY m",
    // A Postgres error inside a bridged call: the same error.
    "SELECT sum(jsonb_array_length(j)) FROM kinds",
    "SELECT sum((CASE WHEN i = 777 THEN 'x' ELSE '' END || i)::int) FROM kinds",
    // A numeric constant beside numerics without a scale: all of them
    // Postgres's numerics, the first of equal values kept.
    "SELECT GREATEST(n, 1), LEAST(n, 2.50) FROM kinds WHERE i < 10 ORDER BY i",
];

/// Queries that stay with Postgres: grouping where equal values may
/// differ in their bytes, and composite types.
const KEPT: &[&str] = &[
    "SELECT j, count(*) FROM kinds GROUP BY j ORDER BY 2 DESC, 1 LIMIT 5",
    "SELECT a, count(*) FROM kinds GROUP BY a ORDER BY a",
    "SELECT DISTINCT r FROM kinds ORDER BY r",
    "SELECT c, i FROM kinds WHERE i < 10 ORDER BY i",
    // Equal numerics may differ in display scale (1.5 and 1.50): their
    // bytes neither group nor pick one of equal values as Postgres would.
    "SELECT n, count(*) FROM kinds GROUP BY n ORDER BY n LIMIT 10",
    "SELECT DISTINCT n FROM kinds ORDER BY n LIMIT 10",
    "SELECT count(DISTINCT n) FROM kinds",
    "SELECT min(n), max(n) FROM kinds",
    "SELECT min(f), max(iv), max(a) FROM kinds",
];

#[test]
fn column_types_without_an_arrow_counterpart() {
    let cluster = Cluster::start();
    check_taken_and_kept(&mut database(&cluster, "postgres", ""), TAKEN, KEPT);
    check_taken_and_kept(&mut database(&cluster, "libc", "LOCALE 'en_US.UTF-8'"), TAKEN, KEPT);
}
