//! The differential corpus, in three databases: one of the libc locale
//! `en_US.UTF-8`, one whose default collation is ICU's `en-US`, and one of
//! C; each query with weft forced on against weft off, in the same
//! session. Text ordered as Postgres orders it under each collation
//! (ORDER BY with LIMIT and later keys, min and max, `<`/`>`/BETWEEN) over
//! words mixing case, accents, ligatures, punctuation, spaces, digits and
//! empty strings, where these collations and byte order all disagree; and
//! the everyday functions and expressions of analysts' SQL (string
//! functions, dates and times under two time zones, `now()` windows, `%`,
//! NULLIF, `CASE x WHEN`, GREATEST/LEAST, IS DISTINCT FROM), computed
//! natively or by Postgres itself through the function bridge.

use weft_pg_harness::differential::check_both_ways;
use weft_pg_harness::postgres::Client;
use weft_pg_harness::Cluster;

/// Words on which C, libc's en_US and ICU's en-US order differently.
const WORDS: &str = "ARRAY['apple', 'Apple', 'APPLE', 'äpple', 'Äpfel', 'zebra', 'Zebra', 'éclair', 'eclair',
    'Eclair', 'co-op', 'coop', 'co op', '', '  lead', 'a1', 'a10', 'a2', 'A-2', 'résumé', 'resume', 'Resume',
    'straße', 'strasse', 'ß', 'Œuvre', 'oeuvre', 'naïve', 'naive', 'ﬁne', 'fine', 'Ångström', 'angstrom',
    'Z', 'z', '0', '9', '_x', 'x_', 'x']";

/// A database `name` created with `options`, weft in it, and a table of
/// 20,000 rows over [`WORDS`] (NULLs among them) in text, char(12) and
/// varchar, with timestamps across daylight-saving changes, dates and
/// numerics beside them; the session spreads queries over two workers.
fn database(cluster: &Cluster, name: &str, options: &str) -> Client {
    let mut client = cluster.database(name, options);
    client
        .batch_execute(&format!(
            "CREATE EXTENSION weft;
             CREATE TABLE words (i int, w text, c char(12), v varchar(20), ts timestamptz, d date,
                                 n numeric(10,2));
             INSERT INTO words
                  SELECT g, word, word, word,
                         CASE WHEN g % 19 <> 0 THEN timestamptz '2020-03-08 01:30:00+00' + g * interval '97 minutes' END,
                         date '2019-12-25' + g % 900, CASE WHEN g % 23 <> 0 THEN (g % 1000) * 0.25 END
                    FROM generate_series(1, 20000) g,
                         LATERAL (SELECT CASE WHEN g % 17 = 0 THEN NULL
                                              ELSE ({WORDS})[1 + g % 40]
                                                   || CASE WHEN g % 3 = 0 THEN '' ELSE ' ' || (g % 97) END
                                         END AS word) w;
             ANALYZE words;
             SET max_parallel_workers_per_gather = 2"
        ))
        .unwrap();
    client
}

/// Queries whose answers depend on the collation's order, all taken over.
const ORDERED: &[(bool, &str)] = &[
    (true, "SELECT w, count(*) FROM words GROUP BY w ORDER BY w"),
    (true, "SELECT w, i FROM words ORDER BY w DESC NULLS LAST, i LIMIT 40"),
    (
        true,
        "SELECT w, i FROM words ORDER BY w NULLS FIRST, i DESC LIMIT 40 OFFSET 15",
    ),
    (true, "SELECT i % 7 AS k, w FROM words WHERE i < 400 ORDER BY k, w, i"),
    (true, "SELECT c, v, i FROM words ORDER BY c DESC, v, i LIMIT 60"),
    (true, "SELECT DISTINCT v FROM words ORDER BY v"),
    (true, "SELECT min(w), max(w), min(v), max(v), count(*) FROM words"),
    (
        true,
        "SELECT i % 11 AS k, min(w), max(w) FROM words GROUP BY 1 ORDER BY 1",
    ),
    (true, "SELECT max(w) FROM words WHERE w IS NULL"),
    (true, "SELECT count(*) FROM words WHERE w < 'b'"),
    (
        true,
        "SELECT count(*) FROM words WHERE w >= 'Äpfel' AND w <= 'eclair 5'",
    ),
    (true, "SELECT count(*) FROM words WHERE w BETWEEN 'a' AND 'F'"),
    (true, "SELECT count(*) FROM words WHERE c > 'e' AND v < 'strasse'"),
    (true, "SELECT count(*) FROM words WHERE 'co op' < w"),
    (
        true,
        "SELECT w, i FROM words WHERE w > 'co' ORDER BY w COLLATE \"C\", i LIMIT 30",
    ),
    (
        true,
        "SELECT w, i FROM words ORDER BY w COLLATE \"en-x-icu\", i LIMIT 30",
    ),
    (
        true,
        "SELECT min(w COLLATE \"en-x-icu\"), max(w COLLATE \"C\") FROM words",
    ),
    (true, "SELECT count(*) FROM words WHERE w COLLATE \"en-x-icu\" < 'b'"),
    (
        true,
        "SELECT a.w, count(*) FROM words a JOIN words b ON a.i = b.i + 1
          WHERE a.w > b.w GROUP BY a.w ORDER BY a.w LIMIT 25",
    ),
];

/// Everyday functions and expressions, answered as Postgres answers them
/// (native where DataFusion computes them exactly, else by Postgres
/// through the bridge), errors included.
const FUNCTIONS: &[(bool, &str)] = &[
    (
        true,
        "SELECT upper(w), lower(w), length(w), substr(w, 2, 3), position('e' IN w), i
           FROM words WHERE i % 97 = 1 ORDER BY i",
    ),
    (
        true,
        "SELECT replace(w, 'a', 'A'), split_part(w, ' ', 1), concat(w, '-', i), w || '!', i
           FROM words WHERE i % 89 = 2 ORDER BY i",
    ),
    (true, "SELECT count(*) FROM words WHERE w ILIKE 'A%' OR w ~ '^[a-z]+ [0-9]$'"),
    (
        true,
        "SELECT regexp_replace(w, '[0-9]+', '#'), count(*) FROM words GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 12",
    ),
    (true, "SELECT date_trunc('month', ts) AS m, count(*) FROM words GROUP BY 1 ORDER BY 1"),
    (
        true,
        "SELECT to_char(ts, 'YYYY-MM-DD HH24:MI TZ'), ts + interval '1 day', ts AT TIME ZONE 'UTC', d - 7, i
           FROM words WHERE i % 101 = 3 ORDER BY i",
    ),
    (true, "SELECT date_part('hour', ts)::int AS h, count(*) FROM words GROUP BY 1 ORDER BY 1"),
    // extract returns a numeric without a declared scale, whose equal
    // values may differ in display scale: not a group key; cast, or
    // summed, it is taken.
    (false, "SELECT extract(hour FROM ts) AS h, count(*) FROM words GROUP BY 1 ORDER BY 1"),
    (
        true,
        "SELECT extract(hour FROM ts)::int AS h, count(*), sum(extract(epoch FROM ts) / 3600) FROM words GROUP BY 1 ORDER BY 1",
    ),
    // Windows on the statement's time: folded once, as Postgres's
    // stable functions are the same for every row.
    (
        true,
        "SELECT count(*), min(ts), max(d) FROM words
          WHERE ts < date_trunc('year', now()) - interval '3 years' AND d < date_trunc('year', CURRENT_DATE)::date - 1000",
    ),
    (
        true,
        "SELECT count(*) FROM words WHERE ts >= current_setting('weft_test.since')::timestamptz",
    ),
    (true, "SELECT i % 7 AS k, -i % 7, count(*), sum(i % 13) FROM words GROUP BY 1, 2 ORDER BY 1, 2"),
    (true, "SELECT sum(i % (i - i)) FROM words"),
    (
        true,
        "SELECT NULLIF(i % 5, 0) AS k, count(*), count(NULLIF(w, 'apple')) FROM words GROUP BY 1 ORDER BY 1",
    ),
    (
        true,
        "SELECT CASE i % 3 WHEN 0 THEN 'zero' WHEN 1 THEN 'one' ELSE 'other' END AS k, count(*)
           FROM words GROUP BY 1 ORDER BY 1",
    ),
    (
        true,
        "SELECT sum(CASE i % 4 WHEN 0 THEN n WHEN 1 THEN 1 ELSE 0 END), count(CASE w WHEN 'x' THEN 1 END) FROM words",
    ),
    (
        true,
        "SELECT GREATEST(i, 15000), LEAST(d, date '2021-01-01', NULL), GREATEST(n, 100.00), i
           FROM words WHERE i % 211 = 5 ORDER BY i",
    ),
    (
        true,
        "SELECT count(*) FROM words WHERE w IS DISTINCT FROM v OR ts IS NOT DISTINCT FROM NULL",
    ),
    // Text GREATEST and LEAST: byte order under C, Postgres's comparison
    // under the others.
    (
        true,
        "SELECT GREATEST(w, 'm'), LEAST(w, v, 'b'), i FROM words WHERE i % 97 = 1 ORDER BY i",
    ),
    // A char(n) value's padding is lost in weft's form of it; which
    // argument's padding GREATEST returns is only Postgres's to know.
    (false, "SELECT GREATEST(c, 'E'), i FROM words WHERE i % 97 = 1 ORDER BY i"),
    (false, "SELECT min(c), max(c) FROM words"),
    (true, "SELECT count(*) FROM words WHERE n IS DISTINCT FROM 12.50"),
];

/// Runs the corpus in `client`'s database under two time zones.
fn corpus(client: &mut Client) {
    check_both_ways(client, ORDERED);
    for zone in ["UTC", "America/New_York"] {
        client
            .batch_execute(&format!(
                "SET TimeZone = '{zone}'; SET weft_test.since = '2021-06-01 00:00'"
            ))
            .unwrap();
        check_both_ways(client, FUNCTIONS);
    }
}

#[test]
fn the_corpus_in_a_libc_en_us_database() {
    let cluster = Cluster::start();
    corpus(&mut database(&cluster, "libc", "LOCALE 'en_US.UTF-8'"));
}

#[test]
fn the_corpus_in_an_icu_database() {
    let cluster = Cluster::start();
    corpus(&mut database(
        &cluster,
        "icu",
        "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'",
    ));
}

#[test]
fn the_corpus_in_a_c_database() {
    let cluster = Cluster::start();
    corpus(&mut database(&cluster, "postgres", ""));
}

/// A nondeterministic collation makes different strings equal, which
/// DataFusion's grouping and joins would not know: such queries stay with
/// Postgres.
#[test]
fn a_nondeterministic_collation_stays_with_postgres() {
    let cluster = Cluster::start();
    let mut client = database(&cluster, "libc", "LOCALE 'en_US.UTF-8'");
    client
        .batch_execute("CREATE COLLATION caseless (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
        .unwrap();
    check_both_ways(
        &mut client,
        &[
            (false, "SELECT w, i FROM words ORDER BY w COLLATE caseless, i LIMIT 30"),
            (false, "SELECT min(w COLLATE caseless) FROM words"),
            (false, "SELECT count(*) FROM words WHERE w COLLATE caseless < 'b'"),
            (false, "SELECT count(*) FROM words WHERE w = 'apple' COLLATE caseless"),
        ],
    );
}

/// weft sorts text under a collation other than C on one participant: a
/// sort Postgres estimates at many rows (which Postgres sorts in
/// parallel, or with a bounded heap for a LIMIT) is left to Postgres
/// unless `weft.force` says otherwise; a small one is weft's.
#[test]
fn a_large_collated_sort_stays_with_postgres_by_default() {
    let cluster = Cluster::start();
    let mut client = database(&cluster, "libc", "LOCALE 'en_US.UTF-8'");
    client
        .batch_execute(
            "CREATE TABLE many AS SELECT g AS i, md5(g::text) AS s FROM generate_series(1, 200000) g;
             ANALYZE many;
             SET weft.min_cost = 0; SET weft.scan_cost_ratio = 0; SET weft.explain_fallback = on",
        )
        .unwrap();
    let explain = |client: &mut Client, sql: &str| -> String {
        weft_pg_harness::text_rows(client, &format!("EXPLAIN {sql}"))
            .unwrap()
            .into_iter()
            .flatten()
            .flatten()
            .collect::<Vec<_>>()
            .join("\n")
    };
    let large = "SELECT s FROM many ORDER BY s LIMIT 10";
    let plan = explain(&mut client, large);
    assert!(plan.contains("which weft sorts on one participant"), "{plan}");
    let inner = "SELECT count(*), min(s) FROM (SELECT s FROM many ORDER BY s DESC LIMIT 10) top";
    let plan = explain(&mut client, inner);
    assert!(plan.contains("which weft sorts on one participant"), "{plan}");
    let small = "SELECT s, count(*) FROM many WHERE i < 100 GROUP BY s ORDER BY s";
    let plan = explain(&mut client, small);
    assert!(plan.contains("Custom Scan (Weft)"), "{plan}");
    check_both_ways(&mut client, &[(true, large), (true, inner), (true, small)]);
}
