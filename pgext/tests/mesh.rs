//! The mesh in real Postgres: `weft.mesh_bench` across real parallel
//! workers moves exactly the bytes asked on every edge, checksummed; and
//! cancels, timeouts, terminated workers and worker errors end a run
//! cleanly, leaving the session usable and no worker behind.

use std::thread;
use std::time::{Duration, Instant};

use weft_pg_harness::postgres::Client;
use weft_pg_harness::Cluster;

/// One row of `weft.mesh_bench`.
#[derive(Debug)]
struct Edge {
    sender: i32,
    receiver: i32,
    frames: i64,
    bytes: i64,
    verified: bool,
}

fn bench(client: &mut Client, workers: i32, megabytes: i32, frame_kib: i32) -> Result<Vec<Edge>, String> {
    let rows = client
        .query(
            "SELECT sender, receiver, frames, bytes, verified FROM weft.mesh_bench($1, $2, $3)",
            &[&workers, &megabytes, &frame_kib],
        )
        .map_err(|e| e.as_db_error().map_or(e.to_string(), |db| db.message().to_owned()))?;
    Ok(rows
        .iter()
        .map(|row| Edge {
            sender: row.get(0),
            receiver: row.get(1),
            frames: row.get(2),
            bytes: row.get(3),
            verified: row.get(4),
        })
        .collect())
}

fn setup(cluster: &Cluster) -> Client {
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION weft").unwrap();
    client
}

/// Weft's parallel workers still alive.
fn weft_workers(client: &mut Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Waits (bounded) until no parallel worker is left.
fn assert_no_workers_left(client: &mut Client) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while weft_workers(client) > 0 {
        assert!(Instant::now() < deadline, "parallel workers left behind");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_edge_moves_exactly_the_bytes_asked() {
    let cluster = Cluster::start();
    let mut client = setup(&cluster);
    for workers in 0..=3 {
        let edges = bench(&mut client, workers, 8, 64).unwrap_or_else(|e| panic!("{workers} workers: {e}"));
        let participants = edges.iter().map(|e| e.sender).max().unwrap() + 1;
        assert_eq!(participants, workers + 1, "all {workers} workers should start");
        assert_eq!(edges.len() as i32, participants * participants);
        for edge in &edges {
            assert!(edge.verified, "{workers} workers: {edge:?}");
            assert_eq!(edge.bytes, 8 << 20, "{edge:?}");
            assert_eq!(edge.frames, 8 * 1024 / 64, "{edge:?}");
            assert!(edge.receiver < participants);
        }
    }
    // Messages that are not a multiple of 8 bytes and larger than a ring.
    let edges = bench(&mut client, 2, 3, 1500).unwrap();
    assert!(edges.iter().all(|e| e.verified && e.bytes == 3 << 20), "{edges:?}");
    assert_no_workers_left(&mut client);
}

#[test]
fn a_short_launch_runs_with_the_workers_that_started() {
    let cluster = Cluster::start_with(&[("max_parallel_workers", "1")]);
    let mut client = setup(&cluster);
    let edges = bench(&mut client, 3, 4, 64).unwrap();
    assert_eq!(edges.len(), 4, "the leader and the one worker allowed: {edges:?}");
    assert!(edges.iter().all(|e| e.verified), "{edges:?}");
    client.batch_execute("SET max_parallel_workers = 0").unwrap();
    let edges = bench(&mut client, 2, 4, 64).unwrap();
    assert_eq!(edges.len(), 1, "the leader alone: {edges:?}");
    assert!(edges[0].verified);
}

#[test]
fn bad_arguments_are_clear_errors() {
    let cluster = Cluster::start();
    let mut client = setup(&cluster);
    let error = bench(&mut client, -1, 1, 64).unwrap_err();
    assert!(error.contains("workers must be between 0 and"), "{error}");
    let error = bench(&mut client, 1, 0, 64).unwrap_err();
    assert!(error.contains("megabytes must be between 1 and"), "{error}");
    let error = bench(&mut client, 1, 1, 0).unwrap_err();
    assert!(error.contains("frame_kib must be between 1 and"), "{error}");
    assert!(bench(&mut client, 1, 1, 64).is_ok());
}

/// Runs a long benchmark in a thread; `interrupt` is called once it runs.
fn interrupted_run(cluster: &Cluster, setting: &str, interrupt: impl FnOnce(&mut Client, i32)) -> (String, Duration) {
    let mut client = setup(cluster);
    client.batch_execute(setting).unwrap();
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let runner = thread::spawn(move || {
        let started = Instant::now();
        let result = bench(&mut client, 2, 200_000, 64);
        let elapsed = started.elapsed();
        (client, result, elapsed)
    });
    let mut other = cluster.connect();
    // Wait until the workers run.
    let deadline = Instant::now() + Duration::from_secs(30);
    while weft_workers(&mut other) < 2 {
        assert!(Instant::now() < deadline, "workers never started");
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(200));
    let interrupted = Instant::now();
    interrupt(&mut other, pid);
    let (mut client, result, _) = runner.join().unwrap();
    let took = interrupted.elapsed();
    let error = result.expect_err("the run should have been interrupted");
    // The session goes on.
    let one: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
    assert!(bench(&mut client, 1, 1, 64).unwrap().iter().all(|e| e.verified));
    assert_no_workers_left(&mut other);
    (error, took)
}

#[test]
fn pg_cancel_backend_ends_a_run_within_a_second() {
    let cluster = Cluster::start();
    let (error, took) = interrupted_run(&cluster, "SELECT 1", |other, pid| {
        other.execute("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
    });
    assert_eq!(error, "canceling statement due to user request");
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
}

#[test]
fn statement_timeout_ends_a_run() {
    let cluster = Cluster::start();
    let (error, _) = interrupted_run(&cluster, "SET statement_timeout = '1500ms'", |_, _| {});
    assert_eq!(error, "canceling statement due to statement timeout");
}

#[test]
fn terminating_a_worker_fails_the_query_not_the_session() {
    let cluster = Cluster::start();
    let (error, _) = interrupted_run(&cluster, "SELECT 1", |other, _| {
        let killed: bool = other
            .query_one(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE backend_type = 'parallel worker' LIMIT 1",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(killed);
    });
    // The worker's own FATAL, rethrown in the leader as an ERROR.
    assert!(error.contains("due to administrator command"), "{error}");
}

#[test]
fn a_worker_error_reaches_the_client_with_its_message() {
    let cluster = Cluster::start();
    let mut client = setup(&cluster);
    for attempt in 0..10 {
        client.batch_execute("SET weft.test_fail_participant = 2").unwrap();
        let error = bench(&mut client, 2, 16, 64).expect_err("participant 2 fails");
        assert_eq!(
            error, "injected failure in participant 2 (weft.test_fail_participant)",
            "attempt {attempt}"
        );
        client.batch_execute("RESET weft.test_fail_participant").unwrap();
        assert!(bench(&mut client, 2, 1, 64).unwrap().iter().all(|e| e.verified));
        assert_no_workers_left(&mut client);
    }
}

#[test]
fn the_failure_setting_is_for_superusers() {
    let cluster = Cluster::start();
    let mut client = setup(&cluster);
    client.batch_execute("CREATE ROLE alice LOGIN").unwrap();
    let mut alice = cluster.connect_as("alice");
    let error = alice.batch_execute("SET weft.test_fail_participant = 1").unwrap_err();
    let message = error.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("permission denied"), "{message}");
}
