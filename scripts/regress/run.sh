#!/usr/bin/env bash
# `make regress`: Postgres 15's own regression tests (the SELECT-heavy set in
# scripts/regress/schedule) run through pg_regress twice on one throwaway
# cluster with weft preloaded: once with weft.enable=off (stock), once with
# weft.force=on (weft takes over every query it can translate). The two
# runs' outputs are compared statement by statement (compare.py): a
# different answer or error fails; EXPLAIN-only differences and different
# row order for statements without ORDER BY are listed apart and do not.
# Upstream's expected/*.out play no part (they assume other settings).
#
# Usage: scripts/regress/run.sh [--stock] [--count]
#   --stock  both runs stock, without weft loaded at all: checks that the
#            comparison itself is deterministic (must report 0 differences);
#            needs no weft build.
#   --count  then a third run, weft.force=on again with auto_explain logging
#            every plan, to count per test how many of the plans executed
#            were weft's (Custom Scan (Weft); auto_explain logs only
#            statements that finished, so not those that failed); its
#            output is not compared
#            (auto_explain runs weft's EXPLAIN callback after each query,
#            which the compared run must not depend on). Takes about as long
#            as the weft run again.
#
# Environment:
#   WEFT_PG_SKIP_INSTALL=1  use the installed weft as it is; otherwise weft
#                           is built and installed first, as the test
#                           harness does (cargo pgrx install, profile
#                           $WEFT_PG_PROFILE, default test), so the run
#                           tests the sources at hand.
#   WEFT_PG_BINDIR          Postgres binaries (default /usr/lib/postgresql/15/bin)
#   WEFT_REGRESS_OUT        where results and the report go (default
#                           target/regress): stock/ and weft/ (pg_regress's
#                           output dirs), report.txt, server.log
#   WEFT_REGRESS_CACHE      the suite's cache (see fetch.sh)
#   WEFT_REGRESS_KEEP=1     keep the cluster's temporary directory
#   WEFT_REGRESS_LOCALE     the cluster's locale (default C): with another
#                           (a libc locale such as en_US.UTF-8, or
#                           icu:<locale> for an ICU default collation), text
#                           sorts and compares under that collation in both
#                           runs; results go to target/regress-<locale>
#                           unless WEFT_REGRESS_OUT says otherwise
#
# Postgres refuses to run as root: as root (CI) every Postgres program runs
# as the `postgres` OS user, in a temporary directory that user owns.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BINDIR=${WEFT_PG_BINDIR:-/usr/lib/postgresql/15/bin}
PG_CONFIG=$BINDIR/pg_config
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
SHAREDIR=$("$PG_CONFIG" --sharedir)
PG_REGRESS=$("$PG_CONFIG" --pgxs | sed 's|/src/makefiles/pgxs.mk$||')/src/test/regress/pg_regress
LOCALE=${WEFT_REGRESS_LOCALE:-C}
initdb_locale=(--locale="$LOCALE")
if [ "$LOCALE" = C ]; then
    OUT=${WEFT_REGRESS_OUT:-$root/target/regress}
    locale_args=(--no-locale)
else
    OUT=${WEFT_REGRESS_OUT:-$root/target/regress-${LOCALE/:/-}}
    # pg_regress then creates its database with the cluster's locale.
    locale_args=()
    if [[ "$LOCALE" == icu:* ]]; then
        initdb_locale=(--locale=C --locale-provider=icu --icu-locale="${LOCALE#icu:}")
    fi
fi
# A port of our own: the server listens only on a Unix socket in its own
# directory, so the port only names the socket file; distinct from the test
# harness's 5432 to keep the two apart in `ps` and logs.
PORT=55432

mode=weft
count=
for arg in "$@"; do
    case "$arg" in
        --stock) mode=stock ;;
        --count) count=1 ;;
        *) echo "usage: $0 [--stock] [--count]" >&2; exit 2 ;;
    esac
done

say() { echo "regress: $*" >&2; }
started=$SECONDS

if [ ! -x "$PG_REGRESS" ]; then
    say "pg_regress not found at $PG_REGRESS (package postgresql-server-dev-15)"
    exit 1
fi

# --- the suite, fetched once ------------------------------------------------
cache=$("$here/fetch.sh")
say "suite: postgresql-15 $(cat "$cache/regress/VERSION") (cache $cache)"

# --- weft ----------------------------------------------------------------------
if [ "$mode" = weft ]; then
    if [ "${WEFT_PG_SKIP_INSTALL:-}" != 1 ]; then
        # As weft-pg-harness's install(): the test profile by default (it
        # reuses `make unit`'s build), handed to the inner cargo build
        # because cargo-pgrx 0.18 cannot take --profile test itself.
        say "installing weft (cargo pgrx install; WEFT_PG_SKIP_INSTALL=1 skips this)"
        profile=${WEFT_PG_PROFILE:-test}
        install=(cargo pgrx install --pg-config "$PG_CONFIG" -p weft)
        # As the harness's UNIFY_FLAGS: features resolved as the workspace's test build resolves
        # them, so that its DataFusion serves this build too.
        export PGRX_BUILD_FLAGS="${PGRX_BUILD_FLAGS:+$PGRX_BUILD_FLAGS }--workspace --example tpch_demo"
        case "$profile" in
            test) PGRX_BUILD_FLAGS+=" --profile test" ;;
            dev | debug) ;;
            release) install+=(--release) ;;
            *) install+=(--profile "$profile") ;;
        esac
        mkdir -p "$root/target"
        (cd "$root" && "${install[@]}") >"$root/target/regress-install.log" 2>&1 || {
            tail -40 "$root/target/regress-install.log" >&2
            say "installing weft failed (log: target/regress-install.log)"
            exit 1
        }
    fi
    if [ ! -f "$PKGLIBDIR/weft.so" ] || [ ! -f "$SHAREDIR/extension/weft.control" ]; then
        say "weft is not installed ($PKGLIBDIR/weft.so, $SHAREDIR/extension/weft.control)"
        exit 1
    fi
fi

# --- a throwaway cluster --------------------------------------------------------
# as_pg and pg_env: the server's user and a clean environment.
# shellcheck source=../lib/pg-env.sh
. "$here/../lib/pg-env.sh"

tmp=$(mktemp -d /tmp/weft-regress.XXXXXX)
chmod 755 "$tmp"
cleanup() {
    if [ -f "$tmp/data/postmaster.pid" ]; then
        (cd "$tmp" && as_pg "${pg_env[@]}" "$BINDIR/pg_ctl" -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1) || true
    fi
    if [ "${WEFT_REGRESS_KEEP:-}" = 1 ]; then
        say "kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The suite and its libraries, copied in where the postgres user can read
# them (the cache may be under /root). --dlpath is where the tests load
# regress.so, refint.so and autoinc.so from.
mkdir -p "$tmp/suite" "$tmp/lib" "$tmp/sock"
cp -r "$cache/regress/sql" "$cache/regress/expected" "$cache/regress/data" "$tmp/suite/"
[ -f "$cache/regress/resultmap" ] && cp "$cache/regress/resultmap" "$tmp/suite/"
cp "$here/schedule" "$tmp/suite/schedule"
cp "$cache"/lib/*.so "$tmp/lib/"
if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres:postgres "$tmp"
fi

# The harness's initdb (pgext/harness/src/lib.rs): UTF8 (weft needs it), C
# locale or WEFT_REGRESS_LOCALE (pg_regress's --no-locale, or the cluster's
# locale: the same collation in both runs).
cd "$tmp"
as_pg "${pg_env[@]}" "$BINDIR/initdb" -D "$tmp/data" -U postgres --auth=trust -E UTF8 "${initdb_locale[@]}" --no-sync >"$tmp/initdb.log" 2>&1 || {
    cat "$tmp/initdb.log" >&2
    exit 1
}
# weft acts once preloaded: _PG_init installs its planner hook, and taking a
# query over needs none of the extension's SQL objects, so the test
# database has no CREATE EXTENSION weft (pgext/src/lib.rs, planner.rs).
if [ "$mode" = weft ]; then preload=weft; else preload=; fi
# The harness's settings, and for repeatable runs: no autovacuum (an
# ANALYZE landing between statements in one run and not the other would
# change plans, and so row orders and EXPLAINs, for reasons that are not
# weft's). statement_timeout: no statement of this suite takes a second
# stock, so a statement that hangs (a lost wakeup between weft's
# participants) becomes an error the comparison reports, not a target that
# never ends.
cat >>"$tmp/data/postgresql.conf" <<CONF

# Added by scripts/regress/run.sh (the settings of weft-pg-harness).
listen_addresses = ''
unix_socket_directories = '$tmp/sock'
port = $PORT
shared_preload_libraries = '$preload'
max_worker_processes = 16
max_parallel_workers = 16
max_parallel_workers_per_gather = 4
fsync = off
logging_collector = off
autovacuum = off
log_line_prefix = '%m [%p] %a: '
statement_timeout = '120s'
CONF
as_pg "${pg_env[@]}" "$BINDIR/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w start >/dev/null || {
    tail -40 "$tmp/server.log" >&2
    exit 1
}
say "cluster up in $tmp (preload: '${preload}')"

# --- the two runs ------------------------------------------------------------------
# One database name for both (outputs may print it); pg_regress drops and
# recreates it. The run's GUCs come in through PGOPTIONS, which libpq sends
# at every connection (also the tests' own \c reconnects), so they hold in
# every session and RESET ALL returns to them.
run_suite() { # name, PGOPTIONS
    local name=$1 options=$2 t0=$SECONDS
    say "run '$name' (PGOPTIONS='$options')"
    # pg_regress's exit code reports differences from upstream's
    # expected/*.out, which do not concern us: ignored. What it could not
    # run at all shows as missing result files, which compare.py reports.
    # timeout: the last resort, should a statement not heed its cancel.
    as_pg "${pg_env[@]}" PGOPTIONS="$options" timeout 1200 "$PG_REGRESS" \
        --bindir="$BINDIR" --inputdir="$tmp/suite" --outputdir="$tmp/$name" \
        --dlpath="$tmp/lib" --schedule="$tmp/suite/schedule" \
        --host="$tmp/sock" --port=$PORT --user=postgres --dbname=regression \
        --encoding=UTF8 ${locale_args[@]+"${locale_args[@]}"} >"$tmp/$name.log" 2>&1 || true
    echo $((SECONDS - t0)) >"$tmp/$name.seconds"
    say "run '$name': $(cat "$tmp/$name.seconds") s; vs upstream's expected output: $(grep -Eo '(All )?[0-9]+ (of [0-9]+ )?tests (failed|passed)' "$tmp/$name.log" | head -1 || echo "see $name.log")"
}
if [ "$mode" = weft ]; then
    run_suite stock "-c weft.enable=off"
    run_suite weft "-c weft.force=on"
else
    run_suite stock ""
    run_suite weft ""
fi
if [ -n "$count" ]; then
    # auto_explain in every new session from here on (a reload is enough:
    # pg_regress starts a psql per test); nested statements too, so that
    # queries inside PL/pgSQL functions count.
    log_offset=$(stat -c %s "$tmp/server.log")
    # (LOAD first: ALTER SYSTEM takes only settings it knows.)
    as_pg "${pg_env[@]}" "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$tmp/sock" -p $PORT -U postgres -d postgres \
        -c "LOAD 'auto_explain'" \
        -c "ALTER SYSTEM SET session_preload_libraries = 'auto_explain'" \
        -c "ALTER SYSTEM SET auto_explain.log_min_duration = 0" \
        -c "ALTER SYSTEM SET auto_explain.log_nested_statements = on" \
        -c "SELECT pg_reload_conf()" >/dev/null
    if [ "$mode" = weft ]; then
        run_suite count "-c weft.force=on"
    else
        run_suite count ""
    fi
fi

# --- compare ------------------------------------------------------------------
rm -rf "$OUT"
mkdir -p "$OUT"
for name in stock weft; do
    mkdir -p "$OUT/$name"
    cp -r "$tmp/$name/results" "$OUT/$name/" 2>/dev/null || true
    cp "$tmp/$name.log" "$OUT/$name/pg_regress.log"
    [ -f "$tmp/$name/regression.diffs" ] && cp "$tmp/$name/regression.diffs" "$OUT/$name/"
done
# Stop the server before reading its log, so that it is complete.
as_pg "${pg_env[@]}" "$BINDIR/pg_ctl" -D "$tmp/data" -m fast -w stop >/dev/null || true
cp "$tmp/server.log" "$OUT/server.log"
count_args=()
if [ -n "$count" ]; then
    tail -c +$((log_offset + 1)) "$tmp/server.log" >"$OUT/count.log"
    count_args=(--plans-log "$OUT/count.log")
fi

status=0
python3 "$here/compare.py" \
    --sql "$cache/regress/sql" --schedule "$here/schedule" \
    --known "$here/known-differences" \
    --label "$([ "$mode" = weft ] && echo "weft.enable=off against weft.force=on" || echo "--stock: stock against stock, weft not loaded"), postgresql-15 $(cat "$cache/regress/VERSION") regression suite, locale $LOCALE" \
    --timing "stock run $(cat "$tmp/stock.seconds") s, weft run $(cat "$tmp/weft.seconds") s,${count:+ count run $(cat "$tmp/count.seconds") s,} whole target $((SECONDS - started)) s" \
    --server-log "$OUT/server.log" "${count_args[@]}" \
    --expected-diffs "$OUT/stock/regression.diffs" \
    --report "$OUT/report.txt" \
    "$OUT/stock/results" "$OUT/weft/results" || status=$?
say "report: $OUT/report.txt; outputs: $OUT/stock/results, $OUT/weft/results"
exit $status
