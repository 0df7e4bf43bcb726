#!/usr/bin/env bash
# Scan rates over lineitem on the cluster `cargo run --release -p weft
# --example bench_cluster` leaves running (pass its directory), and A/B of
# extension builds: for each weft.so given (or the installed one), install
# it, restart the server, prewarm the tables, and time each scan N times,
# printing the least and the median (ms). Run as root, as the bench
# cluster's owner is `postgres`.
#
#   [WORKERS=1] [N=5] scripts/scan-rates.sh /tmp/weft-pg-XXXX [a.so b.so ...]
#
# The scans: stock count(*) (weft off), weft testing the first column, Q14's
# and Q6's filtered scans (weft forced), all 16 columns into Arrow through
# weft.query, and stock Postgres deforming the same 16 columns.
set -euo pipefail
dir=$1; shift
export PGHOST=$dir/sock PGUSER=postgres PGPORT=5432
bin=/usr/lib/postgresql/15/bin
lib=$("$bin/pg_config" --pkglibdir)
here=$(cd "$(dirname "$0")/.." && pwd)
workers=${WORKERS:-1}; n=${N:-5}
settings="SET max_parallel_workers_per_gather = $workers; SET weft.workers = $workers;"
# Each scan is one line ("name|setting|sql"), so the SQL must be too.
cols=$(for c in orderkey partkey suppkey linenumber quantity extendedprice discount tax returnflag \
    linestatus shipdate commitdate receiptdate shipinstruct shipmode comment; do printf 'count(l_%s), ' "$c"; done)
cols=${cols%, }
defs=$(seq -s, 1 16 | sed 's/\([0-9]*\)/c\1 int8/g')
scans=(
    "stock count(*)|SET weft.enable = off|SELECT count(*) FROM lineitem"
    "weft first column|SET weft.force = on|SELECT count(*) FROM lineitem WHERE l_orderkey < 0"
    "weft Q14's scan|SET weft.force = on|SELECT count(*) FROM lineitem WHERE l_shipdate >= date '1995-09-01' AND l_shipdate < date '1995-10-01'"
    "weft Q6|SET weft.force = on|$(grep -v '^--' "$here/runtime/tests/tpch/q06.sql" | tr '\n' ' ')"
    "weft 16 columns|SET weft.enable = off|SELECT * FROM weft.query('SELECT $cols FROM lineitem') AS t($defs)"
    "stock 16 columns|SET weft.enable = off|SELECT $cols FROM lineitem"
)
ms() { psql -X -q -v ON_ERROR_STOP=1 -c "$settings" -c "$1" -c '\timing on' -c "$2" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1; }
stats() { sort -g | awk '{a[NR] = $1} END {printf "least %8.1f  median %8.1f", a[1], a[int((NR + 1) / 2)]}'; }
restart() {
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w restart >/dev/null
    psql -X -qAt -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" -c "SELECT sum(pg_prewarm(c.oid))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')" >/dev/null
}
builds=("$@"); [ ${#builds[@]} -gt 0 ] || builds=(installed)
echo "# workers = $workers, $n runs each; $(grep -E 'HugePages_(Total|Free|Rsvd)' /proc/meminfo | tr -s ' ' | paste -sd ' ')"
for build in "${builds[@]}"; do
    if [ "$build" != installed ]; then
        # A new file renamed over the old: copying onto the library a
        # running server has mapped changes its code under it (SIGSEGV).
        cp "$build" "$lib/weft.so.new" && mv "$lib/weft.so.new" "$lib/weft.so"
    fi
    restart
    for scan in "${scans[@]}"; do
        IFS='|' read -r name set sql <<<"$scan"
        printf '%-18s %-20s %s\n' "$(basename "$build")" "$name" \
            "$(for _ in $(seq "$n"); do ms "$set" "$sql"; done | stats)"
    done
done
