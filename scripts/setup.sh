#!/usr/bin/env bash
# Idempotent set-up for `make demo` and `make test` on a fresh machine.
# Today weft needs only the Rust toolchain (1.95 stable, with rustfmt and
# clippy) and cargo-nextest; the Postgres pieces (apt packages, cargo-pgrx,
# pgrx init) join here with the extension.
set -euo pipefail

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
    echo "setup: cargo not found; install Rust 1.95 stable (rustup) first" >&2
    exit 1
fi
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    if need rustup; then
        rustup component add rustfmt clippy
    else
        echo "setup: cargo fmt / cargo clippy missing and no rustup to add them" >&2
        exit 1
    fi
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "setup: installing cargo-nextest from crates.io"
    cargo install cargo-nextest --locked
fi
