#!/usr/bin/env bash
# TPC-DS's 99 queries against weft, as an outside measure of how much
# analytic SQL it takes over: on a throwaway Postgres 15 cluster with weft
# preloaded, each query is EXPLAINed under weft.force (is it taken, and if
# not, weft's stated reason) and run twice, stock (weft.enable = off) and
# under weft.force; the two answers are compared as sorted multisets of
# text rows. Nothing here times weft against Postgres seriously (one run
# each, cold plans, a shared machine); the times are there to spot outliers.
#
# Data and query texts come from DuckDB's tpcds extension, installed from
# PyPI (pinned) into a venv; the data is generated once per scale factor
# into target/tpcds/sf<SF>/ and reused. The queries are translated to
# Postgres's dialect where needed (tpcds.py, DIALECT_EDITS; the report
# lists them). The installed weft is used as it is: nothing is built.
#
# Usage: scripts/tpcds/run.sh [query numbers...]     (default: all 99)
#
# Environment:
#   TPCDS_SF=1          scale factor (SF1: about 20 s to generate, 1.2 GB CSV)
#   TPCDS_TIMEOUT=60    statement_timeout of each run, seconds
#   TPCDS_WORKERS=2     max_parallel_workers_per_gather and weft.workers
#   TPCDS_LOCALE=C      the cluster's locale (weft leaves sorts of text
#                       under a non-C collation to Postgres unless forced)
#   TPCDS_KEEP=1        keep the cluster's temporary directory (stopped)
#   TPCDS_OUT=DIR       where the report and out/ go (default target/tpcds):
#                       a run of a few queries, or with a longer timeout,
#                       then leaves the full run's report alone
#   WEFT_PG_BINDIR      Postgres binaries (default /usr/lib/postgresql/15/bin)
#
# Output: target/tpcds/report.txt, and per query in target/tpcds/out/ the
# EXPLAIN under weft.force (NN.explain) and both sides' sorted rows
# (NN.stock, NN.weft); the texts run are in target/tpcds/queries/, the
# server's log in target/tpcds/server.log (TPCDS_OUT moves all but the
# texts).
#
# Postgres refuses to run as root: as root the server runs as the
# `postgres` OS user in a temporary directory it owns; psql, a client,
# runs as the caller.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BINDIR=${WEFT_PG_BINDIR:-/usr/lib/postgresql/15/bin}
SF=${TPCDS_SF:-1}
TIMEOUT=${TPCDS_TIMEOUT:-60}
WORKERS=${TPCDS_WORKERS:-2}
LOCALE=${TPCDS_LOCALE:-C}
# A port of our own, apart from the test harness's and make regress's; the
# server listens only on a Unix socket, so it only names the socket file.
PORT=5477
base=$root/target/tpcds
venv=$base/venv
cache=$base/sf$SF
report_dir=$(realpath -m "${TPCDS_OUT:-$base}")
out=$report_dir/out
# Pinned: the extension wheel's binary is built for exactly this duckdb.
DUCKDB_VERSION=1.5.5
TPCDS_EXT_VERSION=1.5.5

say() { echo "tpcds: $*" >&2; }
mkdir -p "$base" "$report_dir"

# --- venv with duckdb and its tpcds extension ---------------------------------------
if ! "$venv/bin/python" - <<EOF 2>/dev/null; then
import duckdb, duckdb_extension_tpcds, importlib.metadata as m
assert duckdb.__version__ == "$DUCKDB_VERSION"
assert m.version("duckdb-extension-tpcds") == "$TPCDS_EXT_VERSION"
EOF
    say "creating $venv (duckdb $DUCKDB_VERSION, duckdb-extension-tpcds $TPCDS_EXT_VERSION from PyPI)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check \
        "duckdb==$DUCKDB_VERSION" "duckdb-extension-tpcds==$TPCDS_EXT_VERSION"
fi

# --- data, once per scale factor -----------------------------------------------------
t0=$SECONDS
"$venv/bin/python" "$here/tpcds.py" gen "$SF" "$cache"
gen_s=$((SECONDS - t0))
rm -rf "$base/queries"
"$venv/bin/python" "$here/tpcds.py" queries "$cache/queries" "$base/queries"

# --- a throwaway cluster -----------------------------------------------------------------
if [ ! -f "$("$BINDIR/pg_config" --pkglibdir)/weft.so" ]; then
    say "weft is not installed in $BINDIR's Postgres"
    exit 1
fi
# as_pg and pg_env: the server's user and a clean environment.
# shellcheck source=../lib/pg-env.sh
. "$here/../lib/pg-env.sh"

tmp=$(mktemp -d /tmp/weft-tpcds.XXXXXX)
chmod 755 "$tmp"
cleanup() {
    if [ -f "$tmp/data/postmaster.pid" ]; then
        (cd "$tmp" && as_pg "${pg_env[@]}" "$BINDIR/pg_ctl" -D "$tmp/data" -m fast -w -t 60 stop >/dev/null 2>&1) ||
            (cd "$tmp" && as_pg "${pg_env[@]}" "$BINDIR/pg_ctl" -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1) || true
    fi
    # The server log is worth keeping: weft's panics and crashes land there.
    [ -f "$tmp/server.log" ] && cp "$tmp/server.log" "$report_dir/server.log"
    if [ "${TPCDS_KEEP:-}" = 1 ]; then
        say "kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$tmp/sock"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$tmp"; fi
cd "$tmp"
as_pg "${pg_env[@]}" "$BINDIR/initdb" -D "$tmp/data" -U postgres --auth=trust -E UTF8 --locale="$LOCALE" \
    --no-sync >"$tmp/initdb.log" 2>&1 || {
    cat "$tmp/initdb.log" >&2
    exit 1
}
# As benches/README.md's TPC-H conditions (shared_buffers, work_mem, jit);
# autovacuum off so that no ANALYZE lands between the two runs of a query
# and changes its plan; fsync off and a large max_wal_size for the load.
cat >>"$tmp/data/postgresql.conf" <<CONF

# Added by scripts/tpcds/run.sh.
listen_addresses = ''
unix_socket_directories = '$tmp/sock'
port = $PORT
shared_preload_libraries = 'weft'
shared_buffers = 4GB
work_mem = 256MB
jit = off
max_worker_processes = 16
max_parallel_workers = 16
max_parallel_workers_per_gather = $WORKERS
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
max_wal_size = 8GB
autovacuum = off
logging_collector = off
log_line_prefix = '%m [%p] %a: '
CONF
as_pg "${pg_env[@]}" "$BINDIR/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -t 60 start >/dev/null || {
    tail -40 "$tmp/server.log" >&2
    exit 1
}
say "cluster up in $tmp (port $PORT)"

export PGHOST=$tmp/sock PGPORT=$PORT PGUSER=postgres
unset PGHOSTADDR PGDATABASE PGOPTIONS PGSERVICE PGPASSWORD
psql_db() { "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d tpcds "$@"; }
"$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE tpcds"
psql_db -c "CREATE EXTENSION weft" -c "CREATE EXTENSION pg_prewarm" -f "$cache/schema.sql"

# --- load -------------------------------------------------------------------------------------
# Two tables at a time (two cores), largest first. TRUNCATE in the COPY's
# transaction lets COPY FREEZE write the rows frozen and all-visible (and,
# with wal_level minimal, skip WAL), so no VACUUM has to rewrite them.
t0=$SECONDS
say "loading SF $SF"
export BINDIR cache
ls -S "$cache/data" | sed 's/\.csv$//' | xargs -P 2 -I{} sh -c \
    '"$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d tpcds -c "BEGIN" -c "TRUNCATE {}" \
        -c "\\copy {} FROM '\''$cache/data/{}.csv'\'' WITH (FORMAT csv, DELIMITER '\''|'\'', FREEZE)" -c "COMMIT"'
grep -v '^$' "$cache/keys.sql" | xargs -P 2 -d '\n' -I{} "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d tpcds -c {}
psql_db -c "VACUUM (ANALYZE)"
# Warm: both sides read from shared buffers, so neither pays for the
# other's first read.
psql_db -At -c "SELECT pg_size_pretty(sum(pg_prewarm(c.oid::regclass) * current_setting('block_size')::bigint))
    FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'i')" |
    sed 's/^/tpcds: prewarmed /' >&2
load_s=$((SECONDS - t0))
say "loaded in ${load_s} s"

# --- the queries ---------------------------------------------------------------------------------
rm -rf "$out"
mkdir -p "$out"
weft_so=$("$BINDIR/pg_config" --pkglibdir)/weft.so
{
    echo "# TPC-DS SF $SF, $(date -u '+%Y-%m-%d %H:%M UTC'); locale $LOCALE; statement_timeout ${TIMEOUT}s"
    # Which weft build answered: the installed one, not necessarily the work tree's.
    echo "# weft.so $(date -u -r "$weft_so" '+%Y-%m-%d %H:%M UTC') md5 $(md5sum "$weft_so" | cut -c1-12);" \
        "work tree $(git -C "$root" rev-parse --short HEAD)"
    echo "# data and queries: duckdb $DUCKDB_VERSION + duckdb-extension-tpcds $TPCDS_EXT_VERSION (PyPI)"
} >"$report_dir/report.head"
cat "$report_dir/report.head"
t0=$SECONDS
"$venv/bin/python" "$here/tpcds.py" run --bindir "$BINDIR" --host "$tmp/sock" --port "$PORT" \
    --sql "$base/queries" --out "$out" --report "$report_dir/report.body" \
    --timeout "$TIMEOUT" --workers "$WORKERS" "$@"
query_s=$((SECONDS - t0))
timings="timings: data generation ${gen_s} s$([ "$gen_s" -lt 5 ] && echo ' (cached)'), load ${load_s} s, queries ${query_s} s"
echo "$timings"
{
    cat "$report_dir/report.head" "$report_dir/report.body"
    echo "$timings"
} >"$report_dir/report.txt"
rm -f "$report_dir/report.head" "$report_dir/report.body"
say "report: $report_dir/report.txt"
