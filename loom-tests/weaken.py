#!/usr/bin/env python3
"""Checks that each loom model can fail: weakens one ordering (or check) in
weft-core, runs the model that guards it, and restores the file.

    python3 loom-tests/weaken.py            # every experiment
    python3 loom-tests/weaken.py fence      # those whose name contains "fence"

Each experiment must FAIL; one that passes means its model no longer covers
the ordering it was written for. Run from the repository root. The source
file is restored even if the run is interrupted (try/finally).
"""

import os
import re
import subprocess
import sys

# (name, file, original text, weakened text, loom test to run)
EXPERIMENTS = [
    ("commit store Relaxed", "core/src/ring/producer.rs",
     ".store(producer.write, Ordering::Release);", ".store(producer.write, Ordering::Relaxed);",
     "fifo_across_wrap_and_padding"),
    ("release store Relaxed", "core/src/ring/consumer.rs",
     ".store(consumer.read, Ordering::Release);", ".store(consumer.read, Ordering::Relaxed);",
     "fifo_across_wrap_and_padding"),
    ("release store Relaxed (fragments)", "core/src/ring/consumer.rs",
     ".store(consumer.read, Ordering::Release);", ".store(consumer.read, Ordering::Relaxed);",
     "fragments_reassemble_in_order"),
    ("close store Relaxed", "core/src/ring/mod.rs",
     "state.store(side::CLOSED, Ordering::Release);", "state.store(side::CLOSED, Ordering::Relaxed);",
     "producer_close_delivers_everything_first"),
    ("consumer loads close Relaxed", "core/src/ring/consumer.rs",
     "if !Ring::is_closed(header.control.producer_state.load(Ordering::Acquire))? {",
     "if !Ring::is_closed(header.control.producer_state.load(Ordering::Relaxed))? {",
     "producer_close_delivers_everything_first"),
    ("producer ignores consumer close", "core/src/ring/producer.rs",
     "if Ring::is_closed(header.control.consumer_state.load(Ordering::Acquire))? {",
     "if false && Ring::is_closed(header.control.consumer_state.load(Ordering::Acquire))? {",
     "consumer_close_stops_the_producer"),
    ("arm fence removed", "core/src/ring/mod.rs",
     "        own_waiting.store(1, Ordering::Relaxed);\n        fence(Ordering::SeqCst);",
     "        own_waiting.store(1, Ordering::Relaxed);",
     "wake_handshake_loses_no_wakeup"),
    ("check fence removed", "core/src/ring/mod.rs",
     "        fence(Ordering::SeqCst);\n        // Only read, never cleared here",
     "        // Only read, never cleared here",
     "wake_handshake_loses_no_wakeup"),
    ("registration fence removed", "core/src/mesh/slot.rs",
     "            .map_err(|_| LayoutError::Claimed)?;\n        fence(Ordering::SeqCst);",
     "            .map_err(|_| LayoutError::Claimed)?;",
     "registration_barrier"),
    ("error slot stores Relaxed", "core/src/mesh/error_slot.rs",
     "self.state.store(state::WRITTEN, Ordering::Release);\n        self.aborted.store(1, Ordering::Release);",
     "self.state.store(state::WRITTEN, Ordering::Relaxed);\n        self.aborted.store(1, Ordering::Relaxed);",
     "one_writer_wins"),
]

REPORT = re.compile(r"panicked at|deadlock|Causality|left:|right:|test result")


def run(name, path, original, weakened, test):
    source = open(path).read()
    if original not in source:
        return f"=== {name}: original text not found in {path}; update weaken.py", False
    env = dict(os.environ, RUSTFLAGS="--cfg loom",
               LOOM_MAX_PREEMPTIONS=os.environ.get("LOOM_MAX_PREEMPTIONS", "4"))
    try:
        with open(path, "w") as f:
            f.write(source.replace(original, weakened))
        result = subprocess.run(
            ["cargo", "test", "-p", "weft-loom-tests", "--release", "--target-dir", "target/loom", test],
            capture_output=True, text=True, env=env)
    finally:
        with open(path, "w") as f:
            f.write(source)
    lines = [l.strip()[:200] for l in (result.stdout + result.stderr).splitlines() if REPORT.search(l)]
    failed = result.returncode != 0
    verdict = "fails, as it must" if failed else "PASSES: the model does not cover this"
    return "\n    ".join([f"=== {name} -> {verdict}"] + lines[:5]), failed


def main():
    wanted = sys.argv[1:]
    ok = True
    for experiment in EXPERIMENTS:
        if wanted and not any(w in experiment[0] for w in wanted):
            continue
        report, failed = run(*experiment)
        print(report, flush=True)
        ok &= failed
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
