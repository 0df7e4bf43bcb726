//! The shapes of reporting SQL, differentially (weft forced on against
//! off, in a C and an `en_US.UTF-8` database): aggregates with FILTER,
//! set operations, DISTINCT ON, window functions, grouping sets, IN and
//! NOT IN over columns that may be NULL.

use weft_pg_harness::differential::check_taken_and_kept;
use weft_pg_harness::postgres::Client;
use weft_pg_harness::{text_rows, Cluster};

/// A table of 30,000 sales (NULLs among them, `i` its primary key) and a
/// small one of regions, in database `name` created with `options`.
fn database(cluster: &Cluster, name: &str, options: &str) -> Client {
    let mut client = cluster.database(name, options);
    client
        .batch_execute(
            "CREATE EXTENSION weft;
             CREATE TABLE sales (i int, region text, amount numeric(12, 2), qty int, day date, f float8,
                                 note text, n numeric);
             INSERT INTO sales
                  SELECT g, (ARRAY['north', 'South', 'east', 'West', 'Éire', NULL])[1 + g % 6],
                         CASE WHEN g % 17 <> 0 THEN (g % 997) * 1.25 END, g % 13,
                         date '2024-01-01' + g % 400, CASE WHEN g % 11 = 0 THEN 'NaN' ELSE (g % 7)::float8 / 4 END,
                         CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || (g % 9) END,
                         round((g % 500)::numeric / 3, g % 3)
                    FROM generate_series(1, 30000) g;
             ALTER TABLE sales ADD PRIMARY KEY (i);
             CREATE TABLE numbers (i int, x numeric);
             INSERT INTO numbers
                  SELECT g, (ARRAY[1.0, 1.00, -1.5, -1.55, -1, 0, 0.000, 'NaN', 'Infinity', '-Infinity', 10000,
                                   9999.9999, -10000, 1e-20, -1e-20, 123456789012345678901234567890.5, NULL, 1e100,
                                   -1e100, 0.0001, 1, 2, -2, -0.00])[1 + g % 24]
                    FROM generate_series(1, 480) g;
             CREATE TABLE ranged (i int, k int, b bigint);
             INSERT INTO ranged
                  SELECT g, CASE WHEN g % 17 = 0 THEN NULL WHEN g % 50 = 0 THEN 2147483647
                                 WHEN g % 51 = 0 THEN -2147483648 ELSE g % 40 END,
                         CASE WHEN g % 19 = 0 THEN NULL WHEN g % 23 = 0 THEN 9223372036854775807 ELSE g % 30 * 1000000000000 END
                    FROM generate_series(1, 3000) g;
             CREATE TABLE regions (region text, manager text);
             INSERT INTO regions VALUES ('north', 'Ann'), ('South', 'Bo'), ('east', 'Cy'), ('nowhere', 'Di'), (NULL, 'Ed');
             ANALYZE sales; ANALYZE regions;
             SET max_parallel_workers_per_gather = 2",
        )
        .unwrap();
    client
}

/// Queries weft takes, answered as Postgres answers them.
const TAKEN: &[&str] = &[
    // FILTER: only the rows whose condition is true (NULL excludes).
    "SELECT count(*) FILTER (WHERE qty > 6), sum(amount) FILTER (WHERE region = 'north'),
            avg(qty) FILTER (WHERE note IS NOT NULL), max(day) FILTER (WHERE amount > 100),
            count(DISTINCT region) FILTER (WHERE qty < 3)
       FROM sales",
    "SELECT region, count(*) FILTER (WHERE amount IS NULL), sum(qty) FILTER (WHERE f > 1),
            sum(n) FILTER (WHERE qty = 0), min(note) FILTER (WHERE qty > 10)
       FROM sales GROUP BY region ORDER BY region",
    "SELECT sum(CASE WHEN qty > 3 THEN amount ELSE 0 END) FILTER (WHERE region <> 'east'),
            avg(amount) FILTER (WHERE day < date '2024-06-01')
       FROM sales",
    // Set operations: NULLs equal to each other, duplicates removed by
    // UNION, INTERSECT and EXCEPT, kept by UNION ALL.
    "SELECT region, qty FROM sales WHERE i < 200 UNION ALL SELECT region, qty FROM sales WHERE i > 29900 ORDER BY 1, 2",
    "SELECT region FROM sales UNION SELECT region FROM regions ORDER BY 1",
    "SELECT region, count(*) FROM (SELECT region FROM sales WHERE qty < 4 UNION ALL SELECT region FROM regions) u
      GROUP BY region ORDER BY region",
    "SELECT region FROM sales INTERSECT SELECT region FROM regions ORDER BY 1",
    "SELECT region FROM regions EXCEPT SELECT region FROM sales WHERE qty > 2 ORDER BY 1",
    "SELECT qty, day FROM sales WHERE qty < 2 EXCEPT SELECT qty, day FROM sales WHERE i % 3 = 0 ORDER BY 2, 1 LIMIT 50",
    "SELECT amount FROM sales WHERE region = 'north' UNION SELECT amount FROM sales WHERE region IS NULL
     INTERSECT SELECT amount FROM sales WHERE qty = 5 ORDER BY 1 NULLS FIRST LIMIT 40",
    "SELECT count(*) FROM (SELECT note FROM sales UNION SELECT manager FROM regions) u",
    // Set operations over numerics whose display scale is each value's,
    // compared by value: averages (one form per value), and values of
    // several forms (1.0, 1.00), which Postgres's plan picks among and weft
    // hands back to it.
    "SELECT qty % 4, avg(amount) FROM sales GROUP BY qty % 4 UNION SELECT qty % 4, avg(amount) FROM sales
      WHERE region = 'north' GROUP BY qty % 4 UNION SELECT 9, avg(qty) FROM sales ORDER BY 1, 2",
    "SELECT region, avg(qty) FROM sales GROUP BY region INTERSECT SELECT region, avg(qty) FROM sales WHERE i > 0
      GROUP BY region ORDER BY 1 NULLS FIRST",
    "SELECT qty, avg(amount) FROM sales GROUP BY qty EXCEPT SELECT qty, avg(amount) FROM sales WHERE qty > 6
      GROUP BY qty ORDER BY 1",
    "SELECT x FROM numbers WHERE i % 5 = 0 UNION SELECT x FROM numbers WHERE i % 7 = 0 ORDER BY 1",
    "SELECT n FROM sales UNION SELECT n FROM sales ORDER BY 1",
    "SELECT x / 3 FROM numbers WHERE i < 100 EXCEPT SELECT x / 3 FROM numbers WHERE i % 2 = 0 ORDER BY 1",
    // Sides Postgres coerces to one type: integers widened, numerics of
    // one display scale, numerics of several (each value keeps its own).
    "SELECT qty, amount FROM sales WHERE i < 300 UNION ALL SELECT i::bigint, amount::numeric(20, 2) FROM sales
      WHERE i > 29800 ORDER BY 1, 2",
    "SELECT i, coalesce(amount, 0) FROM sales WHERE i < 300 UNION ALL SELECT i, amount FROM sales WHERE i > 29800
     UNION ALL SELECT i, n FROM sales WHERE i BETWEEN 1000 AND 1100 ORDER BY 1, 2",
    "SELECT region, sum(amount) FROM sales GROUP BY region UNION SELECT region, avg(amount) FROM sales GROUP BY region
      ORDER BY 1, 2",
    // INTERSECT ALL and EXCEPT ALL: each row as often as it is on both
    // sides, or on the left beyond the right (NULLs equal).
    "SELECT qty FROM sales INTERSECT ALL SELECT qty FROM sales WHERE region = 'north' ORDER BY 1",
    "SELECT qty FROM sales EXCEPT ALL SELECT qty FROM sales WHERE region = 'north' ORDER BY 1",
    "SELECT region, note, count(*) FROM (SELECT region, note FROM sales EXCEPT ALL SELECT region, note FROM sales
      WHERE i % 7 = 0) s GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT region, count(*) FROM (SELECT region FROM sales WHERE qty < 2 INTERSECT ALL SELECT region FROM sales
      WHERE qty > 10) s GROUP BY 1 ORDER BY 1",
    // DISTINCT ON: the first row of each group in the ORDER BY (a total
    // order here, so that the first row is one row).
    "SELECT DISTINCT ON (qty) qty, i, amount FROM sales ORDER BY qty, amount DESC NULLS LAST, i",
    "SELECT DISTINCT ON (qty, day) qty, day, i FROM sales WHERE qty < 3 ORDER BY qty DESC, day, i DESC LIMIT 100",
    "SELECT DISTINCT ON (day) day, region, i FROM sales ORDER BY day DESC, i",
    // Window functions: ranks over peers, running sums with the default
    // frame (peers included), ROWS frames, partitions with NULL keys,
    // windows over grouped rows.
    "SELECT i, qty, row_number() OVER (PARTITION BY qty ORDER BY i) FROM sales WHERE i < 2000 ORDER BY i",
    "SELECT i, day, rank() OVER (ORDER BY day), dense_rank() OVER (ORDER BY day DESC) FROM sales WHERE i < 500 ORDER BY i",
    "SELECT i, sum(qty) OVER (ORDER BY day), count(*) OVER (PARTITION BY region), max(day) OVER (PARTITION BY qty)
       FROM sales WHERE i % 7 = 0 ORDER BY i",
    "SELECT i, region, sum(qty) OVER (PARTITION BY region ORDER BY i ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING),
            min(i) OVER (PARTITION BY region ORDER BY i ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING),
            count(amount) OVER (PARTITION BY region ORDER BY qty RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
       FROM sales WHERE i % 13 = 0 ORDER BY i",
    "SELECT i, percent_rank() OVER (PARTITION BY qty ORDER BY day), cume_dist() OVER (ORDER BY qty)
       FROM sales WHERE i % 11 = 0 ORDER BY i",
    "SELECT qty, sum(amount), count(*), rank() OVER (ORDER BY count(*) DESC, qty),
            sum(count(*)) OVER (ORDER BY qty ROWS UNBOUNDED PRECEDING)
       FROM sales GROUP BY qty ORDER BY qty",
    // lag, lead, first_value, last_value, nth_value and ntile over a total
    // order (constant offsets and defaults, frames at partition edges), and
    // over grouped rows; numeric sums, min and max over windows.
    "SELECT i, lag(qty) OVER (ORDER BY i), lead(qty, 2, -1) OVER (ORDER BY i),
            lag(amount, 3, 0.00) OVER (PARTITION BY region ORDER BY i), lead(note, 1, 'none') OVER (PARTITION BY qty ORDER BY i DESC)
       FROM sales WHERE i < 3000 ORDER BY i",
    "SELECT i, first_value(note) OVER (PARTITION BY qty ORDER BY i),
            last_value(i) OVER (PARTITION BY qty ORDER BY i ROWS BETWEEN 1 PRECEDING AND 2 FOLLOWING),
            nth_value(day, 3) OVER (PARTITION BY region ORDER BY i), last_value(amount) OVER (ORDER BY i)
       FROM sales WHERE i % 5 = 0 ORDER BY i",
    "SELECT i, ntile(7) OVER (ORDER BY i), ntile(4) OVER (PARTITION BY qty ORDER BY i DESC) FROM sales WHERE i < 1000 ORDER BY i",
    "SELECT qty, sum(amount), lag(sum(amount)) OVER (ORDER BY qty),
            sum(sum(amount)) OVER (ORDER BY qty ROWS UNBOUNDED PRECEDING),
            first_value(count(*)) OVER (ORDER BY sum(amount) DESC NULLS LAST, qty)
       FROM sales GROUP BY qty ORDER BY qty",
    "SELECT region, day < date '2024-06-01', count(*), lag(count(*), 1, 0::bigint) OVER (PARTITION BY region ORDER BY day < date '2024-06-01')
       FROM sales GROUP BY region, day < date '2024-06-01' ORDER BY 1, 2",
    "SELECT i, sum(amount) OVER (PARTITION BY qty ORDER BY i ROWS BETWEEN 3 PRECEDING AND CURRENT ROW),
            min(amount) OVER (ORDER BY day), max(amount) OVER (PARTITION BY region), sum(amount) OVER (PARTITION BY qty)
       FROM sales WHERE i < 3000 ORDER BY i",
    // avg over windows (Postgres's quotient and display scale), of integers
    // and numerics, over grouped rows, read by comparisons and arithmetic
    // and a CASE with a NULL branch; a filter on a partition key pushed
    // below the window (the key then constant) across participants.
    "SELECT i, avg(qty) OVER (PARTITION BY region ORDER BY day), avg(amount) OVER (PARTITION BY qty)
       FROM sales WHERE i % 9 = 0 ORDER BY i",
    "SELECT region, qty, s, a FROM (SELECT region, qty, sum(amount) s, avg(sum(amount)) OVER (PARTITION BY qty, region) a,
                                           rank() OVER (PARTITION BY region ORDER BY qty DESC) rn
                                      FROM sales GROUP BY region, qty) t
      WHERE a > 0 AND qty = 5 AND rn > 1
      ORDER BY s - a, 1, 2",
    "SELECT region, qty, s, a FROM (SELECT region, qty, sum(amount) s, avg(sum(amount)) OVER (PARTITION BY region) a,
                                           rank() OVER (PARTITION BY qty % 4 ORDER BY qty) rn
                                      FROM sales GROUP BY region, qty) t
      WHERE CASE WHEN a > 0 THEN abs(s - a) / a ELSE NULL END > 0.01 ORDER BY s - a, 1, 2",
    // RANGE frames with offsets (NULL keys, keys at the integers' edges,
    // descending keys, numerics) and GROUPS frames.
    "SELECT i, k, sum(i) OVER (ORDER BY k RANGE BETWEEN 3 PRECEDING AND 2 FOLLOWING),
            count(*) OVER (ORDER BY k DESC NULLS LAST RANGE BETWEEN 1 FOLLOWING AND 5 FOLLOWING),
            min(i) OVER (ORDER BY k RANGE BETWEEN 2147483647 PRECEDING AND 2147483647 FOLLOWING)
       FROM ranged ORDER BY i",
    "SELECT i, sum(i) OVER (PARTITION BY i % 3 ORDER BY b RANGE BETWEEN 2000000000000 PRECEDING AND CURRENT ROW),
            max(i) OVER (ORDER BY b DESC RANGE BETWEEN 9223372036854775807 PRECEDING AND 5 FOLLOWING)
       FROM ranged ORDER BY i",
    "SELECT i, sum(qty) OVER (ORDER BY i RANGE BETWEEN 2 PRECEDING AND CURRENT ROW),
            count(*) OVER (PARTITION BY region ORDER BY amount NULLS FIRST RANGE BETWEEN 1.5 PRECEDING AND 0.25 FOLLOWING)
       FROM sales WHERE i % 3 = 0 ORDER BY i",
    "SELECT i, sum(i) OVER (ORDER BY k GROUPS BETWEEN 1 PRECEDING AND 1 FOLLOWING),
            count(*) OVER (PARTITION BY i % 4 ORDER BY k DESC GROUPS 2 PRECEDING),
            sum(i) OVER (ORDER BY k GROUPS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)
       FROM ranged ORDER BY i",
    // Windows keyed by numerics whose display scale is each value's (equal
    // values of different scales are peers and share a partition;
    // negatives, NaN, the infinities, NULLs), and by averages.
    "SELECT i, x, rank() OVER (ORDER BY x), dense_rank() OVER (ORDER BY x DESC NULLS LAST),
            count(*) OVER (PARTITION BY x), sum(i) OVER (ORDER BY x NULLS FIRST), cume_dist() OVER (PARTITION BY i % 3 ORDER BY x)
       FROM numbers ORDER BY i",
    "SELECT i, n, rank() OVER (ORDER BY n), count(*) OVER (PARTITION BY n / 2 ORDER BY n DESC)
       FROM sales WHERE i % 7 = 0 ORDER BY i",
    "SELECT qty, avg(amount), rank() OVER (ORDER BY avg(amount) DESC), sum(count(*)) OVER (ORDER BY avg(qty))
       FROM sales GROUP BY qty ORDER BY qty",
    // FETCH FIRST .. WITH TIES: the rows tied with the last one kept.
    "SELECT * FROM (SELECT i, qty FROM sales ORDER BY qty FETCH FIRST 5 ROWS WITH TIES) s ORDER BY i",
    "SELECT * FROM (SELECT region, count(*) FROM sales GROUP BY region ORDER BY count(*) DESC
                    FETCH FIRST 1 ROW WITH TIES) s ORDER BY 1 NULLS FIRST",
    "SELECT * FROM (SELECT day, region FROM sales ORDER BY day DESC, region NULLS FIRST
                    FETCH FIRST 100 ROWS WITH TIES) s ORDER BY 1, 2",
    // Variances and standard deviations of integers, digit for digit as
    // Postgres's numerics (equal values: 0; one value: NULL for samples;
    // values at the integers' edges; FILTER).
    "SELECT stddev_samp(qty), var_samp(qty), stddev_pop(qty), var_pop(qty), stddev(i), variance(i) FROM sales",
    "SELECT region, stddev_samp(qty), var_pop(i), stddev_pop(i) FILTER (WHERE qty > 3), variance(qty::int2), count(*)
       FROM sales GROUP BY region ORDER BY 1",
    "SELECT qty, stddev_samp(i), var_samp(7), stddev_pop(7), stddev_samp(i) FILTER (WHERE i < 14) FROM sales
      WHERE i < 40 GROUP BY qty ORDER BY 1",
    "SELECT i % 3, stddev_samp(k), var_pop(k), stddev_pop(k), var_samp(k) FROM ranged GROUP BY 1 ORDER BY 1",
    "SELECT g, stddev_samp(x), stddev_pop(x), var_samp(x), var_pop(x)
       FROM (SELECT i % 3000 g, ((i::bigint * 104729) % 2147483647 - 1073741823)::int x FROM sales) s
      GROUP BY g ORDER BY g",
    // ... and of int8 and numerics of one display scale (the sums of
    // squares in 256 bits; the result's scale at least twice the values').
    "SELECT region, stddev_samp(amount), var_pop(amount), variance(i::bigint), stddev_pop(i::bigint * 1000000007),
            var_samp(amount * qty), stddev_samp(amount) FILTER (WHERE qty < 3), var_samp(amount) FILTER (WHERE i < 3),
            var_pop(n::numeric(10, 3)), stddev_pop(1.5), var_samp(0.001)
       FROM sales GROUP BY region ORDER BY 1",
    "SELECT i % 3, stddev_samp(b), var_pop(b), var_samp(b::numeric(30, 0) * 1000000), stddev_pop(b) FILTER (WHERE b > 0)
       FROM ranged GROUP BY 1 ORDER BY 1",
    "SELECT var_samp(amount), stddev_pop(i::bigint), var_pop(amount) FILTER (WHERE amount = 1.25) FROM sales WHERE i < 40",
    // Statistics of floats, by Postgres's algorithm (Youngs-Cramer,
    // combined pairwise across processes): equal in every digit where the
    // result does not depend on how the rows were split (NaN, infinities,
    // one value, no values, the overflow error), else rounded well above
    // the last bits in which Postgres's own parallel plans differ run to
    // run, each at a digit where its value (fixed by the data) is far from
    // a rounding boundary.
    "SELECT region, round(stddev_samp(f)::numeric, 7), round(var_pop(f)::numeric, 9),
            round(variance(f::float4)::numeric, 9), round(stddev_pop((f * 3)::float4)::numeric, 8),
            round(var_samp(f + 1e9)::numeric, 5)
       FROM sales WHERE i % 11 <> 0 GROUP BY region ORDER BY 1",
    "SELECT region, round(corr(f, qty)::numeric, 11), round(covar_pop(f, i)::numeric, 7),
            round(covar_samp(f, qty)::numeric, 11), round(regr_slope(f, qty)::numeric, 12),
            round(regr_intercept(f, qty)::numeric, 9), round(regr_r2(f, qty)::numeric, 12), regr_count(f, qty),
            round(regr_avgx(f, qty)::numeric, 10), round(regr_avgy(f, qty)::numeric, 10),
            round(regr_sxx(f, qty)::numeric, 5), round(regr_syy(f, qty)::numeric, 6), round(regr_sxy(f, qty)::numeric, 8)
       FROM sales WHERE i % 11 <> 0 GROUP BY region ORDER BY 1",
    "SELECT qty, var_samp(f), stddev_pop(f) FILTER (WHERE i < 14), var_pop(f) FILTER (WHERE i % 11 = 0),
            regr_count(f, qty) FILTER (WHERE i < 0), corr(f, i) FILTER (WHERE i < 0), covar_samp(f, f) FILTER (WHERE i < 14)
       FROM sales GROUP BY qty ORDER BY 1",
    "SELECT var_pop(x), var_samp(x), stddev_samp(x), stddev_pop(x), regr_sxx(1, x), regr_syy(x, 1), regr_sxy(x, x),
            covar_pop(x, x), corr(x, 2), regr_r2(x, x), regr_count(x, i)
       FROM (SELECT i, CASE WHEN i = 3 THEN 'Infinity' WHEN i = 4 THEN '-Infinity' ELSE f END x FROM sales) s
      WHERE i IN (1, 3, 4, 5) GROUP BY i = 1 ORDER BY 1",
    "SELECT var_pop(f), stddev_samp(f), regr_count(f, f), regr_slope(f, f), covar_samp(f, f) FROM sales WHERE i < 0",
    "SELECT var_pop(f * 1e300) FROM sales WHERE i % 11 <> 0",
    "SELECT regr_sxy(f * 1e200, f * 1e200) FROM sales WHERE i % 11 <> 0",
    // count(DISTINCT (a, b)): rows with NULL fields counted, NULL the same
    // as NULL.
    "SELECT qty, count(DISTINCT (region, note)), count(DISTINCT (note, amount, day)) FILTER (WHERE i > 10),
            count(DISTINCT ROW(region))
       FROM sales GROUP BY qty ORDER BY 1",
    "SELECT count(DISTINCT (region, note)), count(DISTINCT (region, qty)) FROM sales WHERE note IS NULL OR region IS NULL",
    // VALUES lists and generate_series in FROM (each participant makes
    // every row): numerics of different display scales keep theirs, NULL
    // bounds make no rows, steps down.
    "SELECT v.x, v.y, count(s.i) FROM (VALUES (1, 'a'), (2, 'b'), (3, NULL), (40, 'd')) v(x, y)
       LEFT JOIN sales s ON s.qty = v.x GROUP BY 1, 2 ORDER BY 1",
    "SELECT s.i, v.n FROM sales s JOIN (VALUES (1, 1.5), (2, 2.25), (3, 3), (4, NULL)) v(k, n) ON s.qty = v.k
      WHERE s.i < 100 ORDER BY 1, 2",
    "SELECT g, count(s.i) FROM generate_series(0, 15) g LEFT JOIN sales s ON s.qty = g GROUP BY g ORDER BY g",
    "SELECT g, count(*) FROM generate_series(20, 1, -3) g JOIN sales ON sales.qty = g GROUP BY g ORDER BY g",
    "SELECT g, sum(i) FROM generate_series(1::bigint, 5::bigint) g JOIN sales ON sales.qty = g GROUP BY g ORDER BY g",
    "SELECT count(*) FROM generate_series(1, NULL) g JOIN sales ON sales.qty = g",
    // unnest of a constant array: elements in storage order (a
    // two-dimensional array flattened), NULL elements as NULL rows, no row
    // of an empty or NULL array, WITH ORDINALITY, numerics keeping each
    // element's display scale.
    "SELECT u, count(*) FROM unnest(ARRAY[1, 2, 3]) u JOIN sales ON sales.qty = u GROUP BY u ORDER BY u",
    "SELECT u, o, count(s.i) FROM unnest(ARRAY[3, NULL, 1, 3]) WITH ORDINALITY AS t(u, o)
       LEFT JOIN sales s ON s.qty = u GROUP BY 1, 2 ORDER BY 2",
    "SELECT u, count(*) FROM unnest('{north,east,nowhere}'::text[]) u JOIN sales ON sales.region = u GROUP BY u ORDER BY u",
    "SELECT u, count(*) FROM unnest('{{1,2},{3,4}}'::int[]) u JOIN sales ON sales.qty = u GROUP BY u ORDER BY u",
    "SELECT count(*) FROM unnest('{}'::int[]) u JOIN sales ON sales.qty = u",
    "SELECT count(*) FROM unnest(NULL::date[]) u JOIN sales ON sales.day = u",
    "SELECT s.i, u FROM unnest(ARRAY[1.5, 2.50, 3, NULL]) u JOIN sales s ON s.qty = u::int WHERE s.i < 20 ORDER BY 1, 2",
    // sum, min and max of DISTINCT values (exact types, equal values of
    // equal bytes).
    "SELECT region, sum(DISTINCT qty), sum(DISTINCT amount), count(DISTINCT qty), min(DISTINCT day),
            max(DISTINCT amount), sum(DISTINCT i::bigint % 7) FROM sales GROUP BY region ORDER BY 1",
    "SELECT sum(DISTINCT qty) FILTER (WHERE region = 'north'), sum(DISTINCT amount) FROM sales",
    // Grouping sets: a rolled-up NULL told from a NULL value by GROUPING()
    // (in the ORDER BY, for a total order), duplicate sets kept, GROUP BY
    // DISTINCT removing them, empty inputs (the grand total's row still
    // made), windows and HAVING over the sets.
    "SELECT region, qty % 3, count(*), sum(amount), GROUPING(region, qty % 3) FROM sales
      GROUP BY ROLLUP(region, qty % 3) ORDER BY 5, 1, 2",
    "SELECT region, day < date '2024-06-01' AS early, count(note), max(i), GROUPING(day < date '2024-06-01', region)
       FROM sales GROUP BY CUBE(region, day < date '2024-06-01') ORDER BY 5, 1, 2",
    "SELECT qty, region, count(*), GROUPING(qty), GROUPING(region, qty) FROM sales WHERE qty < 3
      GROUP BY GROUPING SETS ((qty), (region), (qty), (), ()) ORDER BY 4, 5, 1, 2, 3",
    "SELECT qty, region, count(*) FROM sales WHERE qty < 3
      GROUP BY DISTINCT ROLLUP(qty, region), ROLLUP(qty) ORDER BY GROUPING(qty, region), 1, 2",
    "SELECT qty, region, count(*) FROM sales WHERE qty < 3
      GROUP BY ROLLUP(qty, region), ROLLUP(qty) ORDER BY GROUPING(qty, region), 1, 2, 3",
    "SELECT region, count(*), sum(qty) FROM sales WHERE i < 0 GROUP BY ROLLUP(region)",
    "SELECT qty, count(*) FROM sales WHERE i < 0 GROUP BY GROUPING SETS ((), qty, ())",
    "SELECT region, qty, sum(amount), rank() OVER (PARTITION BY GROUPING(region, qty) ORDER BY count(*) DESC)
       FROM sales GROUP BY ROLLUP(region, qty) HAVING count(*) > 100 ORDER BY GROUPING(region, qty), 1, 2",
    "SELECT region, note, count(*) FROM sales GROUP BY region, ROLLUP(note) ORDER BY GROUPING(note), 1, 2",
    "SELECT region, GROUPING(region), count(*) FROM sales GROUP BY region ORDER BY 1",
    "SELECT count(*), sum(qty) FROM sales GROUP BY ()",
    // Float aggregates: NaN above every number (a group's max, a sum
    // with a NaN), an average of float4s in float8, sums of quarters
    // (exact in any order), Postgres's overflow error.
    "SELECT region, sum(f), avg(f), min(f), max(f), count(f) FROM sales GROUP BY region ORDER BY 1",
    "SELECT qty, sum(f) FILTER (WHERE i % 11 <> 0), max(f) FILTER (WHERE i % 11 <> 0), min(f),
            avg(f::float4), min(f::float4), max((f * 2)::float4) FROM sales GROUP BY qty ORDER BY 1",
    "SELECT sum(f), avg(f), min(f), max(f), max(f) FILTER (WHERE i % 11 <> 0) FROM sales",
    "SELECT sum(f * 1e307) FROM sales WHERE i % 11 <> 0",
    // A WITH query reading another, read from inside subqueries.
    "WITH a AS (SELECT qty, count(*) AS n FROM sales GROUP BY qty), b AS (SELECT qty, n * 2 AS m FROM a)
     SELECT * FROM (SELECT x.qty, x.m, y.n FROM b x JOIN a y ON x.qty = y.qty) s ORDER BY 1",
    "WITH a AS (SELECT qty, count(*) AS n FROM sales GROUP BY qty)
     SELECT qty FROM sales WHERE qty IN (SELECT qty FROM (SELECT qty FROM a WHERE n > 2000) z) GROUP BY qty ORDER BY 1",
    // IN and NOT IN over columns that may be NULL, in WHERE and HAVING:
    // a NULL in the subquery makes NOT IN drop every row, a NULL tested
    // value is dropped unless the subquery is empty.
    "SELECT count(*) FROM sales WHERE region NOT IN (SELECT region FROM regions)",
    "SELECT region, count(*) FROM sales WHERE region NOT IN (SELECT region FROM regions WHERE region IS NOT NULL)
      GROUP BY region ORDER BY 1",
    "SELECT count(*), count(region) FROM sales WHERE region NOT IN (SELECT region FROM regions WHERE manager = 'nobody')",
    "SELECT qty, count(*) FROM sales WHERE qty NOT IN (SELECT qty + 3 FROM sales WHERE amount IS NULL AND qty < 5)
        AND i % 3 = 0 GROUP BY qty ORDER BY qty",
    "SELECT region, count(*) FROM sales WHERE region IN (SELECT region FROM regions) GROUP BY region ORDER BY 1",
    "SELECT note, count(*) FROM sales GROUP BY note HAVING note NOT IN (SELECT 'note ' || qty FROM sales WHERE qty < 4)
      ORDER BY 1",
    "SELECT count(*) FROM sales s JOIN regions r ON s.region = r.region
      WHERE s.note NOT IN (SELECT note FROM sales WHERE qty = 1 AND note IS NOT NULL)",
];

/// Queries that stay with Postgres.
const KEPT: &[&str] = &[
    // Equal values of different bytes.
    "SELECT f FROM sales UNION SELECT f FROM sales WHERE qty = 0 ORDER BY 1",
    // DISTINCT ON over floats, or ordered by text under a collation.
    "SELECT DISTINCT ON (f) f, i FROM sales ORDER BY f, i",
    // Window functions weft does not compute yet, or not as Postgres.
    // Values that follow the order of peers: keys that do not identify a
    // row (sales.i is its primary key, day is not; regions has no key).
    "SELECT i, lag(qty) OVER (ORDER BY day) FROM sales WHERE i < 100 ORDER BY i",
    "SELECT i, sum(qty) OVER (PARTITION BY region ORDER BY day ROWS 2 PRECEDING) FROM sales WHERE i < 100 ORDER BY i",
    "SELECT region, first_value(manager) OVER (ORDER BY region) FROM regions ORDER BY 1, 2",
    // Over a sorted subquery, whose order Postgres keeps among peers.
    "SELECT i, lag(i) OVER (ORDER BY qty) FROM (SELECT * FROM sales WHERE i < 100 ORDER BY qty, i) s ORDER BY i",
    "SELECT i, row_number() OVER (PARTITION BY region ORDER BY qty) FROM (SELECT * FROM sales ORDER BY qty, i DESC) s
      WHERE i < 200 ORDER BY i",
    // A default Postgres shows at its own display scale; an offset per row.
    "SELECT i, lag(amount, 3, 0) OVER (ORDER BY i) FROM sales WHERE i < 100 ORDER BY i",
    "SELECT i, lag(i, qty) OVER (ORDER BY i) FROM sales WHERE i < 100 ORDER BY i",
    "SELECT i, sum(n) OVER (ORDER BY i) FROM sales WHERE i < 100 ORDER BY i",
    // Without an ORDER BY, what depends on the order of the rows.
    "SELECT i, row_number() OVER (PARTITION BY qty) FROM sales WHERE i < 100 ORDER BY i",
    "SELECT i, sum(qty) OVER (ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING) FROM sales WHERE i < 100 ORDER BY i",
    "SELECT i, sum(f) OVER (ORDER BY i) FROM sales WHERE i < 100 ORDER BY i",
    "SELECT i, avg(n) OVER (PARTITION BY region) FROM sales WHERE i < 100 ORDER BY i",
    // RANGE offsets that Postgres's in_range reads in other units, or
    // beyond what weft widens the keys to.
    "SELECT i, count(*) OVER (ORDER BY day RANGE BETWEEN INTERVAL '3 days' PRECEDING AND CURRENT ROW) FROM sales
      WHERE i < 100 ORDER BY i",
    "SELECT i, sum(i) OVER (ORDER BY k RANGE BETWEEN 3000000000 PRECEDING AND CURRENT ROW) FROM ranged ORDER BY i",
    // Variances of numerics whose display scale is each value's.
    "SELECT stddev_samp(n), var_pop(amount / 7) FROM sales",
    // A float variance over a window.
    "SELECT i, stddev_samp(f) OVER (ORDER BY i) FROM sales WHERE i < 100 ORDER BY i",
    // Set-returning functions in FROM weft does not make: a step of zero
    // (Postgres's error), generate_series WITH ORDINALITY, LATERAL calls.
    "SELECT count(*) FROM generate_series(1, 10, 0) g JOIN sales ON sales.qty = g",
    "SELECT g, o, count(*) FROM generate_series(1, 5) WITH ORDINALITY AS t(g, o) JOIN sales ON sales.qty = g
      GROUP BY 1, 2 ORDER BY 1",
    "SELECT count(*) FROM sales, unnest(ARRAY[sales.qty, 1]) u WHERE u = 2",
    // DISTINCT in averages, and over values Postgres deems equal with
    // other bytes.
    "SELECT avg(DISTINCT qty) FROM sales",
    "SELECT count(DISTINCT (f, qty)) FROM sales",
    "SELECT sum(DISTINCT f) FROM sales",
    // An OFFSET before WITH TIES cuts a set of peers where the plan meets
    // them.
    "SELECT * FROM (SELECT i, qty FROM sales ORDER BY qty OFFSET 3 ROWS FETCH FIRST 5 ROWS WITH TIES) s ORDER BY i",
    // EXCLUDE.
    "SELECT i, sum(i) OVER (ORDER BY i ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING EXCLUDE CURRENT ROW) FROM sales
      WHERE i < 100 ORDER BY i",
    // Columns Postgres coerces to a common type through a cast that
    // changes how values show.
    "SELECT f FROM sales UNION ALL SELECT i FROM sales WHERE i < 5",
    // INTERSECT ALL over numerics whose display scale is each value's.
    "SELECT n FROM sales INTERSECT ALL SELECT n FROM sales WHERE qty = 2",
    // Grouping sets that are all empty: DataFusion makes no row of them.
    "SELECT count(*) FROM sales GROUP BY GROUPING SETS ((), ())",
    // IN over a column that may be NULL, where its NULL is not false.
    "SELECT region IN (SELECT region FROM regions), count(*) FROM sales GROUP BY 1 ORDER BY 1",
    "SELECT count(*) FROM sales WHERE region NOT IN (SELECT region FROM regions) OR qty = 1",
    "SELECT count(*) FROM sales s WHERE region NOT IN (SELECT region FROM regions r WHERE r.manager <> s.note)",
];

#[test]
fn reporting_shapes_answer_as_postgres() {
    let cluster = Cluster::start();
    check_taken_and_kept(&mut database(&cluster, "postgres", ""), TAKEN, KEPT);
    check_taken_and_kept(&mut database(&cluster, "libc", "LOCALE 'en_US.UTF-8'"), TAKEN, KEPT);
}

/// A set operation compares numerics whose display scale is each value's
/// by value, and shows the one form of each group; where equal values
/// have several forms (`1.0`, `1.00`), which one Postgres shows is its
/// plan's choice, and weft hands the query back to that plan as it runs.
#[test]
fn set_operations_hand_back_only_equal_numerics_of_several_forms() {
    let cluster = Cluster::start();
    let mut client = database(&cluster, "postgres", "");
    client.batch_execute("SET weft.force = on").unwrap();
    let handed_back = |client: &mut Client, sql: &str| {
        let plan = text_rows(client, &format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}"))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let lines: Vec<String> = plan.into_iter().flatten().flatten().collect();
        assert!(
            lines.iter().any(|l| l.contains("Custom Scan (Weft)")),
            "{sql}: not taken: {lines:?}"
        );
        lines.iter().any(|l| l.contains("handed back to Postgres's plan"))
    };
    let one_form = "SELECT qty % 4, avg(amount) FROM sales GROUP BY qty % 4
                    UNION SELECT qty % 4, avg(amount) FROM sales WHERE region = 'north' GROUP BY qty % 4";
    assert!(!handed_back(&mut client, one_form), "{one_form}");
    let several = "SELECT x FROM numbers WHERE i % 5 = 0 UNION SELECT x FROM numbers WHERE i % 7 = 0";
    assert!(handed_back(&mut client, several), "{several}");
}

/// LIMIT, OFFSET and FETCH .. WITH TIES of a prepared statement's
/// parameters, taken where the values are known (a custom plan).
#[test]
fn limits_of_parameters_are_taken() {
    let cluster = Cluster::start();
    let mut client = database(&cluster, "postgres", "");
    client
        .batch_execute(
            "PREPARE page(int, int) AS SELECT i, amount FROM sales WHERE qty = 3 ORDER BY i LIMIT $1 OFFSET $2;
             PREPARE top(bigint) AS SELECT i, qty FROM sales ORDER BY qty DESC FETCH FIRST $1 ROWS WITH TIES;
             SET plan_cache_mode = force_custom_plan;
             SET weft.force = on",
        )
        .unwrap();
    for execute in ["EXECUTE page(7, 40)", "EXECUTE page(3, 0)", "EXECUTE top(4)"] {
        let plan = text_rows(&mut client, &format!("EXPLAIN (COSTS OFF) {execute}")).unwrap();
        assert!(
            plan.iter()
                .flatten()
                .flatten()
                .any(|l| l.contains("Custom Scan (Weft)")),
            "{execute} not taken: {plan:?}"
        );
        let sorted = |client: &mut Client| {
            let mut rows = text_rows(client, execute).unwrap_or_else(|e| panic!("{execute}: {e}"));
            rows.sort();
            rows
        };
        let weft = sorted(&mut client);
        client.batch_execute("SET weft.enable = off").unwrap();
        let stock = sorted(&mut client);
        client.batch_execute("SET weft.enable = on").unwrap();
        assert!(!stock.is_empty(), "{execute}: no rows");
        assert_eq!(weft, stock, "{execute}");
    }
}
