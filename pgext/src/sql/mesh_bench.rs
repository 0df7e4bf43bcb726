//! `weft.mesh_bench(workers, megabytes, frame_kib)`: every participant
//! sends `megabytes` MiB to every participant (itself included) through
//! the DSM mesh of real worker processes, in messages of `frame_kib` KiB;
//! one row per edge with what arrived, how fast, and whether the bytes
//! match what was sent (CRC-32 of the stream at both ends, frame and byte
//! counts). The transport's check in real Postgres, and a diagnostic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pgrx::prelude::*;
use weft_core::MessageKind;
use weft_runtime::{Inbox, Outbox, Participant, RuntimeError};

use crate::exec::parallel::{Job, Part, Section};
use crate::exec::participate;
use crate::guc;

/// Words per edge in the job area.
const SLOT: usize = 8;
// Word indexes in an edge's slot.
const SENT_FRAMES: usize = 0;
const SENT_BYTES: usize = 1;
const SENT_CRC: usize = 2;
const RECEIVED_FRAMES: usize = 3;
const RECEIVED_BYTES: usize = 4;
const RECEIVED_CRC: usize = 5;
const RECEIVED_NANOS: usize = 6;

/// Largest `megabytes` accepted (per edge).
const MAX_MEGABYTES: i32 = 1 << 20;
/// Largest `frame_kib` accepted.
const MAX_FRAME_KIB: i32 = 64 << 10;

/// What every participant needs to know: the job parameters.
#[derive(Clone, Copy)]
struct Params {
    /// Bytes per edge.
    bytes: u64,
    /// Bytes per message.
    frame: usize,
    /// Participants the area is laid out for (requested workers + 1).
    stride: usize,
    /// The participant that fails on purpose (weft.test_fail_participant).
    fail: Option<u32>,
}

impl Params {
    fn encode(self) -> [u64; 4] {
        [
            self.bytes,
            self.frame as u64,
            self.stride as u64,
            self.fail.map_or(u64::MAX, u64::from),
        ]
    }

    fn decode(words: [u64; 4]) -> Params {
        Params {
            bytes: words[0],
            frame: words[1] as usize,
            stride: words[2] as usize,
            fail: u32::try_from(words[3]).ok(),
        }
    }
}

/// Pushes data all-to-all through the mesh; see the module docs.
#[pg_extern(parallel_unsafe)]
#[allow(clippy::type_complexity)]
fn mesh_bench(
    workers: i32,
    megabytes: i32,
    frame_kib: i32,
) -> TableIterator<
    'static,
    (
        name!(sender, i32),
        name!(receiver, i32),
        name!(frames, i64),
        name!(bytes, i64),
        name!(seconds, f64),
        name!(gbps, f64),
        name!(verified, bool),
    ),
> {
    if !(0..=guc::MAX_WORKERS).contains(&workers) {
        error!("weft.mesh_bench: workers must be between 0 and {}", guc::MAX_WORKERS);
    }
    if !(1..=MAX_MEGABYTES).contains(&megabytes) {
        error!("weft.mesh_bench: megabytes must be between 1 and {MAX_MEGABYTES}");
    }
    if !(1..=MAX_FRAME_KIB).contains(&frame_kib) {
        error!("weft.mesh_bench: frame_kib must be between 1 and {MAX_FRAME_KIB}");
    }
    let stride = workers as usize + 1;
    let fail = guc::TEST_FAIL_PARTICIPANT.get();
    let params = Params {
        bytes: megabytes as u64 * (1 << 20),
        frame: frame_kib as usize * 1024,
        stride,
        fail: u32::try_from(fail).ok(),
    };
    let area = stride * stride * SLOT * size_of::<u64>();
    let section = Section::launch(Job::MeshBench, params.encode(), workers as usize, area).publish(
        1,
        guc::mesh_rings(),
        0,
        |_| {},
    );
    let participants = section.participants() as usize;
    let outcome = participate::run(section.part(), section.worker_handles(), |node| {
        traffic(node, section.part().area::<AtomicU64>(), params)
    });
    // Every worker finishes (or its error is raised here) before the
    // results are read.
    let slots: Vec<u64> = section.finish(|part| {
        part.area::<AtomicU64>()
            .iter()
            .map(|w| w.load(Ordering::Acquire))
            .collect()
    });
    if let Err(e) = outcome {
        error!("weft.mesh_bench: {e}");
    }
    let mut rows = Vec::with_capacity(participants * participants);
    for sender in 0..participants {
        for receiver in 0..participants {
            let slot = &slots[(sender * stride + receiver) * SLOT..][..SLOT];
            let seconds = slot[RECEIVED_NANOS] as f64 / 1e9;
            let verified = slot[SENT_FRAMES] == slot[RECEIVED_FRAMES]
                && slot[SENT_BYTES] == params.bytes
                && slot[RECEIVED_BYTES] == params.bytes
                && slot[SENT_CRC] == slot[RECEIVED_CRC];
            rows.push((
                sender as i32,
                receiver as i32,
                slot[RECEIVED_FRAMES] as i64,
                slot[RECEIVED_BYTES] as i64,
                seconds,
                if seconds > 0.0 {
                    slot[RECEIVED_BYTES] as f64 / seconds / 1e9
                } else {
                    0.0
                },
                verified,
            ));
        }
    }
    TableIterator::new(rows)
}

/// A worker's part of the benchmark.
pub fn worker(part: &Part) {
    let params = Params::decode(part.params);
    let outcome = participate::run(part, Vec::new(), |node| traffic(node, part.area::<AtomicU64>(), params));
    match outcome {
        Ok(_) => {}
        // Our own failure, recorded as the query's abort: its own words.
        Err(RuntimeError::Aborted {
            participant, message, ..
        }) if participant == part.id => error!("{message}"),
        // Another participant failed first: it reports its own error (the
        // leader raises it); repeating it from here would only race it.
        Err(RuntimeError::Aborted { .. }) => {}
        Err(e) => error!("{e}"),
    }
}

/// This participant's traffic: a sender to and a receiver from every
/// participant, as tasks of its runtime.
async fn traffic(node: Arc<Participant>, area: &'static [AtomicU64], params: Params) -> Result<(), RuntimeError> {
    let me = node.id() as usize;
    let mut tasks = Vec::new();
    for peer in 0..node.participants() as usize {
        let slot = &area[(me * params.stride + peer) * SLOT..][..SLOT];
        tasks.push(tokio::task::spawn_local(send(node.clone(), peer as u32, slot, params)));
        let slot = &area[(peer * params.stride + me) * SLOT..][..SLOT];
        tasks.push(tokio::task::spawn_local(receive(node.clone(), peer as u32, slot)));
    }
    // The first failure ends the body at once (and so aborts the mesh);
    // the other tasks are dropped with the runtime.
    let joined = futures::future::try_join_all(tasks.into_iter().map(|task| async move {
        task.await
            .map_err(|e| RuntimeError::Runtime(format!("mesh bench task: {e}")))?
    }));
    joined.await.map(|_| ())
}

/// Sends `params.bytes` to `receiver` and records what was sent.
async fn send(node: Arc<Participant>, receiver: u32, slot: &[AtomicU64], params: Params) -> Result<(), RuntimeError> {
    let me = node.id();
    let mut out = Outbox::open(&node, 0, receiver).await?;
    let mut message = pattern(params.frame, me, receiver);
    let mut crc = crc32fast::Hasher::new();
    let (mut sent, mut frames) = (0u64, 0u64);
    while sent < params.bytes {
        let len = (params.bytes - sent).min(params.frame as u64) as usize;
        // Each message carries its number, so that a lost, repeated or
        // reordered one changes the stream's CRC.
        let stamp = frames.to_le_bytes();
        let n = stamp.len().min(len);
        message[..n].copy_from_slice(&stamp[..n]);
        out.send(MessageKind::Data, &message[..len]).await?;
        crc.update(&message[..len]);
        sent += len as u64;
        frames += 1;
        if params.fail == Some(me) && sent >= params.bytes / 2 {
            let message = format!("injected failure in participant {me} (weft.test_fail_participant)");
            // Recorded before `out` drops: a receiver that found the ring
            // closed first would otherwise report this sender as vanished,
            // and that would be the query's error instead of this one.
            node.abort(weft_runtime::FAILURE_CODE, &message);
            return Err(RuntimeError::Query(message));
        }
    }
    out.finish().await?;
    slot[SENT_FRAMES].store(frames, Ordering::Release);
    slot[SENT_BYTES].store(sent, Ordering::Release);
    slot[SENT_CRC].store(u64::from(crc.finalize()), Ordering::Release);
    Ok(())
}

/// Receives everything `sender` sends and records it.
async fn receive(node: Arc<Participant>, sender: u32, slot: &[AtomicU64]) -> Result<(), RuntimeError> {
    let mut inbox = Inbox::open(&node, 0, sender)?;
    let started = Instant::now();
    let mut crc = crc32fast::Hasher::new();
    let (mut bytes, mut frames) = (0u64, 0u64);
    while let Some(message) = inbox.recv().await? {
        crc.update(&message);
        bytes += message.len() as u64;
        frames += 1;
    }
    slot[RECEIVED_NANOS].store(started.elapsed().as_nanos() as u64, Ordering::Release);
    slot[RECEIVED_FRAMES].store(frames, Ordering::Release);
    slot[RECEIVED_BYTES].store(bytes, Ordering::Release);
    slot[RECEIVED_CRC].store(u64::from(crc.finalize()), Ordering::Release);
    Ok(())
}

/// A message's bytes: a pseudo-random pattern particular to the edge.
fn pattern(len: usize, sender: u32, receiver: u32) -> Vec<u8> {
    let mut state = (u64::from(sender) << 32 | u64::from(receiver)) ^ 0x9e37_79b9_7f4a_7c15;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}
