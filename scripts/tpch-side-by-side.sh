#!/usr/bin/env bash
# TPC-H through weft.query against stock Postgres on a running cluster,
# same data, same session settings, alternating: a quick side-by-side for
# development, on the cluster `cargo run --release -p weft --example
# bench_cluster` leaves running (pass its socket directory). `make bench-pg`
# is the full benchmark; this one skips stock Postgres on the queries it
# does not finish in 300 s (17 and 20) instead of waiting for them.
# With WEFT_SQL=1 weft's side is the plain SQL with weft.enable on (the
# cost gate decides; "taken" says whether the plan is weft's), as `make
# bench-sql` runs it. With SESSION=1 each side's runs of a query share one
# connection, as `make bench-sql`'s do (and a pooled application's):
# the backend then keeps the buffer pool pages it has mapped, and only
# the parallel workers, new processes, map them again (benches/README.md,
# "Conditions"); otherwise each run is a new connection.
#
#   [WEFT_SQL=1] [SESSION=1] scripts/tpch-side-by-side.sh /tmp/weft-pg-XXXX/sock [reps] [queries...]
set -euo pipefail
sock=$1; reps=${2:-2}; shift 2 || shift $#
queries=${*:-$(seq 1 22)}
here=$(cd "$(dirname "$0")/.." && pwd)
export PGHOST=$sock PGUSER=postgres PGPORT=5432
settings="SET max_parallel_workers_per_gather = 1; SET weft.workers = 1; SET weft.enable = off; SET statement_timeout = '300s';"
# Milliseconds of one run of $1 (psql's \timing), or "-" if it failed.
run() {
    psql -X -q -v ON_ERROR_STOP=1 -c "$settings" -c '\timing on' -c "$1" 2>/dev/null |
        sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1 || true
}
# Milliseconds of each of $2 runs of $1, in one connection or each in its own.
runs() {
    if [ "${SESSION:-0}" = 1 ]; then
        local args=()
        for _ in $(seq "$2"); do args+=(-c "$1"); done
        psql -X -q -v ON_ERROR_STOP=1 -c "$settings" -c '\timing on' "${args[@]}" 2>/dev/null |
            sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' || true
    else
        for _ in $(seq "$2"); do run "$1"; done
    fi
}
best() { printf '%s\n' "$@" | grep -v '^$' | sort -g | head -1; }
# Whether the server's shared memory may sit in huge pages: it weighs on
# both sides' times, weft's more (benches/README.md, "Conditions").
echo "# $([ "${SESSION:-0}" = 1 ] && echo "one connection per side and query" || echo "a connection per run")"
echo "# huge_pages = $(psql -X -At -c 'SHOW huge_pages'); $(grep -E 'HugePages_(Total|Free|Rsvd)' /proc/meminfo | tr -s ' ' | paste -sd ' ')"
printf '%4s %12s %12s %8s %6s\n' q "postgres ms" "weft ms" ratio taken
logsum=0; n=0
for q in $queries; do
    file=$(printf '%s/runtime/tests/tpch/q%02d.sql' "$here" "$q")
    sql=$(grep -v '^--' "$file" | tr -d ';')
    columns=$(psql -X -At -c "$settings" -c "CREATE TEMP VIEW v AS $sql" \
        -c "SELECT string_agg(format('%I %s', attname, format_type(atttypid, atttypmod)), ', ' ORDER BY attnum)
            FROM pg_attribute WHERE attrelid = 'v'::regclass AND attnum > 0" | tail -1)
    weft="SELECT * FROM weft.query(\$weft\$$sql\$weft\$) AS t($columns)"
    taken=yes
    if [ "${WEFT_SQL:-0}" = 1 ]; then
        weft="SET weft.enable = on; $sql"
        plan=$(psql -X -At -c "$settings" -c "SET weft.enable = on" -c "EXPLAIN $sql")
        case $plan in *'Custom Scan (Weft)'*) ;; *) taken=no ;; esac
    fi
    stock_times=(); weft_times=()
    if [ "${SESSION:-0}" = 1 ]; then
        if [ "$q" != 17 ] && [ "$q" != 20 ]; then mapfile -t stock_times < <(runs "$sql" "$reps"); fi
        mapfile -t weft_times < <(runs "$weft" "$reps")
    else
        for _ in $(seq "$reps"); do
            if [ "$q" != 17 ] && [ "$q" != 20 ]; then stock_times+=("$(run "$sql")"); fi
            weft_times+=("$(run "$weft")")
        done
    fi
    w=$(best "${weft_times[@]}")
    if [ "$q" = 17 ] || [ "$q" = 20 ]; then
        printf '%4s %12s %12s %8s %6s\n' "$q" "(>300 s)" "$w" "apart" "$taken"
        continue
    fi
    s=$(best "${stock_times[@]}")
    ratio=$(awk -v s="$s" -v w="$w" 'BEGIN { printf "%.2f", s / w }')
    printf '%4s %12s %12s %7sx %6s\n' "$q" "$s" "$w" "$ratio" "$taken"
    logsum=$(awk -v a="$logsum" -v r="$ratio" 'BEGIN { print a + log(r) }'); n=$((n + 1))
done
awk -v a="$logsum" -v n="$n" 'BEGIN { if (n) printf "geometric mean over %d queries: %.2fx\n", n, exp(a / n) }'
