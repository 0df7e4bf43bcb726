//! weft's ring against its targets, measured side by side in one run.
//!
//! For each frame size, every subject of the `ring` bench moves the same
//! number of bytes, round after round, in an order that rotates each round,
//! so that a noisy neighbour slows all of them alike. Ratios are taken
//! within a round (weft's run against rtrb's run of the same round) and the
//! median over rounds is reported, as a markdown table for `README.md`.
//!
//! `WEFT_RATIO_ROUNDS` (default 9) and `WEFT_RATIO_MIB` (MiB per run,
//! default 128) tune it; `WEFT_RATIO_ONLY=weft,rtrb` and
//! `WEFT_RATIO_SIZES=64` restrict it to some subjects and frame sizes (for
//! profiling one of them). Run without `--bench` (as `cargo test --benches`
//! does), it makes one short round, as a smoke test.

use std::collections::HashMap;

#[path = "../../core/tests/support/mod.rs"]
mod support;

mod common;

use common::{size_label, with_transports, FRAME_SIZES};

/// A target: `numerator / denominator` at least `min` at the sizes given.
struct Target {
    what: &'static str,
    numerator: &'static str,
    denominator: &'static str,
    /// `(frame size, minimum ratio)`; `None` where only informative.
    min: [(usize, Option<f64>); 3],
}

const TARGETS: [Target; 5] = [
    Target {
        what: "weft / rtrb",
        numerator: "weft",
        denominator: "rtrb",
        min: [(64, Some(0.8)), (4096, Some(1.0)), (65536, Some(1.0))],
    },
    Target {
        what: "weft / memcpy",
        numerator: "weft",
        denominator: "memcpy",
        min: [(64, None), (4096, None), (65536, Some(0.8))],
    },
    Target {
        what: "weft cross-process / weft cross-thread",
        numerator: "weft_xproc",
        denominator: "weft",
        min: [(64, Some(0.9)), (4096, Some(0.9)), (65536, Some(0.9))],
    },
    Target {
        what: "weft cross-process / cross-thread, same shm and protocol",
        numerator: "weft_xproc",
        denominator: "weft_xthread_shm",
        min: [(64, Some(0.9)), (4096, Some(0.9)), (65536, Some(0.9))],
    },
    Target {
        what: "weft / crossbeam ArrayQueue",
        numerator: "weft",
        denominator: "array_queue",
        min: [(64, None), (4096, None), (65536, None)],
    },
];

fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}")),
        Err(_) => default,
    }
}

/// The comma-separated list in environment variable `name`, if set.
fn env_list(name: &str) -> Option<Vec<String>> {
    let value = std::env::var(name).ok()?;
    Some(value.split(',').map(|s| s.trim().to_string()).collect())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

fn range(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

/// GB/s (10^9 bytes per second) of each subject, one value per round.
type Speeds = HashMap<&'static str, Vec<f64>>;

/// Runs every subject for `frame`-byte frames, interleaved, for `rounds`.
fn measure(frame: usize, rounds: usize, bytes: u64, only: Option<&[String]>) -> (Vec<&'static str>, Speeds) {
    let frames = bytes / frame as u64;
    with_transports(frame, |all| {
        let mut entries: Vec<_> = all
            .iter_mut()
            .filter(|e| only.is_none_or(|only| only.iter().any(|o| o == e.name)))
            .collect();
        let names: Vec<_> = entries.iter().map(|e| e.name).collect();
        let mut speeds = Speeds::new();
        for round in 0..rounds {
            for k in 0..entries.len() {
                let n = entries.len();
                let entry = &mut entries[(k + round) % n];
                let time = entry.run.run(frames);
                let gbps = (frames * frame as u64) as f64 / time.as_secs_f64() / 1e9;
                speeds.entry(entry.name).or_default().push(gbps);
            }
        }
        (names, speeds)
    })
}

/// CPU time, in clock ticks: of the whole machine (busy, and stolen by the
/// hypervisor) and of this process with its waited-for children. Linux only;
/// `None` elsewhere.
#[derive(Clone, Copy)]
struct CpuTicks {
    busy: u64,
    steal: u64,
    own: u64,
}

impl CpuTicks {
    fn now() -> Option<CpuTicks> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .map_while(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let [user, nice, system, _idle, _iowait, irq, softirq, steal, ..] = cpu[..] else {
            return None;
        };
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name: state is field 3, utime field 14.
        let fields: Vec<u64> = own
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .skip(11)
            .take(4)
            .map_while(|v| v.parse().ok())
            .collect();
        Some(CpuTicks {
            busy: user + nice + system + irq + softirq,
            steal,
            own: fields.iter().sum(),
        })
    }

    /// "other processes used x% of a CPU, y% stolen", over `wall` seconds.
    fn describe(before: CpuTicks, after: CpuTicks, wall: f64) -> String {
        // Linux's USER_HZ is 100 on every architecture Rust supports.
        let percent = |ticks: u64| ticks as f64 / wall;
        let other = after
            .busy
            .saturating_sub(before.busy)
            .saturating_sub(after.own - before.own);
        format!(
            "while it ran, other processes used {:.0}% of one CPU and the hypervisor stole {:.0}%",
            percent(other),
            percent(after.steal - before.steal)
        )
    }
}

fn main() {
    if common::peer::serve_if_peer() {
        return;
    }
    let bench = std::env::args().any(|a| a == "--bench");
    let (rounds, mib) = if bench {
        (env_or("WEFT_RATIO_ROUNDS", 9), env_or("WEFT_RATIO_MIB", 128))
    } else {
        (1, 8)
    };
    let rounds = usize::try_from(rounds).expect("rounds").max(1);
    println!("{rounds} interleaved rounds of {mib} MiB per subject and frame size; GB/s = 10^9 B/s\n");

    let started = (std::time::Instant::now(), CpuTicks::now());
    let mut all: HashMap<usize, Speeds> = HashMap::new();
    println!("| frame | subject | median GB/s | min | max |");
    println!("|---|---|---:|---:|---:|");
    let only = env_list("WEFT_RATIO_ONLY");
    let sizes: Vec<usize> = match env_list("WEFT_RATIO_SIZES") {
        Some(list) => list
            .iter()
            .map(|s| s.parse().expect("WEFT_RATIO_SIZES: frame sizes in bytes"))
            .collect(),
        None => FRAME_SIZES.to_vec(),
    };
    for &frame in &sizes {
        let (names, speeds) = measure(frame, rounds, mib << 20, only.as_deref());
        for name in names {
            let values = &speeds[name];
            let (lo, hi) = range(values);
            println!(
                "| {} | {name} | {:.2} | {lo:.2} | {hi:.2} |",
                size_label(frame),
                median(values)
            );
        }
        all.insert(frame, speeds);
    }
    if let (Some(before), Some(after)) = (started.1, CpuTicks::now()) {
        println!(
            "\n{}",
            CpuTicks::describe(before, after, started.0.elapsed().as_secs_f64())
        );
    }

    println!("\n| ratio (median of per-round ratios, [min, max]) | frame | measured | target | met |");
    println!("|---|---|---:|---:|---|");
    for target in &TARGETS {
        for (frame, min) in target.min {
            let Some(speeds) = all.get(&frame) else { continue };
            let (Some(numerator), Some(denominator)) = (speeds.get(target.numerator), speeds.get(target.denominator))
            else {
                continue;
            };
            let ratios: Vec<f64> = numerator.iter().zip(denominator).map(|(n, d)| n / d).collect();
            let (lo, hi) = range(&ratios);
            let ratio = median(&ratios);
            let (goal, met) = match min {
                Some(min) => (format!(">= {min:.2}"), if ratio >= min { "yes" } else { "**no**" }),
                None => ("-".to_string(), "-"),
            };
            println!(
                "| {} | {} | {ratio:.2} [{lo:.2}, {hi:.2}] | {goal} | {met} |",
                target.what,
                size_label(frame)
            );
        }
    }
}
