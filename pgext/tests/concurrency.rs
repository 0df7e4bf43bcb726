//! Concurrency: writers move money between accounts while readers compare
//! weft's answers with stock Postgres's inside one REPEATABLE READ snapshot,
//! and check the books' invariants in READ COMMITTED with weft forced.
//!
//! The writers commit and abort transfers (READ COMMITTED and REPEATABLE
//! READ), roll back subtransactions (SAVEPOINT / ROLLBACK TO, and
//! transactions of more subtransactions than a snapshot lists), open and
//! close accounts (inserts and deletes), make HOT updates (balances, dates,
//! branches while no index covers them) and non-HOT ones (an indexed
//! column, long TOASTed notes), and insert ledger entries under random keys
//! that split the btree's pages; beside them VACUUM (also FREEZE) and
//! ANALYZE run, and an index on the branch column is created (plainly and
//! CONCURRENTLY, over the HOT chains the branch moves broke) and dropped
//! again. Every transfer writes its ledger entries, so in every snapshot:
//! the balances add up to the money the bank started with, the ledger to
//! zero, and each account's balance is its opening balance plus its entries.
//!
//! `WEFT_CONCURRENCY_SECONDS` sets how long the writers run (default 20;
//! `make bench-concurrency` runs minutes), `WEFT_CONCURRENCY_SEED` the seed
//! of every thread's random choices (the interleaving is the scheduler's).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use weft_pg_harness::differential::{check_both_ways, mismatch, taken};
use weft_pg_harness::postgres::{self, Client, SimpleQueryMessage};
use weft_pg_harness::{text_rows, Cluster, Rows};

/// Accounts at the start, each opened with `OPENING_CENTS`.
const ACCOUNTS: i64 = 20_000;
const OPENING_CENTS: i64 = 100_000;
/// The money in the bank, in cents: constant in every snapshot.
const TOTAL_CENTS: i64 = ACCOUNTS * OPENING_CENTS;
const BRANCHES: i64 = 40;
const WRITERS: u64 = 3;
const READERS: u64 = 2;
/// Values of the indexed column `k` are below this.
const K_RANGE: i64 = 100_003;

const SETUP: &str = "
CREATE EXTENSION weft;
CREATE TABLE branches (id int PRIMARY KEY, name text NOT NULL, city text NOT NULL);
INSERT INTO branches SELECT g, 'branch ' || g, (ARRAY['Oslo', 'Lima', 'Pune', 'Kyiv', 'Graz'])[1 + g % 5]
  FROM generate_series(1, 40) g;
CREATE SEQUENCE account_ids START 20001;
CREATE TABLE accounts (
  id int PRIMARY KEY, branch int NOT NULL, k int NOT NULL, balance numeric(14,2) NOT NULL,
  opening numeric(14,2) NOT NULL, owner text NOT NULL, opened date NOT NULL, note text
) WITH (fillfactor = 70);
INSERT INTO accounts SELECT g, 1 + g % 40, (g * 7919) % 100003, 1000.00, 1000.00, 'owner ' || g % 997,
    date '2020-01-01' + g % 1500,
    CASE WHEN g % 100 = 0 THEN (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 80) i)
         WHEN g % 10 = 0 THEN 'short note ' || g END
  FROM generate_series(1, 20000) g;
CREATE INDEX accounts_k ON accounts (k);
CREATE TABLE ledger (id bigint PRIMARY KEY, account int NOT NULL, amount numeric(14,2) NOT NULL,
  day date NOT NULL, memo text NOT NULL);
CREATE INDEX ledger_account ON ledger (account);
-- Account ids the readers look up: old ones (some will be closed) and ones
-- not opened yet.
CREATE TABLE watch (acct int NOT NULL);
INSERT INTO watch SELECT DISTINCT (g * 3331) % 26000 + 1 FROM generate_series(1, 64) g;
CREATE TABLE watch_k (k int NOT NULL);
INSERT INTO watch_k SELECT (g * 97 * 7919) % 100003 FROM generate_series(1, 40) g;
INSERT INTO watch_k SELECT g * 2477 FROM generate_series(1, 8) g;
CREATE TABLE hot (branch int NOT NULL);
INSERT INTO hot VALUES (3), (17), (29);
-- Some ledger entries' random keys, looked up in ledger's primary key.
CREATE TABLE marks (id bigint NOT NULL);
ANALYZE;
";

/// A query the readers compare, and the index weft should look its keys
/// up in (when the plan joins by lookups).
struct Query {
    name: &'static str,
    sql: &'static str,
    lookup: Option<&'static str>,
}

const QUERIES: &[Query] = &[
    Query {
        name: "totals",
        sql: "SELECT count(*), sum(balance), min(balance), max(balance), sum(opening) FROM accounts",
        lookup: None,
    },
    Query {
        name: "by branch",
        sql: "SELECT branch, count(*), sum(balance), max(opened) FROM accounts GROUP BY branch ORDER BY branch",
        lookup: None,
    },
    Query {
        name: "by city",
        sql: "SELECT b.city, count(*), sum(a.balance), min(a.id) FROM accounts a JOIN branches b ON b.id = a.branch \
              GROUP BY b.city ORDER BY 1",
        lookup: None,
    },
    Query {
        name: "watched accounts",
        sql: "SELECT w.acct, a.branch, a.k, a.balance, a.owner, a.opened FROM watch w JOIN accounts a ON a.id = w.acct \
              ORDER BY 1",
        lookup: Some("accounts_pkey"),
    },
    Query {
        name: "watched and closed",
        sql: "SELECT w.acct FROM watch w WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = w.acct) ORDER BY 1",
        lookup: Some("accounts_pkey"),
    },
    Query {
        name: "by k",
        sql: "SELECT w.k, a.id, a.balance, length(a.note) FROM watch_k w JOIN accounts a ON a.k = w.k ORDER BY 1, 2",
        lookup: Some("accounts_k"),
    },
    Query {
        name: "hot branches",
        sql: "SELECT h.branch, count(*), sum(a.balance), max(a.id) FROM hot h JOIN accounts a ON a.branch = h.branch \
              GROUP BY 1 ORDER BY 1",
        lookup: Some("accounts_branch"),
    },
    Query {
        name: "watched ledger",
        sql: "SELECT w.acct, count(*), sum(l.amount), max(l.day) FROM watch w JOIN ledger l ON l.account = w.acct \
              GROUP BY 1 ORDER BY 1",
        lookup: Some("ledger_account"),
    },
    Query {
        name: "marked entries",
        sql: "SELECT count(*), sum(l.amount), min(l.day), max(l.account) FROM marks m JOIN ledger l ON l.id = m.id",
        lookup: Some("ledger_pkey"),
    },
    Query {
        name: "ledger by day",
        sql: "SELECT day, count(*), sum(amount) FROM ledger GROUP BY day ORDER BY day",
        lookup: None,
    },
    Query {
        name: "books",
        sql: "SELECT count(*) FROM accounts a LEFT JOIN (SELECT account, sum(amount) AS s FROM ledger GROUP BY account) l \
              ON l.account = a.id WHERE a.balance <> a.opening + coalesce(l.s, 0)",
        lookup: None,
    },
    Query {
        name: "owners",
        sql: "SELECT owner, count(*), sum(balance) FROM accounts WHERE owner LIKE 'owner 1%' GROUP BY owner ORDER BY owner",
        lookup: None,
    },
    Query {
        name: "notes",
        sql: "SELECT count(note), sum(CASE WHEN note LIKE '%ff%' THEN 1 ELSE 0 END), \
              sum(CASE WHEN note LIKE 'memo%' THEN 1 ELSE 0 END) FROM accounts",
        lookup: None,
    },
    Query {
        name: "long notes",
        sql: "SELECT id, length(note), substr(note, 1, 20) FROM accounts WHERE note LIKE '%abc%' ORDER BY id",
        lookup: None,
    },
    Query {
        name: "richest",
        sql: "SELECT id, balance, branch FROM accounts WHERE balance > 1010 ORDER BY balance DESC, id LIMIT 25",
        lookup: None,
    },
    Query {
        name: "distinct",
        sql: "SELECT count(DISTINCT branch), count(DISTINCT owner), count(DISTINCT k) FROM accounts",
        lookup: None,
    },
];

/// The READ COMMITTED checks: each statement is one snapshot.
const BALANCES: &str = "SELECT sum(balance), count(*) FROM accounts";
/// `sum(amount)`, not `coalesce(sum(amount), 0)`: weft leaves a COALESCE of
/// numerics of different scales to Postgres.
const LEDGER_SUM: &str = "SELECT sum(amount), count(*) FROM ledger";
const BOOKS: &str = "SELECT count(*) FROM accounts a LEFT JOIN (SELECT account, sum(amount) AS s FROM ledger \
                     GROUP BY account) l ON l.account = a.id WHERE a.balance <> a.opening + coalesce(l.s, 0)";

/// SQLSTATEs after which a writer's transaction is simply tried again:
/// serialization failure, deadlock, a random key drawn twice.
const RETRY: &[&str] = &["40001", "40P01", "23505"];

/// xorshift64*: a small deterministic generator, one per thread.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut rng = Rng((seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
        for _ in 0..4 {
            rng.next();
        }
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// A ledger key anywhere in bigint's range: every insert lands on a
    /// random leaf.
    fn key(&mut self) -> i64 {
        self.next() as i64
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// `cents` as a numeric literal (`-12.05`).
fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

/// A numeric's text (`20000000.00`, `0`, `-3.5`) in cents.
fn cents(text: &str) -> Option<i64> {
    let (negative, digits) = text.strip_prefix('-').map_or((false, text), |rest| (true, rest));
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if fraction.len() > 2 || whole.is_empty() {
        return None;
    }
    let value = whole.parse::<i64>().ok()? * 100 + format!("{fraction:0<2}").parse::<i64>().ok()?;
    Some(if negative { -value } else { value })
}

fn sqlstate(error: &postgres::Error) -> Option<&str> {
    error.as_db_error().map(|db| db.code().code())
}

fn describe(error: &postgres::Error) -> String {
    error.as_db_error().map_or(error.to_string(), |db| {
        format!("{}: {}", db.code().code(), db.message())
    })
}

/// The single value in `sql`'s only row, column `column`.
fn cell(rows: &Rows, column: usize) -> Option<&str> {
    rows.first()?.get(column)?.as_deref()
}

/// How a writer's transaction ended.
enum End {
    Commit,
    /// Rolled back on purpose (an aborted transaction).
    Abort,
    /// Rolled back because an account it touched was closed meanwhile.
    Vanished,
}

/// Counts kept by one thread, merged at the end.
#[derive(Default)]
struct Tally {
    counts: BTreeMap<String, u64>,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, what: impl Into<String>) {
        *self.counts.entry(what.into()).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        for (what, n) in other.counts {
            *self.counts.entry(what).or_default() += n;
        }
        self.failures.extend(other.failures);
    }

    fn get(&self, what: &str) -> u64 {
        self.counts.get(what).copied().unwrap_or_default()
    }
}

/// Shared between the threads.
struct Run {
    seed: u64,
    started: Instant,
    duration: Duration,
    /// The writers and the maintenance thread stop at `duration`; the
    /// readers when this is set, after them.
    writers_done: AtomicBool,
    /// The highest account id opened so far.
    max_account: AtomicI64,
    /// What the maintenance thread did to the branch index, and when.
    events: Mutex<Vec<String>>,
}

impl Run {
    fn writing(&self) -> bool {
        self.started.elapsed() < self.duration
    }

    fn account(&self, rng: &mut Rng) -> i64 {
        rng.range(1, self.max_account.load(Ordering::Relaxed))
    }

    fn event(&self, what: String) {
        let at = self.started.elapsed().as_secs_f64();
        self.events.lock().unwrap().push(format!("{at:7.2}s {what}"));
    }
}

/// Rows `sql` affected.
fn affected(client: &mut Client, sql: &str) -> Result<u64, postgres::Error> {
    client.execute(sql, &[])
}

/// The text rows of `sql`, keeping the driver's error for the SQLSTATE.
fn rows(client: &mut Client, sql: &str) -> Result<Rows, postgres::Error> {
    Ok(client
        .simple_query(sql)?
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect())
}

/// Moves `amount` cents from `from` to `to` inside the open transaction and
/// writes both ledger entries; false when either account is gone (the
/// caller must roll back: one update may have run).
fn transfer(client: &mut Client, rng: &mut Rng, from: i64, to: i64, amount: i64) -> Result<bool, postgres::Error> {
    let value = money(amount);
    if affected(
        client,
        &format!("UPDATE accounts SET balance = balance - {value} WHERE id = {from}"),
    )? != 1
        || affected(
            client,
            &format!("UPDATE accounts SET balance = balance + {value} WHERE id = {to}"),
        )? != 1
    {
        return Ok(false);
    }
    let (out, into) = (rng.key(), rng.key());
    let day = rng.below(60);
    client.batch_execute(&format!(
        "INSERT INTO ledger VALUES ({out}, {from}, -{value}, date '2024-01-01' + {day}, 'to {to}'), \
         ({into}, {to}, {value}, date '2024-01-01' + {day}, 'from {from}')"
    ))?;
    if rng.chance(40) {
        client.batch_execute(&format!("INSERT INTO marks VALUES ({out})"))?;
    }
    Ok(true)
}

/// A random transfer between two accounts that existed at some point.
fn random_transfer(client: &mut Client, rng: &mut Rng, run: &Run) -> Result<bool, postgres::Error> {
    let from = run.account(rng);
    let mut to = run.account(rng);
    if to == from {
        to = if from > 1 { from - 1 } else { from + 1 };
    }
    let amount = rng.range(1, 5_000);
    transfer(client, rng, from, to, amount)
}

/// Text nobody compresses much, long enough to be stored out of line.
fn long_note(rng: &mut Rng) -> String {
    (0..160).map(|_| format!("{:016x}", rng.next())).collect()
}

/// One writer transaction, of a random kind unless `retry` names the kind
/// that just failed; returns its kind and how it ended.
fn writer_step(
    client: &mut Client,
    rng: &mut Rng,
    run: &Run,
    retry: Option<&'static str>,
) -> (&'static str, Result<End, postgres::Error>) {
    let kind = retry.unwrap_or_else(|| match rng.below(100) {
        0..=31 => "transfer",
        32..=39 => "transfer (repeatable read)",
        40..=48 => "savepoints",
        49..=50 => "70 subtransactions",
        51..=57 => "open account",
        58..=62 => "close account",
        63..=70 => "new k (non-HOT)",
        71..=78 => "move branch",
        79..=82 => "note",
        83..=86 => "random keys",
        _ => "touch dates (HOT)",
    });
    let result = (|| -> Result<End, postgres::Error> {
        let end_of = |ok: bool, rng: &mut Rng| {
            if !ok {
                End::Vanished
            } else if rng.chance(8) {
                End::Abort
            } else {
                End::Commit
            }
        };
        match kind {
            "transfer" => {
                client.batch_execute("BEGIN")?;
                let ok = random_transfer(client, rng, run)?;
                Ok(end_of(ok, rng))
            }
            "transfer (repeatable read)" => {
                client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")?;
                let ok = random_transfer(client, rng, run)? && random_transfer(client, rng, run)?;
                Ok(end_of(ok, rng))
            }
            "savepoints" => {
                client.batch_execute("BEGIN")?;
                let mut ok = random_transfer(client, rng, run)?;
                client.batch_execute("SAVEPOINT a")?;
                // Rolled back whatever it did.
                let _ = random_transfer(client, rng, run)?;
                if rng.chance(2) {
                    let id = run.max_account.load(Ordering::Relaxed) + 1_000_000;
                    client.batch_execute(&format!(
                        "INSERT INTO accounts VALUES ({id}, 1, 0, 5.00, 0, 'ghost', date '2024-01-01', NULL)"
                    ))?;
                }
                client.batch_execute("ROLLBACK TO SAVEPOINT a")?;
                ok &= random_transfer(client, rng, run)?;
                client.batch_execute("SAVEPOINT b")?;
                if random_transfer(client, rng, run)? {
                    client.batch_execute("RELEASE SAVEPOINT b")?;
                } else {
                    client.batch_execute("ROLLBACK TO SAVEPOINT b")?;
                }
                Ok(end_of(ok, rng))
            }
            "70 subtransactions" => {
                // More subtransactions than a snapshot lists (64): readers'
                // snapshots overflow and look in pg_subtrans.
                client.batch_execute("BEGIN")?;
                for i in 0..70 {
                    client.batch_execute(&format!("SAVEPOINT s{i}"))?;
                    let ok = random_transfer(client, rng, run)?;
                    if !ok || rng.chance(3) {
                        client.batch_execute(&format!("ROLLBACK TO SAVEPOINT s{i}"))?;
                    } else {
                        client.batch_execute(&format!("RELEASE SAVEPOINT s{i}"))?;
                    }
                }
                Ok(end_of(true, rng))
            }
            "open account" => {
                client.batch_execute("BEGIN")?;
                let id: i64 = rows(client, "SELECT nextval('account_ids')")?[0][0]
                    .as_deref()
                    .and_then(|v| v.parse().ok())
                    .expect("nextval returns a number");
                let branch = rng.range(1, BRANCHES);
                let k = rng.range(0, K_RANGE - 1);
                let day = rng.below(1500);
                client.batch_execute(&format!(
                    "INSERT INTO accounts VALUES ({id}, {branch}, {k}, 0, 0, 'owner {}', \
                     date '2020-01-01' + {day}, NULL)",
                    rng.below(997)
                ))?;
                run.max_account.fetch_max(id, Ordering::Relaxed);
                let (from, amount) = (run.account(rng), rng.range(100, 50_000));
                let ok = from != id && transfer(client, rng, from, id, amount)?;
                Ok(end_of(ok, rng))
            }
            "close account" => {
                client.batch_execute("BEGIN")?;
                let gone = run.account(rng);
                let heir = run.account(rng);
                let deleted = rows(
                    client,
                    &format!("DELETE FROM accounts WHERE id = {gone} RETURNING balance"),
                )?;
                let Some(balance) = deleted.first().and_then(|row| row[0].clone()) else {
                    return Ok(End::Vanished);
                };
                if heir == gone
                    || affected(
                        client,
                        &format!("UPDATE accounts SET balance = balance + ({balance}) WHERE id = {heir}"),
                    )? != 1
                {
                    return Ok(End::Vanished);
                }
                let day = rng.below(60);
                client.batch_execute(&format!(
                    // Parenthesized: the balance may be negative, and `--` starts a comment.
                    "INSERT INTO ledger VALUES ({}, {gone}, -({balance}), date '2024-01-01' + {day}, 'closed'), \
                     ({}, {heir}, ({balance}), date '2024-01-01' + {day}, 'inherited from {gone}')",
                    rng.key(),
                    rng.key()
                ))?;
                Ok(end_of(true, rng))
            }
            "new k (non-HOT)" => {
                client.batch_execute("BEGIN")?;
                for _ in 0..4 {
                    let (id, k) = (run.account(rng), rng.range(0, K_RANGE - 1));
                    client.batch_execute(&format!("UPDATE accounts SET k = {k} WHERE id = {id}"))?;
                }
                Ok(end_of(true, rng))
            }
            "move branch" => {
                client.batch_execute("BEGIN")?;
                for _ in 0..4 {
                    let (id, branch) = (run.account(rng), rng.range(1, BRANCHES));
                    client.batch_execute(&format!("UPDATE accounts SET branch = {branch} WHERE id = {id}"))?;
                }
                Ok(end_of(true, rng))
            }
            "note" => {
                client.batch_execute("BEGIN")?;
                let id = run.account(rng);
                let note = match rng.below(3) {
                    0 => "NULL".to_string(),
                    1 => format!("'memo {}'", rng.below(1000)),
                    _ => format!("'{}'", long_note(rng)),
                };
                client.batch_execute(&format!("UPDATE accounts SET note = {note} WHERE id = {id}"))?;
                Ok(end_of(true, rng))
            }
            "random keys" => {
                // Pairs of entries that cancel out, on one account each.
                client.batch_execute("BEGIN")?;
                let values: Vec<String> = (0..60)
                    .flat_map(|_| {
                        let (account, amount, day) = (run.account(rng), rng.range(1, 9_999), rng.below(60));
                        [amount, -amount].map(|a| {
                            format!(
                                "({}, {account}, {}, date '2024-01-01' + {day}, 'wash')",
                                rng.key(),
                                money(a)
                            )
                        })
                    })
                    .collect();
                client.batch_execute(&format!("INSERT INTO ledger VALUES {}", values.join(", ")))?;
                Ok(end_of(true, rng))
            }
            _ => {
                client.batch_execute("BEGIN")?;
                let id = run.account(rng);
                client.batch_execute(&format!(
                    "UPDATE accounts SET opened = opened + 1 WHERE id BETWEEN {id} AND {id} + 30"
                ))?;
                Ok(end_of(true, rng))
            }
        }
    })();
    let result = result.and_then(|end| {
        client.batch_execute(match end {
            End::Commit => "COMMIT",
            End::Abort | End::Vanished => "ROLLBACK",
        })?;
        Ok(end)
    });
    (kind, result)
}

fn writer(cluster: &Cluster, run: &Run, index: u64) -> Tally {
    let mut client = cluster.connect();
    client.batch_execute("SET statement_timeout = '120s'").unwrap();
    let mut rng = Rng::new(run.seed, 100 + index);
    let mut tally = Tally::default();
    let mut retry = None;
    while run.writing() {
        let (kind, result) = writer_step(&mut client, &mut rng, run, retry.take());
        match result {
            Ok(End::Commit) => tally.add(format!("writes: {kind}: committed")),
            Ok(End::Abort) => tally.add(format!("writes: {kind}: aborted")),
            Ok(End::Vanished) => tally.add(format!("writes: {kind}: account gone, rolled back")),
            Err(error) => {
                // Leave the failed transaction (a no-op outside one).
                let _ = client.batch_execute("ROLLBACK");
                match sqlstate(&error) {
                    Some(code) if RETRY.contains(&code) => {
                        tally.add(format!("writes: retried after {code}"));
                        retry = Some(kind);
                    }
                    _ => tally
                        .failures
                        .push(format!("writer {index}, {kind}: unexpected error {}", describe(&error))),
                }
            }
        }
    }
    // Publish this session's table statistics now, not whenever it exits.
    client.batch_execute("SELECT pg_stat_force_next_flush()").unwrap();
    tally
}

/// VACUUM and ANALYZE now and then, and the branch index created and
/// dropped on a schedule: it exists from 1/4 to 2/4 of the run and from
/// 3/4 on (and so on for long runs), each time built over the HOT chains
/// that branch moves broke while it was away.
fn maintenance(cluster: &Cluster, run: &Run) -> Tally {
    let mut client = cluster.connect();
    let mut rng = Rng::new(run.seed, 7);
    let mut tally = Tally::default();
    let period = (run.duration / 4).clamp(Duration::from_secs(4), Duration::from_secs(40));
    let mut next_change = period;
    let mut index_exists = false;
    let mut creations = 0;
    let mut next_vacuum = Duration::from_millis(500);
    while run.writing() {
        let now = run.started.elapsed();
        if now >= next_change {
            next_change += period;
            let sql = if index_exists {
                "DROP INDEX accounts_branch".to_string()
            } else {
                creations += 1;
                let concurrently = if creations % 2 == 0 { "CONCURRENTLY " } else { "" };
                format!("CREATE INDEX {concurrently}accounts_branch ON accounts (branch)")
            };
            match client.batch_execute(&sql) {
                Ok(()) => {
                    index_exists = !index_exists;
                    let mut what = sql.clone();
                    if index_exists {
                        let check = text_rows(
                            &mut client,
                            "SELECT indcheckxmin FROM pg_index WHERE indexrelid = 'accounts_branch'::regclass",
                        )
                        .unwrap();
                        if cell(&check, 0) == Some("t") {
                            tally.add("maintenance: index over broken HOT chains (indcheckxmin)");
                            what.push_str(" (indcheckxmin)");
                        }
                        tally.add("maintenance: CREATE INDEX");
                    }
                    run.event(what);
                }
                Err(error) => {
                    // A failed CONCURRENTLY build leaves an invalid index.
                    let _ = client.batch_execute("DROP INDEX IF EXISTS accounts_branch");
                    index_exists = false;
                    if !sqlstate(&error).is_some_and(|code| RETRY.contains(&code)) {
                        tally.failures.push(format!("{sql}: {}", describe(&error)));
                    }
                    run.event(format!("{sql} failed: {}", describe(&error)));
                }
            }
        } else if now >= next_vacuum {
            next_vacuum = now + Duration::from_millis(rng.range(700, 2_000) as u64);
            let sql = match rng.below(6) {
                0 | 1 => "VACUUM accounts",
                2 => "VACUUM ledger",
                3 => "VACUUM (FREEZE) accounts",
                4 => "VACUUM ANALYZE",
                _ => "ANALYZE accounts",
            };
            match client.batch_execute(sql) {
                Ok(()) => tally.add(format!("maintenance: {sql}")),
                Err(error) => tally.failures.push(format!("{sql}: {}", describe(&error))),
            }
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    tally
}

/// Runs `sql` with weft forced and with weft off (the order chosen by the
/// caller) in the open REPEATABLE READ transaction. Unlike
/// `differential::both_ways` it survives an error: the first error aborts
/// the transaction, so the other side is not run.
fn both_in_snapshot(client: &mut Client, sql: &str, weft_first: bool) -> Result<(Rows, Rows), String> {
    let mut run_side = |weft: bool| -> Result<Rows, String> {
        let setting = if weft {
            "SET LOCAL weft.enable = on; SET LOCAL weft.force = on"
        } else {
            "SET LOCAL weft.enable = off"
        };
        client.batch_execute(setting).map_err(|e| describe(&e))?;
        text_rows(client, sql).map_err(|e| format!("{} failed: {e}", if weft { "weft" } else { "stock" }))
    };
    if weft_first {
        let weft = run_side(true)?;
        Ok((weft, run_side(false)?))
    } else {
        let stock = run_side(false)?;
        Ok((run_side(true)?, stock))
    }
}

/// What one query's comparisons came to.
#[derive(Default, Clone, Copy)]
struct QueryTally {
    compared: u64,
    taken: u64,
    looked_up: u64,
}

fn reader(cluster: &Cluster, run: &Run, index: u64, per_query: &Mutex<Vec<QueryTally>>) -> Tally {
    let mut client = cluster.connect();
    client.batch_execute("SET statement_timeout = '120s'").unwrap();
    let mut rng = Rng::new(run.seed, 200 + index);
    let mut tally = Tally::default();
    let mut transactions = 0u64;
    while !run.writers_done.load(Ordering::Relaxed) {
        transactions += 1;
        let workers = rng.below(3);
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL weft.workers = {workers}"
            ))
            .unwrap();
        let statements = 1 + rng.below(4);
        let mut aborted = false;
        for position in 0..statements {
            let (number, query) = {
                let i = rng.below(QUERIES.len() as u64) as usize;
                (i, &QUERIES[i])
            };
            let context = || {
                format!(
                    "reader {index}, transaction {transactions}, statement {position}, {workers} workers, at {:.2}s, \
                     {} ({})",
                    run.started.elapsed().as_secs_f64(),
                    query.name,
                    query.sql
                )
            };
            let plan = client
                .batch_execute("SET LOCAL weft.enable = on; SET LOCAL weft.force = on")
                .map_err(|e| describe(&e))
                .and_then(|()| text_rows(&mut client, &format!("EXPLAIN {}", query.sql)));
            let plan = match plan {
                Ok(plan) => plan.into_iter().flatten().flatten().collect::<Vec<_>>().join("\n"),
                Err(e) => {
                    tally.failures.push(format!("{}: EXPLAIN failed: {e}", context()));
                    aborted = true;
                    break;
                }
            };
            let weft_took = plan.contains("Custom Scan (Weft)");
            let looked_up = query.lookup.is_some_and(|name| {
                plan.lines()
                    .any(|line| line.split("index_lookup=[").nth(1).is_some_and(|l| l.contains(name)))
            });
            match both_in_snapshot(&mut client, query.sql, rng.below(4) != 0) {
                Ok((weft, stock)) => {
                    if weft != stock {
                        tally.failures.push(format!(
                            "{}: weft's answer is not stock's in the same snapshot (plan taken: {weft_took})\n  \
                             weft:  {weft:?}\n  stock: {stock:?}\n  plan:\n{plan}",
                            context()
                        ));
                    }
                    if query.name == "totals" && cell(&stock, 1).and_then(cents) != Some(TOTAL_CENTS) {
                        tally.failures.push(format!(
                            "{}: stock's balances do not add up to {}: {stock:?} (the test's writers are wrong)",
                            context(),
                            money(TOTAL_CENTS)
                        ));
                    }
                    if query.name == "books" && cell(&stock, 0) != Some("0") {
                        tally
                            .failures
                            .push(format!("{}: stock's books do not balance: {stock:?}", context()));
                    }
                    let mut counts = per_query.lock().unwrap();
                    let counts = &mut counts[number];
                    counts.compared += 1;
                    counts.taken += u64::from(weft_took);
                    counts.looked_up += u64::from(looked_up);
                }
                Err(e) => {
                    tally.failures.push(format!("{}: {e}\n  plan:\n{plan}", context()));
                    aborted = true;
                    break;
                }
            }
            if rng.chance(4) {
                // Keep the snapshot a while: index builds, vacuums and
                // splits happen under it.
                std::thread::sleep(Duration::from_millis(rng.range(10, 250) as u64));
            }
        }
        client
            .batch_execute(if aborted { "ROLLBACK" } else { "COMMIT" })
            .unwrap();
    }
    tally
        .counts
        .insert("reads: repeatable read transactions".into(), transactions);
    tally
}

/// The invariants in READ COMMITTED, each statement its own snapshot, with
/// weft forced.
fn checker(cluster: &Cluster, run: &Run) -> Tally {
    let mut client = cluster.connect();
    client
        .batch_execute("SET statement_timeout = '120s'; SET weft.force = on")
        .unwrap();
    let mut rng = Rng::new(run.seed, 300);
    let mut tally = Tally::default();
    while !run.writers_done.load(Ordering::Relaxed) {
        client
            .batch_execute(&format!("SET weft.workers = {}", rng.below(3)))
            .unwrap();
        for (sql, check) in [(BALANCES, 0usize), (LEDGER_SUM, 1), (BOOKS, 2)] {
            let at = run.started.elapsed().as_secs_f64();
            if taken(&mut client, sql) {
                tally.add("checks: taken by weft");
            }
            let result = text_rows(&mut client, sql);
            tally.add("checks: read committed");
            let ok = match (&result, check) {
                (Ok(rows), 0) => cell(rows, 0).and_then(cents) == Some(TOTAL_CENTS),
                (Ok(rows), 1) => cell(rows, 0).map_or(Some(0), cents) == Some(0),
                (Ok(rows), _) => cell(rows, 0) == Some("0"),
                (Err(_), _) => false,
            };
            if !ok {
                tally.failures.push(format!(
                    "read committed check at {at:.2}s, weft forced: {sql}\n  got {result:?} (balances must add \
                     up to {}, the ledger to 0, and no account may disagree with its entries)",
                    money(TOTAL_CENTS)
                ));
            }
        }
    }
    tally
}

#[test]
fn weft_answers_as_postgres_while_writers_move_money() {
    let seconds: f64 = std::env::var("WEFT_CONCURRENCY_SECONDS")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("WEFT_CONCURRENCY_SECONDS is a number of seconds"))
        .unwrap_or(20.0);
    let seed: u64 = std::env::var("WEFT_CONCURRENCY_SEED")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("WEFT_CONCURRENCY_SEED is a number"))
        .unwrap_or(0x5EED_0029);
    let cluster = Cluster::start_with(&[
        ("deadlock_timeout", "100ms"),
        ("autovacuum_naptime", "1s"),
        ("autovacuum_vacuum_scale_factor", "0.05"),
        ("autovacuum_analyze_scale_factor", "0.05"),
    ]);
    let mut admin = cluster.connect();
    admin.batch_execute(SETUP).unwrap();

    // Before anything moves: every query is weft's and gives stock's rows.
    let cases: Vec<(bool, &str)> = QUERIES
        .iter()
        .map(|q| (true, q.sql))
        .chain([(true, BALANCES), (true, LEDGER_SUM), (true, BOOKS)])
        .collect();
    check_both_ways(&mut admin, &cases);
    let ledger_pages_before: i64 = admin
        .query_one("SELECT pg_relation_size('ledger_pkey') / 8192", &[])
        .unwrap()
        .get(0);

    let run = Run {
        seed,
        started: Instant::now(),
        duration: Duration::from_secs_f64(seconds),
        writers_done: AtomicBool::new(false),
        max_account: AtomicI64::new(ACCOUNTS),
        events: Mutex::new(Vec::new()),
    };
    let per_query = Mutex::new(vec![QueryTally::default(); QUERIES.len()]);
    let mut tally = Tally::default();
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|i| {
                scope.spawn({
                    let (cluster, run) = (&cluster, &run);
                    move || writer(cluster, run, i)
                })
            })
            .collect();
        let keeper = scope.spawn(|| maintenance(&cluster, &run));
        let readers: Vec<_> = (0..READERS)
            .map(|i| {
                scope.spawn({
                    let (cluster, run, per_query) = (&cluster, &run, &per_query);
                    move || reader(cluster, run, i, per_query)
                })
            })
            .collect();
        let checker = scope.spawn(|| checker(&cluster, &run));
        for handle in writers.into_iter().chain([keeper]) {
            tally.merge(handle.join().expect("a writer panicked"));
        }
        run.writers_done.store(true, Ordering::Relaxed);
        for handle in readers.into_iter().chain([checker]) {
            tally.merge(handle.join().expect("a reader panicked"));
        }
    });
    let elapsed = run.started.elapsed();

    // Quiet again: every query once more, weft's and stock's, after a vacuum.
    admin.batch_execute("VACUUM ANALYZE").unwrap();
    for query in QUERIES {
        admin.batch_execute("SET weft.force = on").unwrap();
        if !taken(&mut admin, query.sql) {
            tally.failures.push(format!(
                "after the run, weft does not take {}: {}",
                query.name, query.sql
            ));
        }
        tally.failures.extend(mismatch(
            &mut admin,
            query.sql,
            &format!("after the run, {}", query.name),
        ));
    }
    let stats = text_rows(
        &mut admin,
        "SELECT n_tup_upd, n_tup_hot_upd, n_tup_ins, n_tup_del FROM pg_stat_user_tables WHERE relname = 'accounts'",
    )
    .unwrap();
    let stat = |i: usize| cell(&stats, i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let (updates, hot_updates, inserts, deletes) = (stat(0), stat(1), stat(2), stat(3));
    let ledger_pages: i64 = admin
        .query_one("SELECT pg_relation_size('ledger_pkey') / 8192", &[])
        .unwrap()
        .get(0);

    let per_query = per_query.into_inner().unwrap();
    let compared: u64 = per_query.iter().map(|q| q.compared).sum();
    let taken_count: u64 = per_query.iter().map(|q| q.taken).sum();
    let mut report = format!(
        "seed {seed}, writers ran {seconds}s, the whole run {:.1}s; {compared} comparisons in one snapshot, \
         {taken_count} of them taken by weft\n",
        elapsed.as_secs_f64()
    );
    for (query, counts) in QUERIES.iter().zip(&per_query) {
        report.push_str(&format!(
            "  {:<20} compared {:>5}, taken {:>5}, index lookups {:>5}\n",
            query.name, counts.compared, counts.taken, counts.looked_up
        ));
    }
    for (what, n) in &tally.counts {
        report.push_str(&format!("  {what}: {n}\n"));
    }
    report.push_str(&format!(
        "  accounts: {updates} updates ({hot_updates} HOT), {inserts} inserts, {deletes} deletes; \
         ledger_pkey {ledger_pages_before} -> {ledger_pages} pages\n"
    ));
    for event in run.events.lock().unwrap().iter() {
        report.push_str(&format!("  {event}\n"));
    }
    println!("{report}");

    let failures = &tally.failures;
    assert!(
        failures.is_empty(),
        "{} failures (of which the first 40 follow)\n{}\n\n{report}",
        failures.len(),
        failures.iter().take(40).cloned().collect::<Vec<_>>().join("\n\n")
    );
    // The test tested something: the readers compared often, weft took the
    // queries over, looked keys up in indexes, and the writers did what the
    // test claims.
    let floor = (seconds * 3.0).max(40.0) as u64;
    assert!(
        compared >= floor,
        "only {compared} comparisons (at least {floor} expected)\n{report}"
    );
    assert!(
        taken_count * 10 >= compared * 9,
        "weft took only {taken_count} of {compared} compared queries\n{report}"
    );
    for (query, counts) in QUERIES.iter().zip(&per_query) {
        assert!(counts.compared > 0, "{} was never compared\n{report}", query.name);
        assert!(counts.taken > 0, "weft never took {} over\n{report}", query.name);
        if query.lookup.is_some() {
            assert!(
                counts.looked_up > 0,
                "{} never looked its keys up in {}\n{report}",
                query.name,
                query.lookup.unwrap_or_default()
            );
        }
    }
    assert!(tally.get("checks: read committed") >= 30, "{report}");
    assert!(
        tally.get("checks: taken by weft") * 10 >= tally.get("checks: read committed") * 9,
        "{report}"
    );
    for kind in [
        "transfer",
        "transfer (repeatable read)",
        "savepoints",
        "70 subtransactions",
        "open account",
        "close account",
        "new k (non-HOT)",
        "move branch",
        "random keys",
    ] {
        assert!(
            tally.get(&format!("writes: {kind}: committed")) > 0,
            "no {kind} committed\n{report}"
        );
    }
    assert!(tally.get("writes: transfer: aborted") > 0, "{report}");
    assert!(tally.get("maintenance: CREATE INDEX") > 0, "{report}");
    assert!(
        tally.counts.keys().any(|k| k.starts_with("maintenance: VACUUM")),
        "{report}"
    );
    assert!(
        hot_updates > 0 && updates > hot_updates && inserts > ACCOUNTS && deletes > 0,
        "the writers' updates were not both HOT and not\n{report}"
    );
    assert!(
        ledger_pages > ledger_pages_before + 10,
        "ledger's primary key did not grow (and split)\n{report}"
    );
}
