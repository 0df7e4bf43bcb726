# weft: the README's two commands, and the pieces they are made of.
#
#   make demo   build and run what works today (see README)
#   make test   every test: the command CI runs (.ci/run)

SHELL := /bin/bash
CARGO ?= cargo
# Bound on loom's preemptions per execution: 4 keeps every model in loom-tests/
# short enough for `make test` on 2 cores; a higher bound explores more
# interleavings and takes much longer (see loom-tests/README.md).
LOOM_MAX_PREEMPTIONS ?= 4
export LOOM_MAX_PREEMPTIONS

.PHONY: demo test setup fmt-check layers clippy unit doc loom benches-build no-std regress bench bench-pg bench-sql bench-reporting bench-dashboard bench-concurrency

# One release build serves the whole demo: the workspace with both examples,
# and weft with the features cargo-pgrx passes, so that the install inside
# the demo (the harness's UNIFY_FLAGS) finds everything built and DataFusion
# compiles once. The binaries run directly: `cargo run -p` would resolve
# features again. The Postgres part installs weft (release) into the
# system's PostgreSQL 15 and runs it in a throwaway cluster
# (pgext/examples/demo.rs); the in-memory part runs TPC-H on the runtime
# alone (runtime/examples/tpch_demo.rs).
DEMO_BUILD := --workspace --lib --example demo --example tpch_demo --no-default-features --features pg15
TARGET_DIR = $(or $(CARGO_TARGET_DIR),target)
demo: setup
	$(CARGO) build --release $(DEMO_BUILD)
	WEFT_PG_PROFILE=release $(TARGET_DIR)/release/examples/demo
	$(TARGET_DIR)/release/examples/tpch_demo

# nextest and then the regression-suite comparison run last, so that their
# summaries close the output.
test: setup fmt-check layers clippy no-std loom doc unit regress

setup:
	@scripts/setup.sh

fmt-check:
	$(CARGO) fmt --all --check

# The layering of the crates and of pgext's and the runtime's folders
# (a lower layer never uses a higher one), stated and checked in one place.
layers:
	python3 scripts/check-layers.py

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Unit, property, corruption and cross-process tests.
unit:
	$(CARGO) nextest run --workspace --no-fail-fast

# Postgres 15's own regression tests (a SELECT-heavy set of src/test/regress)
# run twice through pg_regress on a throwaway cluster, weft off and
# weft.force=on, compared statement by statement: a different answer or error
# fails (scripts/regress/run.sh; the suite is fetched once with apt-get source
# and cached), in a cluster of locale C, then of en_US.UTF-8 (libc), then of
# ICU's en-US, where text sorts and compares under those collations. The first
# run installs weft as the tests do (WEFT_PG_SKIP_INSTALL=1 takes the installed
# one); `scripts/regress/run.sh --stock` checks the comparison alone, weft not
# loaded.
regress: setup
	scripts/regress/run.sh
	WEFT_PG_SKIP_INSTALL=1 WEFT_REGRESS_LOCALE=en_US.UTF-8 scripts/regress/run.sh
	WEFT_PG_SKIP_INSTALL=1 WEFT_REGRESS_LOCALE=icu:en-US scripts/regress/run.sh

# The examples in the documentation (nextest does not run doctests). The
# whole workspace, so that it shares nextest's build of DataFusion (a build
# of two crates alone unifies features differently and costs another one);
# the no-std check and the loom models have no doc examples to run.
doc:
	$(CARGO) test --workspace --doc --exclude weft-no-std-check --exclude weft-loom-tests

# The loom models, built with --cfg loom into their own target directory so
# that the normal build is not invalidated.
loom:
	RUSTFLAGS="--cfg loom" $(CARGO) test -p weft-loom-tests --release --target-dir target/loom --tests

# Not part of `make test`: clippy --all-targets already compiles the
# benchmarks, and a release build of them is a long build of its own.
# Only the benchmark crate: --workspace would also build the extension in
# release.
benches-build:
	$(CARGO) bench -p weft-benches --no-run

# weft-core must not need std: link it into a #![no_std] static library that
# brings its own panic handler. Any std in its dependency tree would clash
# with that handler (duplicate lang item `panic_impl`) and fail the build.
no-std:
	$(CARGO) rustc -p weft-no-std-check --release --crate-type staticlib -- -C panic=abort
	@echo "weft-core dependency tree:"; $(CARGO) tree -p weft-core -e normal --prefix none

bench:
	$(CARGO) bench -p weft-benches

# TPC-H through weft.query against stock Postgres in a throwaway cluster
# (pgext/benches/tpch_pg.rs; WEFT_BENCH_SF, _WORKERS, _REPS, _QUERIES).
bench-pg: setup
	WEFT_PG_PROFILE=release $(CARGO) bench -p weft --bench tpch_pg

# TPC-H in plain SQL, weft on against weft off (pgext/benches/tpch_sql.rs).
bench-sql: setup
	WEFT_PG_PROFILE=release $(CARGO) bench -p weft --bench tpch_sql

bench-reporting: setup
	WEFT_BENCH_SET=reporting WEFT_PG_PROFILE=release $(CARGO) bench -p weft --bench tpch_sql

# Five TPC-H queries with parameters, 20 executions each, through psycopg 3,
# prepared and as plain text, weft on against off.
bench-dashboard: setup
	WEFT_PG_PROFILE=release $(CARGO) bench -p weft --bench dashboard

# The concurrency test (pgext/tests/concurrency.rs) for minutes instead of
# the 20 seconds `make test` gives it: writers moving money, vacuums and
# index builds under readers comparing weft with stock Postgres in one
# snapshot. WEFT_CONCURRENCY_SECONDS and WEFT_CONCURRENCY_SEED override.
WEFT_CONCURRENCY_SECONDS ?= 300
bench-concurrency: setup
	WEFT_CONCURRENCY_SECONDS=$(WEFT_CONCURRENCY_SECONDS) $(CARGO) nextest run -p weft --test concurrency --no-capture
