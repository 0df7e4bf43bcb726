//! The query job's payload in the section's segment: what the leader
//! publishes for its workers (the plan, the scans' shared state) and where
//! each participant leaves its metrics.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pgrx::pg_sys;
use weft_runtime::{Edge, EdgeStats, Metrics, OperatorRun};

use crate::plan::codec::SlotTarget;
use crate::storage::stream::ScanBinding;

/// The query job's payload in the section's segment (offsets in bytes
/// from its start):
///
/// | at | what |
/// |---|---|
/// | 0 | header: magic, plan offset and length, slot count, metrics offset and words per participant, participants, total length, participants running the plan, operators |
/// | 128 | one entry per slot: relid, relfilenode, scan state offset and length |
/// | after | the encoded plan |
/// | after, 64-aligned | each slot's parallel scan state |
/// | after, 64-aligned | each participant's metrics: a count of edges, then 9 words per edge; a count of operators, then 2 words per operator |
///
/// The leader writes everything but the metrics before publishing; each
/// worker writes its own metrics slot, which the leader reads after the
/// workers finished.
#[derive(Clone, Debug)]
pub struct Payload {
    /// The payload's length in bytes.
    pub len: usize,
    plan_at: usize,
    plan_len: usize,
    /// Each slot's scan state: offset and length.
    scans: Vec<(usize, usize)>,
    metrics_at: usize,
    /// Words per participant's metrics slot.
    metrics_words: usize,
    participants: usize,
    /// Participants that run the plan (all, or the leader alone).
    pub runners: usize,
    /// Operators of the plan as each participant runs it, whose runs
    /// ([`OperatorRun`]) each participant's metrics slot has room for.
    operators: usize,
}

const PAYLOAD_MAGIC: u64 = 0x7765_6674_7175_6572; // "weftquer"
const HEADER_WORDS: usize = 10;
const ENTRIES_AT: usize = 128;
const ENTRY_WORDS: usize = 4;
const EDGE_WORDS: usize = 9;
const OPERATOR_WORDS: usize = 2;
const ALIGN: usize = 64;
const _: () = assert!(HEADER_WORDS * 8 <= ENTRIES_AT);

impl Payload {
    /// The layout for a plan of `plan_len` bytes, scans whose shared state
    /// takes `scan_sizes` bytes, and `participants` participants' metrics
    /// over `exchanges` exchanges and `operators` operators.
    pub fn layout(
        plan_len: usize,
        scan_sizes: &[usize],
        participants: usize,
        runners: usize,
        exchanges: u32,
        operators: usize,
    ) -> Payload {
        let plan_at = ENTRIES_AT + scan_sizes.len() * ENTRY_WORDS * 8;
        let mut at = (plan_at + plan_len).next_multiple_of(ALIGN);
        let mut scans = Vec::with_capacity(scan_sizes.len());
        for &size in scan_sizes {
            scans.push((at, size));
            at = (at + size).next_multiple_of(ALIGN);
        }
        // At most every exchange's edge to and from every participant, and
        // every operator's run.
        let metrics_words = 1 + 2 * exchanges as usize * participants * EDGE_WORDS + 1 + OPERATOR_WORDS * operators;
        Payload {
            len: at + participants * metrics_words * 8,
            plan_at,
            plan_len,
            scans,
            metrics_at: at,
            metrics_words,
            participants,
            runners,
            operators,
        }
    }

    /// Edges a metrics slot has room for.
    fn edge_capacity(&self) -> usize {
        (self.metrics_words - 2 - OPERATOR_WORDS * self.operators) / EDGE_WORDS
    }

    /// Where a metrics slot's operator runs start (their count first).
    fn operators_at(&self) -> usize {
        1 + self.edge_capacity() * EDGE_WORDS
    }

    /// Writes the header, the slots, the plan and the scans' initial state.
    ///
    /// # Safety
    /// `start` must be `self.len` bytes of unpublished payload, 64-aligned;
    /// `slots` the open relations of this layout's scans; on the backend
    /// thread.
    pub unsafe fn write(
        &self,
        start: NonNull<u8>,
        plan: &[u8],
        slots: &[(SlotTarget, pg_sys::Relation)],
        snapshot: pg_sys::Snapshot,
    ) {
        let base = start.as_ptr();
        let header = [
            PAYLOAD_MAGIC,
            self.plan_at as u64,
            self.plan_len as u64,
            self.scans.len() as u64,
            self.metrics_at as u64,
            self.metrics_words as u64,
            self.participants as u64,
            self.len as u64,
            self.runners as u64,
            self.operators as u64,
        ];
        // SAFETY: per the caller, every write is inside the payload, and
        // the words are 8-aligned (offsets are multiples of 8 from a
        // 64-aligned start).
        unsafe {
            std::ptr::write_bytes(base, 0, self.len);
            base.cast::<[u64; HEADER_WORDS]>().write(header);
            for (i, ((target, rel), &(at, len))) in slots.iter().zip(&self.scans).enumerate() {
                let entry = [
                    u64::from(target.relid.to_u32()),
                    u64::from(target.relfilenode),
                    at as u64,
                    len as u64,
                ];
                base.add(ENTRIES_AT + i * ENTRY_WORDS * 8)
                    .cast::<[u64; ENTRY_WORDS]>()
                    .write(entry);
                pg_sys::table_parallelscan_initialize(*rel, base.add(at).cast(), snapshot);
            }
            std::ptr::copy_nonoverlapping(plan.as_ptr(), base.add(self.plan_at), plan.len());
        }
    }

    /// The layout a payload of `len` bytes at `start` describes, checked.
    ///
    /// # Safety
    /// `start` must be a published payload of `len` bytes.
    pub unsafe fn read(start: NonNull<u8>, len: usize) -> Result<Payload, String> {
        let base = start.as_ptr();
        if len < ENTRIES_AT {
            return Err("the query's payload is too short".into());
        }
        // SAFETY: per the caller; checked to be inside the payload.
        let header = unsafe { base.cast::<[u64; HEADER_WORDS]>().read() };
        let [magic, plan_at, plan_len, slots, metrics_at, metrics_words, participants, total, runners, operators] =
            header.map(|w| w as usize);
        let fits = |at: usize, size: usize| at.checked_add(size).is_some_and(|end| end <= len);
        if magic as u64 != PAYLOAD_MAGIC
            || total != len
            || runners == 0
            || runners > participants
            || !fits(ENTRIES_AT, slots.saturating_mul(ENTRY_WORDS * 8))
            || !fits(plan_at, plan_len)
            || !fits(metrics_at, participants.saturating_mul(metrics_words).saturating_mul(8))
            || metrics_words < operators.saturating_mul(OPERATOR_WORDS).saturating_add(2)
        {
            return Err("the query's payload is corrupt".into());
        }
        let mut scans = Vec::with_capacity(slots);
        for i in 0..slots {
            // SAFETY: inside the payload (checked above).
            let entry = unsafe {
                base.add(ENTRIES_AT + i * ENTRY_WORDS * 8)
                    .cast::<[u64; ENTRY_WORDS]>()
                    .read()
            };
            let (at, size) = (entry[2] as usize, entry[3] as usize);
            if !fits(at, size) || at % ALIGN != 0 {
                return Err("the query's payload is corrupt".into());
            }
            scans.push((at, size));
        }
        Ok(Payload {
            len,
            plan_at,
            plan_len,
            scans,
            metrics_at,
            metrics_words,
            participants,
            runners,
            operators,
        })
    }

    /// The slots' relations, as the leader planned with them.
    ///
    /// # Safety
    /// `start` must be this layout's payload.
    pub unsafe fn targets(&self, start: NonNull<u8>) -> Vec<SlotTarget> {
        (0..self.scans.len())
            .map(|i| {
                // SAFETY: per the caller, inside the payload.
                let entry = unsafe {
                    start
                        .as_ptr()
                        .add(ENTRIES_AT + i * ENTRY_WORDS * 8)
                        .cast::<[u64; ENTRY_WORDS]>()
                        .read()
                };
                SlotTarget {
                    relid: pg_sys::Oid::from(entry[0] as u32),
                    relfilenode: entry[1] as u32,
                }
            })
            .collect()
    }

    /// Binds each slot to its relation (opened by this participant) and
    /// its scan state.
    ///
    /// # Safety
    /// `start` must be this layout's payload; `targets` in slot order.
    pub unsafe fn bindings(
        &self,
        start: NonNull<u8>,
        targets: impl Iterator<Item = (SlotTarget, pg_sys::Relation)>,
    ) -> Vec<(SlotTarget, ScanBinding)> {
        targets
            .zip(&self.scans)
            .map(|((target, rel), &(at, _))| {
                // SAFETY: per the caller, inside the payload.
                let pscan = unsafe { start.as_ptr().add(at) }.cast();
                (target, ScanBinding { rel, pscan })
            })
            .collect()
    }

    /// The encoded plan.
    ///
    /// # Safety
    /// `start` must be this layout's payload; the bytes live as long as it.
    pub unsafe fn plan<'a>(&self, start: NonNull<u8>) -> &'a [u8] {
        // SAFETY: per the caller; the plan never changes after publish.
        unsafe { std::slice::from_raw_parts(start.as_ptr().add(self.plan_at), self.plan_len) }
    }

    /// Participant `participant`'s metrics words.
    ///
    /// # Safety
    /// `start` must be this layout's payload.
    pub unsafe fn metrics_slot<'a>(&self, start: NonNull<u8>, participant: usize) -> &'a [AtomicU64] {
        assert!(participant < self.participants, "a participant of this section");
        // SAFETY: per the caller; inside the payload, 8-aligned, and
        // AtomicU64 is valid for any bits.
        unsafe {
            let at = start
                .as_ptr()
                .add(self.metrics_at + participant * self.metrics_words * 8);
            std::slice::from_raw_parts(at.cast::<AtomicU64>(), self.metrics_words)
        }
    }

    /// Records `metrics` in participant `participant`'s slot (edges that
    /// do not fit are left out).
    ///
    /// # Safety
    /// As for [`metrics_slot`](Self::metrics_slot).
    pub unsafe fn write_metrics(&self, start: NonNull<u8>, participant: usize, metrics: &Metrics) {
        // SAFETY: per the caller.
        let slot = unsafe { self.metrics_slot(start, participant) };
        let edges = metrics
            .sent
            .iter()
            .map(|e| (0u64, e))
            .chain(metrics.received.iter().map(|e| (1u64, e)))
            .take(self.edge_capacity());
        let mut count = 0;
        for (i, (direction, (edge, stats))) in edges.enumerate() {
            let words = [
                direction,
                u64::from(edge.exchange),
                u64::from(edge.sender),
                u64::from(edge.receiver),
                stats.messages,
                stats.bytes,
                stats.batches,
                stats.rows,
                stats.stalled.as_nanos() as u64,
            ];
            for (w, word) in words.into_iter().enumerate() {
                slot[1 + i * EDGE_WORDS + w].store(word, Ordering::Relaxed);
            }
            count += 1;
        }
        slot[0].store(count, Ordering::Release);
    }

    /// Participant `participant`'s recorded metrics.
    ///
    /// # Safety
    /// As for [`metrics_slot`](Self::metrics_slot).
    pub unsafe fn read_metrics(&self, start: NonNull<u8>, participant: usize) -> Metrics {
        // SAFETY: per the caller.
        let slot = unsafe { self.metrics_slot(start, participant) };
        let count = (slot[0].load(Ordering::Acquire) as usize).min(self.edge_capacity());
        let mut metrics = Metrics::default();
        for i in 0..count {
            let w = |k: usize| slot[1 + i * EDGE_WORDS + k].load(Ordering::Relaxed);
            let edge = Edge {
                exchange: w(1) as u32,
                sender: w(2) as u32,
                receiver: w(3) as u32,
            };
            let stats = EdgeStats {
                messages: w(4),
                bytes: w(5),
                batches: w(6),
                rows: w(7),
                stalled: Duration::from_nanos(w(8)),
            };
            if w(0) == 0 {
                metrics.sent.insert(edge, stats);
            } else {
                metrics.received.insert(edge, stats);
            }
        }
        metrics
    }

    /// Records `runs` (a participant's [`OperatorRun`]s, in preorder) in
    /// participant `participant`'s slot (those that do not fit are left
    /// out).
    ///
    /// # Safety
    /// As for [`metrics_slot`](Self::metrics_slot).
    pub unsafe fn write_operators(&self, start: NonNull<u8>, participant: usize, runs: &[OperatorRun]) {
        // SAFETY: per the caller.
        let slot = unsafe { self.metrics_slot(start, participant) };
        let at = self.operators_at();
        let count = runs.len().min(self.operators);
        for (i, run) in runs.iter().take(count).enumerate() {
            slot[at + 1 + i * OPERATOR_WORDS].store(run.rows, Ordering::Relaxed);
            slot[at + 2 + i * OPERATOR_WORDS].store(run.compute.as_nanos() as u64, Ordering::Relaxed);
        }
        slot[at].store(count as u64, Ordering::Release);
    }

    /// Participant `participant`'s recorded operator runs.
    ///
    /// # Safety
    /// As for [`metrics_slot`](Self::metrics_slot).
    pub unsafe fn read_operators(&self, start: NonNull<u8>, participant: usize) -> Vec<OperatorRun> {
        // SAFETY: per the caller.
        let slot = unsafe { self.metrics_slot(start, participant) };
        let at = self.operators_at();
        let count = (slot[at].load(Ordering::Acquire) as usize).min(self.operators);
        (0..count)
            .map(|i| OperatorRun {
                rows: slot[at + 1 + i * OPERATOR_WORDS].load(Ordering::Relaxed),
                compute: Duration::from_nanos(slot[at + 2 + i * OPERATOR_WORDS].load(Ordering::Relaxed)),
            })
            .collect()
    }
}
