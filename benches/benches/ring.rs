//! Criterion benchmarks of weft's frame ring against other ways of moving
//! the same bytes: rtrb (a byte ring), crossbeam's `ArrayQueue` and bounded
//! channel (fixed-size items), a single-thread memcpy, and weft across two
//! processes. See `README.md` for what each measures and the figures.
//!
//! One criterion iteration is one frame, so the throughput criterion prints
//! is payload bytes per second.

use std::time::Duration;

use criterion::{Criterion, Throughput};

#[path = "../../core/tests/support/mod.rs"]
mod support;

mod common;

fn ring(c: &mut Criterion) {
    for frame in common::FRAME_SIZES {
        common::with_transports(frame, |entries| {
            let mut group = c.benchmark_group(format!("ring_{}", common::size_label(frame)));
            group.throughput(Throughput::Bytes(frame as u64));
            for entry in entries {
                group.bench_function(entry.name, |b| b.iter_custom(|frames| entry.run.run(frames)));
            }
            group.finish();
        });
    }
}

fn main() {
    // The cross-process bench runs this binary again as its consumer.
    if common::peer::serve_if_peer() {
        return;
    }
    // Modest, because the machine has 2 cores shared with builds; the
    // command line can override these (e.g. `--measurement-time 5`).
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    ring(&mut criterion);
    criterion.final_summary();
}
