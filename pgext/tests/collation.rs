//! Text ordered as Postgres orders it under real collations: ORDER BY
//! (with LIMIT and later keys), min and max, and `<`/`>`/BETWEEN in a
//! database of the libc locale `en_US.UTF-8`, one whose default is ICU's
//! `en-US`, and one of C; each query with weft forced on against weft
//! off, in the same session. The words mix case, accents, ligatures,
//! punctuation, spaces, digits and empty strings, where these collations
//! and byte order all disagree.

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
/// varchar; the session spreads queries over two workers.
fn database(cluster: &Cluster, name: &str, options: &str) -> Client {
    if name != "postgres" {
        cluster
            .connect()
            .batch_execute(&format!(
                "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' {options}"
            ))
            .unwrap();
    }
    let mut client = cluster.connect_to(name, "postgres");
    client
        .batch_execute(&format!(
            "CREATE EXTENSION weft;
             CREATE TABLE words (i int, w text, c char(12), v varchar(20));
             INSERT INTO words
                  SELECT g, word, word, word
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

#[test]
fn text_under_libc_en_us_sorts_as_postgres() {
    let cluster = Cluster::start();
    let mut client = database(&cluster, "libc", "LOCALE 'en_US.UTF-8'");
    check_both_ways(&mut client, ORDERED);
}

#[test]
fn text_under_an_icu_default_sorts_as_postgres() {
    let cluster = Cluster::start();
    let mut client = database(&cluster, "icu", "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'");
    check_both_ways(&mut client, ORDERED);
}

#[test]
fn text_under_c_sorts_as_postgres() {
    let cluster = Cluster::start();
    let mut client = database(&cluster, "postgres", "");
    check_both_ways(&mut client, ORDERED);
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
