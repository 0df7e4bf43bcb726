//! Arrow streams through LocalMesh: all-to-all exchanges of every type weft
//! uses, large batches through a small self-loop, batches whose IPC body is
//! empty, and early receiver close.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{all_types, batch, narrow, rows, same, seed, send_until_closed, Rng};
use weft_runtime::{BatchReceiver, BatchSender, Inbox, LocalMesh, Outbox, Participant, RuntimeError};

const BATCHES: usize = 12;

/// The batches `sender` sends `receiver` in the all-to-all test.
fn edge_batches(sender: u32, receiver: u32) -> impl Iterator<Item = arrow_array::RecordBatch> {
    let schema = all_types();
    (0..BATCHES).map(move |k| {
        let mut rng = Rng::new(seed(sender, receiver, k));
        let n = rows(k, &mut rng);
        batch(&schema, n, &mut rng)
    })
}

/// Every participant sends its batches to every participant (itself
/// included), one task per edge, and checks what arrives from each sender,
/// in order, against what that sender must have sent.
async fn all_to_all(node: Arc<Participant>) -> Result<usize, RuntimeError> {
    let me = node.id();
    let mut senders = Vec::new();
    for to in 0..node.participants() {
        let out = Outbox::open(&node, 0, to).await?;
        senders.push(tokio::task::spawn_local(async move {
            let mut tx = BatchSender::new(out, &all_types())?;
            for b in edge_batches(me, to) {
                tx.send(&b).await?;
            }
            tx.finish().await
        }));
    }
    let mut rows_received = 0;
    for from in 0..node.participants() {
        let mut rx = BatchReceiver::new(Inbox::open(&node, 0, from)?);
        for (k, want) in edge_batches(from, me).enumerate() {
            let got = rx
                .next()
                .await?
                .unwrap_or_else(|| panic!("{from}->{me}: stream ended before batch {k}"));
            assert!(same(&got, &want), "{from}->{me} batch {k} differs");
            rows_received += got.num_rows();
        }
        assert!(rx.next().await?.is_none(), "{from}->{me}: more batches than sent");
    }
    for sender in senders {
        sender.await.expect("sender task")?;
    }
    Ok(rows_received)
}

#[test]
fn all_to_all_every_type_for_1_to_4_participants() {
    for participants in 1..=4u32 {
        let results = LocalMesh::new(participants, 1, 64 << 10).unwrap().run(all_to_all);
        let expected: usize = (0..participants)
            .map(|s| edge_batches(s, 0).map(|b| b.num_rows()).sum::<usize>())
            .sum();
        assert!(expected > 0);
        for (p, result) in results.into_iter().enumerate() {
            let (received, metrics) = result.unwrap_or_else(|e| panic!("P={participants}, participant {p}: {e}"));
            if p == 0 {
                assert_eq!(received, expected);
            }
            // Every edge this participant read carried BATCHES batches.
            assert_eq!(metrics.received.len(), participants as usize);
            assert!(metrics.received.values().all(|s| s.batches == BATCHES as u64));
            assert!(metrics
                .sent
                .values()
                .all(|s| s.batches == BATCHES as u64 && s.bytes > 0));
        }
    }
}

#[test]
fn loopback_with_batches_larger_than_the_ring() {
    // One participant, 64 KiB rings, batches of 1 MiB and more: fragments
    // through a self-loop whose reader is another task of the same thread.
    fn make(k: usize) -> arrow_array::RecordBatch {
        let mut rng = Rng::new(k as u64);
        batch(&narrow(), 40_000 + k * 1000, &mut rng)
    }
    assert!(make(0).get_array_memory_size() > 1 << 20);
    let results = LocalMesh::new(1, 1, 64 << 10).unwrap().run(|node| async move {
        let out = Outbox::open(&node, 0, 0).await?;
        let sender = tokio::task::spawn_local(async move {
            let mut tx = BatchSender::new(out, &narrow())?;
            for k in 0..6 {
                tx.send(&make(k)).await?;
            }
            tx.finish().await
        });
        let mut rx = BatchReceiver::new(Inbox::open(&node, 0, 0)?);
        let mut k = 0;
        while let Some(got) = rx.next().await? {
            assert!(same(&got, &make(k)), "batch {k}");
            k += 1;
        }
        sender.await.expect("sender task")?;
        Ok(k)
    });
    let (batches, metrics) = results.into_iter().next().unwrap().unwrap();
    assert_eq!(batches, 6);
    let edge = metrics.sent.values().next().unwrap();
    assert!(edge.bytes > 6 << 20, "{} bytes", edge.bytes);
}

#[test]
fn a_receiver_that_stops_early_stops_its_senders() {
    // Like a LIMIT: each participant reads 3 batches from every sender and
    // drops its inboxes; senders would send forever, and must stop.
    let started = Instant::now();
    let results = LocalMesh::new(3, 1, 64 << 10).unwrap().run(|node| async move {
        let me = node.id();
        let mut senders = Vec::new();
        for to in 0..node.participants() {
            let out = Outbox::open(&node, 0, to).await?;
            senders.push(tokio::task::spawn_local(send_until_closed(out, 500, u64::from(me))));
        }
        for from in 0..node.participants() {
            let mut rx = BatchReceiver::new(Inbox::open(&node, 0, from)?);
            for _ in 0..3 {
                assert!(rx.next().await?.is_some());
            }
        }
        let mut sent = Vec::new();
        for sender in senders {
            sent.push(sender.await.expect("sender task")?);
        }
        Ok(sent)
    });
    for result in results {
        let (sent, _) = result.unwrap();
        // Each sender stopped after at most a ring's worth beyond what was read.
        assert!(sent.iter().all(|&n| (3..200).contains(&n)), "{sent:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn batches_with_an_empty_body_arrive() {
    // An IPC record batch whose buffers are all empty has a zero-length
    // body: no rows of fixed-width columns, or rows of no columns (what a
    // count(*) reads). Each must arrive as sent, between other batches
    // and as the last one of its stream.
    use arrow_array::{Int64Array, RecordBatch, RecordBatchOptions};
    use arrow_schema::{DataType, Field, Schema};
    let fixed = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ]));
    let some = RecordBatch::try_new(
        fixed.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(Int64Array::from(vec![Some(3), None])),
        ],
    )
    .unwrap();
    let none = RecordBatch::new_empty(fixed.clone());
    let columnless = Arc::new(Schema::empty());
    let rows_only = |n| {
        RecordBatch::try_new_with_options(
            columnless.clone(),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .unwrap()
    };
    let streams = [
        (fixed.clone(), vec![none.clone()]),
        (
            fixed.clone(),
            vec![none.clone(), some.clone(), none.clone(), none.clone(), some],
        ),
        (columnless.clone(), vec![rows_only(7), rows_only(0), rows_only(8192)]),
    ];
    for (schema, batches) in streams {
        let sent = batches.clone();
        let results = LocalMesh::new(1, 1, 64 << 10).unwrap().run(move |node| {
            let (schema, batches) = (schema.clone(), batches.clone());
            async move {
                let out = Outbox::open(&node, 0, 0).await?;
                let sender = tokio::task::spawn_local(async move {
                    let mut tx = BatchSender::new(out, &schema)?;
                    for b in &batches {
                        tx.send(b).await?;
                    }
                    tx.finish().await
                });
                let mut rx = BatchReceiver::new(Inbox::open(&node, 0, 0)?);
                let mut got = Vec::new();
                while let Some(b) = rx.next().await? {
                    got.push(b);
                }
                sender.await.expect("sender task")?;
                Ok(got)
            }
        });
        let (got, _) = results.into_iter().next().unwrap().unwrap();
        assert_eq!(got.len(), sent.len());
        for (g, s) in got.iter().zip(&sent) {
            assert!(same(g, s), "{g:?} != {s:?}");
        }
    }
}
