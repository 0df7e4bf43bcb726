//! Failure, cancellation and idleness: an injected error reaches everyone
//! with its message, an abort ends blocked participants promptly, and a
//! participant waiting for data sleeps instead of spinning.

mod support;

use std::time::{Duration, Instant};

use support::{batch, narrow, send_until_closed, Rng};
use weft_runtime::{BatchReceiver, BatchSender, Inbox, LocalMesh, Outbox, RunResult, RuntimeError};

/// Participant 1 fails mid-stream while everyone streams to everyone; the
/// others, blocked or busy, fail with participant 1's own message.
#[test]
fn an_injected_failure_reaches_every_participant() {
    let results: Vec<RunResult<()>> = LocalMesh::new(3, 1, 64 << 10).unwrap().run(|node| async move {
        let me = node.id();
        let mut senders = Vec::new();
        for to in 0..node.participants() {
            let out = Outbox::open(&node, 0, to).await?;
            senders.push(tokio::task::spawn_local(send_until_closed(out, 200, u64::from(me))));
        }
        let mut rx = BatchReceiver::new(Inbox::open(&node, 0, (me + 1) % node.participants())?);
        for received in 0.. {
            if me == 1 && received == 5 {
                return Err(RuntimeError::Runtime("injected failure: disk on fire".into()));
            }
            rx.next().await?;
        }
        unreachable!()
    });
    for (p, result) in results.into_iter().enumerate() {
        let error = result.map(|_| ()).unwrap_err();
        assert!(error.to_string().contains("disk on fire"), "participant {p}: {error}");
        if p != 1 {
            assert!(
                matches!(error, RuntimeError::Aborted { participant: 1, .. }),
                "participant {p}: {error:?}"
            );
        }
    }
}

/// Everyone blocks (senders on full rings, receivers on empty ones); a
/// watchdog thread aborts the query; all return the abort promptly.
#[test]
fn an_abort_ends_blocked_participants_promptly() {
    let watchdog = Duration::from_millis(300);
    let started = Instant::now();
    let results = LocalMesh::new(3, 2, 4096).unwrap().run(|node| async move {
        let me = node.id();
        if me == 0 {
            let handle = node.abort_handle();
            std::thread::spawn(move || {
                std::thread::sleep(watchdog);
                handle.abort(57014, "canceling statement due to user request");
            });
        }
        // Exchange 0: fill the ring to the next participant, who never reads it.
        let out = Outbox::open(&node, 0, (me + 1) % node.participants()).await?;
        let sender = tokio::task::spawn_local(send_until_closed(out, 50, 7));
        // Exchange 1: wait for a message nobody sends.
        let mut idle = Inbox::open(&node, 1, (me + 1) % node.participants())?;
        let received = idle.recv().await;
        let sent = sender.await.expect("sender task");
        Err::<(), _>(received.err().or(sent.err()).expect("both sides fail"))
    });
    let elapsed = started.elapsed();
    for (p, result) in results.into_iter().enumerate() {
        match result.map(|_| ()).unwrap_err() {
            RuntimeError::Aborted {
                participant: 0,
                code: 57014,
                message,
            } => assert!(message.contains("canceling statement")),
            other => panic!("participant {p}: {other:?}"),
        }
    }
    assert!(elapsed < watchdog + Duration::from_secs(1), "took {elapsed:?}");
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to write to.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A participant waiting a second for its only message uses well under 5%
/// of a core while it waits.
#[test]
fn a_waiting_participant_does_not_spin() {
    let wait = Duration::from_secs(1);
    let results = LocalMesh::new(2, 1, 64 << 10).unwrap().run(|node| async move {
        if node.id() == 0 {
            let mut tx = BatchSender::new(Outbox::open(&node, 0, 1).await?, &narrow())?;
            std::thread::sleep(wait);
            tx.send(&batch(&narrow(), 10, &mut Rng::new(1))).await?;
            tx.finish().await?;
            return Ok(None);
        }
        let mut rx = BatchReceiver::new(Inbox::open(&node, 0, 0)?);
        let (cpu, wall) = (thread_cpu_time(), Instant::now());
        let got = rx.next().await?;
        let (cpu, wall) = (thread_cpu_time() - cpu, wall.elapsed());
        assert!(got.is_some());
        assert!(rx.next().await?.is_none());
        Ok(Some((cpu, wall, node.parks())))
    });
    let (cpu, wall, parks) = results.into_iter().nth(1).unwrap().unwrap().0.unwrap();
    assert!(wall >= wait / 2, "waited only {wall:?}");
    assert!(cpu < wall / 20, "{cpu:?} of CPU in {wall:?} ({parks} parks)");
    assert!(
        parks < 100,
        "{parks} parks in {wall:?}: the park timeout is not being honoured"
    );
}

/// A sender that drops its outbox without ending the stream is reported as
/// vanished, not as a clean end.
#[test]
fn a_sender_that_vanishes_is_an_error_not_an_end() {
    let results = LocalMesh::new(1, 1, 64 << 10).unwrap().run(|node| async move {
        let mut tx = BatchSender::new(Outbox::open(&node, 0, 0).await?, &narrow())?;
        tx.send(&batch(&narrow(), 10, &mut Rng::new(3))).await?;
        drop(tx); // no finish()
        let mut rx = BatchReceiver::new(Inbox::open(&node, 0, 0)?);
        assert!(rx.next().await?.is_some());
        Ok(rx.next().await.map(|b| b.is_some()))
    });
    let (second, _) = results.into_iter().next().unwrap().unwrap();
    assert_eq!(
        second,
        Err(RuntimeError::SenderVanished {
            exchange: 0,
            participant: 0
        })
    );
}

/// Corrupt messages (valid IPC with bytes flipped, and plain garbage) give
/// an error or a batch, never a panic.
#[test]
fn corrupt_messages_are_errors_not_panics() {
    const CASES: u32 = 96;
    let mut encoder = arrow_ipc::writer::StreamEncoder::try_new(&support::all_types()).unwrap();
    let good: Vec<u8> = encoder
        .encode(&batch(&support::all_types(), 50, &mut Rng::new(11)))
        .unwrap()
        .iter()
        .flat_map(|b| b.as_slice().to_vec())
        .collect();
    let results = LocalMesh::new(1, CASES, 64 << 10).unwrap().run(|node| {
        let good = good.clone();
        async move {
            let mut outcomes = (0, 0);
            for case in 0..CASES {
                let mut rng = Rng::new(u64::from(case));
                let mut message = if case % 4 == 0 {
                    (0..rng.below(2000)).map(|_| rng.next_u64() as u8).collect()
                } else {
                    good.clone()
                };
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(message.len() as u64) as usize;
                    if let Some(byte) = message.get_mut(at) {
                        *byte ^= 1 << rng.below(8);
                    }
                }
                let mut out = Outbox::open(&node, case, 0).await?;
                out.send(weft_core::MessageKind::Data, &message).await?;
                out.finish().await?;
                let mut rx = BatchReceiver::new(Inbox::open(&node, case, 0)?);
                match rx.next().await {
                    Ok(_) => outcomes.0 += 1,
                    Err(RuntimeError::Arrow(_)) => outcomes.1 += 1,
                    Err(other) => panic!("case {case}: unexpected {other:?}"),
                }
            }
            Ok(outcomes)
        }
    });
    let ((decoded, rejected), _) = results.into_iter().next().unwrap().unwrap();
    assert_eq!(decoded + rejected, CASES);
    assert!(
        rejected > CASES / 4,
        "only {rejected} of {CASES} corrupt messages were rejected"
    );
}
