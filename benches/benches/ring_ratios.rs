//! weft's ring against its targets, measured side by side in one run.
//!
//! Every subject of the `ring` bench moves the same bytes, round after
//! round, in an order that rotates each round, so that a noisy neighbour
//! slows all of them alike. Ratios are taken within a round (weft's run
//! against rtrb's run of the same round) and their median is reported.
//!
//! On the development VM, one instance of any transport runs at one of two
//! speeds and keeps it for its lifetime, whichever transport it is: the
//! luck of its memory (benches/README.md, 'Conditions'). So the
//! rounds are spread over several *epochs*, each with freshly built
//! transports, and pooled.
//!
//! Environment: `WEFT_RATIO_EPOCHS` (default 5), `WEFT_RATIO_ROUNDS` (per
//! epoch, default 5), `WEFT_RATIO_MIB` (MiB per run, default 32);
//! `WEFT_RATIO_ONLY=weft,rtrb` and `WEFT_RATIO_SIZES=64,4096` restrict the
//! subjects and frame sizes (for profiling one); `WEFT_RATIO_CSV=path`
//! appends every run (`frame,subject,epoch,round,gbps`) to `path`. Without
//! `--bench` (as under `cargo test --benches`) it makes one short round, as a
//! smoke test.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

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
        what: "weft cross-process / cross-thread",
        numerator: "weft_xproc",
        denominator: "weft",
        min: [(64, Some(0.9)), (4096, Some(0.9)), (65536, Some(0.9))],
    },
    Target {
        what: "weft cross-process / cross-thread, same shm and handshake",
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

/// GB/s (10^9 bytes per second) per frame size and subject, one value per
/// round, in the same order for every subject (so the i-th values of two
/// subjects come from the same round).
#[derive(Default)]
struct Speeds {
    by_frame: BTreeMap<usize, BTreeMap<&'static str, Vec<f64>>>,
    /// Subjects in the order `with_transports` lists them.
    names: Vec<&'static str>,
}

struct Config {
    epochs: u64,
    rounds: u64,
    bytes: u64,
    only: Option<Vec<String>>,
    sizes: Vec<usize>,
}

impl Config {
    fn from_env() -> Config {
        let bench = std::env::args().any(|a| a == "--bench");
        let number = |name: &str, default: u64, smoke: u64| -> u64 {
            match std::env::var(name) {
                Ok(v) if bench => v
                    .parse()
                    .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}")),
                _ if bench => default,
                _ => smoke,
            }
        };
        let list = |name: &str| -> Option<Vec<String>> {
            let value = std::env::var(name).ok()?;
            Some(value.split(',').map(|s| s.trim().to_string()).collect())
        };
        let sizes = match list("WEFT_RATIO_SIZES") {
            Some(sizes) => sizes
                .iter()
                .map(|s| s.parse().expect("WEFT_RATIO_SIZES: bytes"))
                .collect(),
            None => FRAME_SIZES.to_vec(),
        };
        Config {
            epochs: number("WEFT_RATIO_EPOCHS", 5, 1).max(1),
            rounds: number("WEFT_RATIO_ROUNDS", 5, 1).max(1),
            bytes: number("WEFT_RATIO_MIB", 32, 4).max(1) << 20,
            only: list("WEFT_RATIO_ONLY"),
            sizes,
        }
    }
}

/// One epoch at one frame size: fresh transports, `rounds` interleaved
/// runs of each; appends to `speeds` (and `csv`).
fn epoch(config: &Config, epoch: u64, frame: usize, speeds: &mut Speeds, csv: &mut Option<std::fs::File>) {
    let frames = config.bytes / frame as u64;
    with_transports(frame, |all| {
        let mut entries: Vec<_> = all
            .iter_mut()
            .filter(|e| config.only.as_ref().is_none_or(|only| only.iter().any(|o| o == e.name)))
            .collect();
        let n = entries.len();
        if speeds.names.is_empty() {
            speeds.names = entries.iter().map(|e| e.name).collect();
        }
        for round in 0..config.rounds as usize {
            for k in 0..n {
                let entry = &mut entries[(k + round) % n];
                let gbps = (frames * frame as u64) as f64 / entry.run.run(frames).as_secs_f64() / 1e9;
                speeds
                    .by_frame
                    .entry(frame)
                    .or_default()
                    .entry(entry.name)
                    .or_default()
                    .push(gbps);
                if let Some(csv) = csv {
                    writeln!(csv, "{frame},{},{epoch},{round},{gbps:.4}", entry.name).expect("write WEFT_RATIO_CSV");
                }
            }
        }
    });
}

/// The `q`-quantile (0..=1) of `values`, linearly interpolated.
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}

/// "median (q1–q3)".
fn summary(values: &[f64]) -> String {
    format!(
        "{:.2} ({:.2}–{:.2})",
        quantile(values, 0.5),
        quantile(values, 0.25),
        quantile(values, 0.75)
    )
}

/// CPU time in clock ticks, from /proc (Linux only): of the whole machine
/// (busy, and stolen by the hypervisor) and of this process with the
/// children it waited for.
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
        let [user, nice, system, _idle, _iowait, irq, softirq, steal, ..] = cpu[..] else {
            return None;
        };
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // After the command name: utime, stime, cutime, cstime are the 12th
        // to 15th fields.
        let own: u64 = own
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .skip(11)
            .take(4)
            .map_while(|v| v.parse::<u64>().ok())
            .sum();
        Some(CpuTicks {
            busy: user + nice + system + irq + softirq,
            steal,
            own,
        })
    }

    /// How much CPU others took while we ran for `wall` seconds.
    fn describe(before: CpuTicks, after: CpuTicks, wall: f64) -> String {
        // USER_HZ is 100 on every Linux architecture Rust supports, so a
        // tick per second is 1% of a CPU.
        let percent = |ticks: u64| ticks as f64 / wall;
        let other = (after.busy - before.busy).saturating_sub(after.own - before.own);
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
    let config = Config::from_env();
    println!(
        "{} epochs x {} interleaved rounds of {} MiB per subject and frame size; GB/s = 10^9 B/s, median (quartiles)\n",
        config.epochs,
        config.rounds,
        config.bytes >> 20
    );
    let mut csv = std::env::var_os("WEFT_RATIO_CSV").map(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open WEFT_RATIO_CSV")
    });

    let (started, ticks) = (Instant::now(), CpuTicks::now());
    let mut speeds = Speeds::default();
    for e in 0..config.epochs {
        for &frame in &config.sizes {
            epoch(&config, e, frame, &mut speeds, &mut csv);
        }
    }
    let load = ticks
        .zip(CpuTicks::now())
        .map(|(before, after)| CpuTicks::describe(before, after, started.elapsed().as_secs_f64()));

    print!("| subject |");
    for frame in speeds.by_frame.keys() {
        print!(" {} |", size_label(*frame));
    }
    println!("\n|---|{}", "---:|".repeat(speeds.by_frame.len()));
    for name in &speeds.names {
        print!("| {name} |");
        for by_name in speeds.by_frame.values() {
            print!(" {} |", by_name.get(name).map_or("-".to_string(), |v| summary(v)));
        }
        println!();
    }
    if let Some(load) = load {
        println!("\n{load}");
    }

    println!("\n| ratio | frame | median of per-round ratios (quartiles) | target | met |");
    println!("|---|---|---:|---:|---|");
    for target in &TARGETS {
        for (frame, min) in target.min {
            let Some(by_name) = speeds.by_frame.get(&frame) else {
                continue;
            };
            let (Some(num), Some(den)) = (by_name.get(target.numerator), by_name.get(target.denominator)) else {
                continue;
            };
            let ratios: Vec<f64> = num.iter().zip(den).map(|(n, d)| n / d).collect();
            let (goal, met) = match min {
                Some(min) => (
                    format!(">= {min:.2}"),
                    if quantile(&ratios, 0.5) >= min { "yes" } else { "**no**" },
                ),
                None => ("-".to_string(), "-"),
            };
            println!(
                "| {} | {} | {} | {goal} | {met} |",
                target.what,
                size_label(frame),
                summary(&ratios)
            );
        }
    }
}
