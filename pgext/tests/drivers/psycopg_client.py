"""A psycopg 3 client of weft's driver tests (pgext/tests/drivers.rs).

Usage: psycopg_client.py HOST PORT MODE, MODE being "weft" (weft.force on)
or "stock" (weft off). Runs, marked with a comment naming the client and
the mode (the server log's plans are read by it):
  - one query executed 10 times with a changing parameter: psycopg sends
    the first executions unprepared and prepares the statement on the
    server after `prepare_threshold` (5) of them;
  - a named (server-side) cursor, its rows fetched 1,000 at a time.
Prints what the queries returned as JSON.
"""

import json
import sys

import psycopg

host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
options = {"weft": "-c weft.force=on", "stock": "-c weft.enable=off"}[mode]
marker = f"/* psycopg {mode} */ "

with psycopg.connect(
    host=host, port=port, user="postgres", dbname="postgres", options=options, autocommit=True
) as conn:
    out = {"prepared": [], "batches": [], "rows": []}
    for qty in range(10):
        cur = conn.execute(
            marker
            + "SELECT region, count(*), sum(amount)::text FROM sales WHERE qty < %s GROUP BY region ORDER BY 1",
            (qty,),
        )
        out["prepared"].append(cur.fetchall())
    with conn.transaction():
        with conn.cursor(name="pieces") as cur:
            cur.execute(
                marker
                + "SELECT s.i, t.region FROM sales s JOIN sales t ON t.i = s.i + 1 WHERE s.qty < %s ORDER BY s.i",
                (5,),
            )
            while batch := cur.fetchmany(1000):
                out["batches"].append(len(batch))
                out["rows"].extend(batch)
    print(json.dumps(out))
