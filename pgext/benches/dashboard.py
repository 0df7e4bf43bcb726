"""The dashboard loop of `make bench-dashboard` (pgext/benches/dashboard.rs).

Usage: dashboard.py HOST PORT EXECUTIONS. Over TPC-H tables already
loaded, runs five parameterized queries EXECUTIONS times each, with a
changing parameter, through psycopg 3 four ways, in this order per query:
weft off and weft on (default settings), each with the parameters sent
apart (psycopg prepares the statement on the server after five executions,
and Postgres's plan cache may then keep a generic plan) and with the
values written into the text (a plain query, planned anew each time).
Every plan is read through auto_explain's notices (without ANALYZE) to
count the executions weft ran. Prints a table and the figures as JSON.
"""

import json
import math
import sys
import time

import psycopg
from psycopg import sql

host, port, executions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

# Each query with the values of its parameter, one per execution.
QUERIES = [
    (
        "shipping priority (Q3)",
        """SELECT l_orderkey, sum(l_extendedprice * (1 - l_discount)) AS revenue, o_orderdate, o_shippriority
             FROM customer, orders, lineitem
            WHERE c_mktsegment = 'BUILDING' AND c_custkey = o_custkey AND l_orderkey = o_orderkey
              AND o_orderdate < %s::date AND l_shipdate > %s::date
            GROUP BY l_orderkey, o_orderdate, o_shippriority ORDER BY revenue DESC, o_orderdate LIMIT 10""",
        lambda i: ["1995-03-%02d" % (1 + i % 28)] * 2,
    ),
    (
        "local supplier volume (Q5)",
        """SELECT n_name, sum(l_extendedprice * (1 - l_discount)) AS revenue
             FROM customer, orders, lineitem, supplier, nation, region
            WHERE c_custkey = o_custkey AND l_orderkey = o_orderkey AND l_suppkey = s_suppkey
              AND c_nationkey = s_nationkey AND s_nationkey = n_nationkey AND n_regionkey = r_regionkey
              AND r_name = %s AND o_orderdate >= date '1994-01-01' AND o_orderdate < date '1995-01-01'
            GROUP BY n_name ORDER BY revenue DESC""",
        lambda i: [["ASIA", "EUROPE", "AMERICA", "AFRICA", "MIDDLE EAST"][i % 5]],
    ),
    (
        "returned items (Q10)",
        """SELECT c_custkey, c_name, sum(l_extendedprice * (1 - l_discount)) AS revenue, c_acctbal, n_name
             FROM customer, orders, lineitem, nation
            WHERE c_custkey = o_custkey AND l_orderkey = o_orderkey
              AND o_orderdate >= %s::date AND o_orderdate < %s::date + interval '3 months'
              AND l_returnflag = 'R' AND c_nationkey = n_nationkey
            GROUP BY c_custkey, c_name, c_acctbal, n_name ORDER BY revenue DESC, c_custkey LIMIT 20""",
        lambda i: ["1993-%02d-01" % (1 + i % 12)] * 2,
    ),
    (
        "shipping modes (Q12)",
        """SELECT l_shipmode,
                  sum(CASE WHEN o_orderpriority IN ('1-URGENT', '2-HIGH') THEN 1 ELSE 0 END) AS high,
                  sum(CASE WHEN o_orderpriority NOT IN ('1-URGENT', '2-HIGH') THEN 1 ELSE 0 END) AS low
             FROM orders, lineitem
            WHERE o_orderkey = l_orderkey AND l_shipmode IN ('MAIL', 'SHIP') AND l_commitdate < l_receiptdate
              AND l_shipdate < l_commitdate AND l_receiptdate >= %s::date
              AND l_receiptdate < %s::date + interval '1 year'
            GROUP BY l_shipmode ORDER BY l_shipmode""",
        lambda i: ["%d-01-01" % (1993 + i % 5)] * 2,
    ),
    (
        "promotion effect (Q14)",
        """SELECT 100.00 * sum(CASE WHEN p_type LIKE 'PROMO%%' THEN l_extendedprice * (1 - l_discount) ELSE 0 END)
                  / sum(l_extendedprice * (1 - l_discount)) AS promo_revenue
             FROM lineitem, part
            WHERE l_partkey = p_partkey AND l_shipdate >= %s::date AND l_shipdate < %s::date + interval '1 month'""",
        lambda i: ["199%d-%02d-01" % (3 + i % 5, 1 + i % 12)] * 2,
    ),
]


def connect(weft):
    conn = psycopg.connect(
        host=host,
        port=port,
        user="postgres",
        dbname="postgres",
        autocommit=True,
        options="-c weft.enable=on -c weft.force=off" if weft else "-c weft.enable=off",
    )
    plans = []
    conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
    conn.execute("LOAD 'auto_explain'")
    conn.execute("SET auto_explain.log_min_duration = 0")
    conn.execute("SET auto_explain.log_level = notice")
    return conn, plans


def loop(text, values, weft, plain):
    """Seconds per execution, the rows of each, and how many weft ran."""
    conn, plans = connect(weft)
    elapsed, results = 0.0, []
    with conn:
        for i in range(executions):
            params = values(i)
            started = time.perf_counter()
            if plain:
                literal = text % tuple(sql.Literal(p).as_string(conn) for p in params)
                rows = conn.execute(literal, prepare=False).fetchall()
            else:
                rows = conn.execute(text, params).fetchall()
            elapsed += time.perf_counter() - started
            results.append(rows)
    taken = sum(1 for p in plans if "Custom Scan (Weft)" in p and "handed back" not in p)
    return elapsed / executions, results, taken


figures = []
print(f"{'query':<28} {'off ms':>8} {'on ms':>8} {'speedup':>8} {'taken':>6} | "
      f"{'plain off':>9} {'plain on':>9} {'speedup':>8} {'taken':>6} | same")
for name, text, values in QUERIES:
    off, off_rows, _ = loop(text, values, weft=False, plain=False)
    on, on_rows, taken = loop(text, values, weft=True, plain=False)
    plain_off, plain_off_rows, _ = loop(text, values, weft=False, plain=True)
    plain_on, plain_on_rows, plain_taken = loop(text, values, weft=True, plain=True)
    same = off_rows == on_rows == plain_off_rows == plain_on_rows
    figure = {
        "query": name,
        "off_ms": off * 1e3,
        "on_ms": on * 1e3,
        "speedup": off / on,
        "taken": taken,
        "plain_off_ms": plain_off * 1e3,
        "plain_on_ms": plain_on * 1e3,
        "plain_speedup": plain_off / plain_on,
        "plain_taken": plain_taken,
        "same": same,
    }
    figures.append(figure)
    print(f"{name:<28} {off*1e3:>8.1f} {on*1e3:>8.1f} {off/on:>7.2f}x {taken:>6} | "
          f"{plain_off*1e3:>9.1f} {plain_on*1e3:>9.1f} {plain_off/plain_on:>7.2f}x {plain_taken:>6} | {same}")
geomean = lambda xs: math.exp(sum(math.log(x) for x in xs) / len(xs))
prepared, plain = geomean([f["speedup"] for f in figures]), geomean([f["plain_speedup"] for f in figures])
print(f"\ngeometric mean speedup over {executions} executions of each query: prepared {prepared:.2f}x, "
      f"plain text {plain:.2f}x, ratio {prepared / plain:.3f}")
print(json.dumps({"executions": executions, "figures": figures}))
