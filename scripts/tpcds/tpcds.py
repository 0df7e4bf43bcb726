#!/usr/bin/env python3
"""TPC-DS for weft: data, schema and queries, and the per-query comparison.

Data and the 99 query texts come from DuckDB's tpcds extension (dsdgen and
its query set), which PyPI ships as the `duckdb-extension-tpcds` wheel: the
`duckdb` wheel itself does not build it in, and this machine may not fetch
extensions from DuckDB's own repository. run.sh installs both, pinned.

  tpcds.py gen SF DIR       data as CSV, schema.sql, keys.sql and the raw
                            query texts, into DIR (once: DIR/COMPLETE)
  tpcds.py queries RAW OUT  the Postgres texts of the queries, with the
                            dialect edits below applied
  tpcds.py run ...          per query: whether weft takes it, and whether
                            its answer equals stock Postgres's (--help)

Only the standard library besides duckdb: the runner drives psql, so that
the rows compared are Postgres's own text output.
"""

import argparse
import collections
import glob
import os
import re
import subprocess
import sys
import time

# --- schema -------------------------------------------------------------------

# The spec's types for the text columns (DuckDB's dsdgen declares them all
# VARCHAR): cN is char(N), vN varchar(N). char vs varchar matters to weft
# (blank-padded semantics), so the benchmark should see what the spec says.
SPEC_TEXT = {
    "call_center": "cc_call_center_id c16, cc_name v50, cc_class v50, cc_hours c20, cc_manager v40,"
    " cc_mkt_class c50, cc_mkt_desc v100, cc_market_manager v40, cc_division_name v50,"
    " cc_company_name c50, cc_street_number c10, cc_street_name v60, cc_street_type c15,"
    " cc_suite_number c10, cc_city v60, cc_county v30, cc_state c2, cc_zip c10, cc_country v20",
    "catalog_page": "cp_catalog_page_id c16, cp_department v50, cp_description v100, cp_type v100",
    "customer": "c_customer_id c16, c_salutation c10, c_first_name c20, c_last_name c30,"
    " c_preferred_cust_flag c1, c_birth_country v20, c_login c13, c_email_address c50",
    "customer_address": "ca_address_id c16, ca_street_number c10, ca_street_name v60,"
    " ca_street_type c15, ca_suite_number c10, ca_city v60, ca_county v30, ca_state c2,"
    " ca_zip c10, ca_country v20, ca_location_type c20",
    "customer_demographics": "cd_gender c1, cd_marital_status c1, cd_education_status c20,"
    " cd_credit_rating c10",
    "date_dim": "d_date_id c16, d_day_name c9, d_quarter_name c6, d_holiday c1, d_weekend c1,"
    " d_following_holiday c1, d_current_day c1, d_current_week c1, d_current_month c1,"
    " d_current_quarter c1, d_current_year c1",
    "household_demographics": "hd_buy_potential c15",
    "item": "i_item_id c16, i_item_desc v200, i_brand c50, i_class c50, i_category c50,"
    " i_manufact c50, i_size c20, i_formulation c20, i_color c20, i_units c10, i_container c10,"
    " i_product_name c50",
    "promotion": "p_promo_id c16, p_promo_name c50, p_channel_dmail c1, p_channel_email c1,"
    " p_channel_catalog c1, p_channel_tv c1, p_channel_radio c1, p_channel_press c1,"
    " p_channel_event c1, p_channel_demo c1, p_channel_details v100, p_purpose c15,"
    " p_discount_active c1",
    "reason": "r_reason_id c16, r_reason_desc c100",
    "ship_mode": "sm_ship_mode_id c16, sm_type c30, sm_code c10, sm_carrier c20, sm_contract c20",
    "store": "s_store_id c16, s_store_name v50, s_hours c20, s_manager v40, s_geography_class v100,"
    " s_market_desc v100, s_market_manager v40, s_division_name v50, s_company_name v50,"
    " s_street_number v10, s_street_name v60, s_street_type c15, s_suite_number c10, s_city v60,"
    " s_county v30, s_state c2, s_zip c10, s_country v20",
    "time_dim": "t_time_id c16, t_am_pm c2, t_shift c20, t_sub_shift c20, t_meal_time c20",
    "warehouse": "w_warehouse_id c16, w_warehouse_name v20, w_street_number c10, w_street_name v60,"
    " w_street_type c15, w_suite_number c10, w_city v60, w_county v30, w_state c2, w_zip c10,"
    " w_country v20",
    "web_page": "wp_web_page_id c16, wp_autogen_flag c1, wp_url v100, wp_type c50",
    "web_site": "web_site_id c16, web_name v50, web_class v50, web_manager v40, web_mkt_class v50,"
    " web_mkt_desc v100, web_market_manager v40, web_company_name c50, web_street_number c10,"
    " web_street_name v60, web_street_type c15, web_suite_number c10, web_city v60,"
    " web_county v30, web_state c2, web_zip c10, web_country v20",
}

# The spec's primary keys: each dimension's surrogate key, the fact tables'
# (item, ticket/order) pairs. Stock Postgres's plans lean on them (index
# nested loops), and weft reads through btree indexes where it pays.
PRIMARY_KEYS = {
    "call_center": "cc_call_center_sk",
    "catalog_page": "cp_catalog_page_sk",
    "catalog_returns": "cr_item_sk, cr_order_number",
    "catalog_sales": "cs_item_sk, cs_order_number",
    "customer": "c_customer_sk",
    "customer_address": "ca_address_sk",
    "customer_demographics": "cd_demo_sk",
    "date_dim": "d_date_sk",
    "household_demographics": "hd_demo_sk",
    "income_band": "ib_income_band_sk",
    "inventory": "inv_date_sk, inv_item_sk, inv_warehouse_sk",
    "item": "i_item_sk",
    "promotion": "p_promo_sk",
    "reason": "r_reason_sk",
    "ship_mode": "sm_ship_mode_sk",
    "store": "s_store_sk",
    "store_returns": "sr_item_sk, sr_ticket_number",
    "store_sales": "ss_item_sk, ss_ticket_number",
    "time_dim": "t_time_sk",
    "warehouse": "w_warehouse_sk",
    "web_page": "wp_web_page_sk",
    "web_returns": "wr_item_sk, wr_order_number",
    "web_sales": "ws_item_sk, ws_order_number",
    "web_site": "web_site_sk",
}


def spec_text_types():
    types = {}
    for table, spec in SPEC_TEXT.items():
        for item in spec.split(","):
            column, short = item.split()
            kind = {"c": "char", "v": "varchar"}[short[0]]
            types[(table, column)] = f"{kind}({short[1:]})"
    return types


def pg_type(table, column, duck_type, text_types):
    """The spec's Postgres type of a column, from DuckDB's."""
    if duck_type == "VARCHAR":
        if (table, column) not in text_types:
            raise SystemExit(f"tpcds.py: no spec type for text column {table}.{column}")
        return text_types[(table, column)]
    if duck_type in ("BIGINT", "INTEGER"):
        # The spec's identifiers and counts are all integer; at the scale
        # factors run here every value fits.
        return "integer"
    if duck_type == "DATE":
        return "date"
    m = re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", duck_type)
    if m:
        return f"numeric({m[1]},{m[2]})"
    raise SystemExit(f"tpcds.py: unexpected type {duck_type} of {table}.{column}")


# --- generation -----------------------------------------------------------------


def connect_duckdb():
    import duckdb
    import duckdb_extension_tpcds

    # The extension binary inside the PyPI wheel, loaded by path: LOAD tpcds
    # would try DuckDB's extension repository, which this machine cannot
    # reach.
    root = os.path.dirname(duckdb_extension_tpcds.__file__)
    found = glob.glob(os.path.join(root, "extensions", "*", "tpcds.duckdb_extension"))
    if len(found) != 1:
        raise SystemExit(f"tpcds.py: expected one tpcds.duckdb_extension under {root}, found {found}")
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute(f"LOAD '{found[0]}'")
    return con


def gen(sf, out):
    if os.path.exists(os.path.join(out, "COMPLETE")):
        print(f"tpcds.py: data for SF {sf} already in {out}", file=sys.stderr)
        return
    con = connect_duckdb()
    t0 = time.time()
    con.execute(f"CALL dsdgen(sf={sf})")
    print(f"tpcds.py: dsdgen sf={sf}: {time.time() - t0:.1f} s", file=sys.stderr)

    os.makedirs(os.path.join(out, "data"), exist_ok=True)
    os.makedirs(os.path.join(out, "queries"), exist_ok=True)
    text_types = spec_text_types()
    columns = collections.defaultdict(list)
    for table, column, duck_type in con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " ORDER BY table_name, ordinal_position"
    ).fetchall():
        columns[table].append((column, duck_type))
    if set(columns) != set(PRIMARY_KEYS):
        raise SystemExit(f"tpcds.py: unexpected tables {sorted(set(columns) ^ set(PRIMARY_KEYS))}")

    schema, keys = [], []
    for table in sorted(columns):
        key_columns = {c.strip() for c in PRIMARY_KEYS[table].split(",")}
        lines = []
        for column, duck_type in columns[table]:
            ty = pg_type(table, column, duck_type, text_types)
            # As the spec: keys and business ids (the char(16) *_id) NOT NULL.
            not_null = column in key_columns or ty == "char(16)"
            lines.append(f"    {column} {ty}{' NOT NULL' if not_null else ''}")
        schema.append(f"CREATE TABLE {table} (\n" + ",\n".join(lines) + "\n);\n")
        keys.append(f"ALTER TABLE {table} ADD PRIMARY KEY ({PRIMARY_KEYS[table]});\n")
        # CSV: NULL is an empty unquoted field, which COPY's csv format reads
        # back as NULL; written under a temporary name so that an interrupted
        # run leaves no half file that looks done.
        path = os.path.join(out, "data", f"{table}.csv")
        con.execute(f"COPY {table} TO '{path}.part' (FORMAT csv, HEADER false, DELIMITER '|')")
        os.replace(f"{path}.part", path)
    with open(os.path.join(out, "schema.sql"), "w") as f:
        f.write("".join(schema))
    with open(os.path.join(out, "keys.sql"), "w") as f:
        f.write("".join(keys))
    for number, query in con.execute("SELECT query_nr, query FROM tpcds_queries()").fetchall():
        with open(os.path.join(out, "queries", f"{number:02d}.sql"), "w") as f:
            f.write(query)
    with open(os.path.join(out, "COMPLETE"), "w") as f:
        f.write(f"{con.execute('SELECT version()').fetchone()[0]}, sf {sf}, {time.time() - t0:.1f} s\n")


# --- the queries in Postgres's dialect ----------------------------------------------

# Edits to DuckDB's query texts where Postgres reads them otherwise or not at
# all: (query, old, new, why). Each must apply exactly once, so that a
# different upstream text fails loudly instead of running unedited.
# duckdb-extension-tpcds 1.5.5's texts need none: they are already the
# portable variants (date ranges as precomputed literals, no `+ 30 days`;
# ORDER BY repeating grouping() where the spec's text names an output
# column inside an expression, q70/q86; q36's rollup spelled as UNIONs;
# concat() for ||), and all 99 parse and run on Postgres 15 as they are.
# Kept for a later upstream that does not.
DIALECT_EDITS = []


def translate(number, text):
    edits = []
    for q, old, new, why in DIALECT_EDITS:
        if q != number:
            continue
        count = text.count(old)
        if count != 1:
            raise SystemExit(f"tpcds.py: edit of query {q} ({why}) matches {count} times")
        text = text.replace(old, new)
        edits.append(why)
    return text, edits


def queries(raw, out):
    os.makedirs(out, exist_ok=True)
    for path in sorted(glob.glob(os.path.join(raw, "*.sql"))):
        number = int(os.path.basename(path)[:-4])
        with open(path) as f:
            text, edits = translate(number, f.read())
        with open(os.path.join(out, os.path.basename(path)), "w") as f:
            for why in edits:
                f.write(f"-- weft edit: {why}\n")
            f.write(text)


def dialect_edits_text():
    if not DIALECT_EDITS:
        return ["  (none)"]
    return [f"  q{q}: {why}: {old.strip()!r} -> {new.strip()!r}" for q, old, new, why in DIALECT_EDITS]


# --- the run -------------------------------------------------------------------------


class Psql:
    """psql against the throwaway cluster, one session per call."""

    def __init__(self, bindir, host, port, db, timeout_s):
        self.psql = os.path.join(bindir, "psql")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self.env.update(PGHOST=host, PGPORT=str(port), PGUSER="postgres", PGDATABASE=db)
        self.timeout_s = timeout_s

    def run(self, script):
        """(rc, stdout, stderr, seconds); rc None if psql itself hung."""
        t0 = time.time()
        try:
            p = subprocess.run(
                # Unaligned, tuples only, tab-separated, NULL visible: the
                # rows as Postgres's text output, one per line.
                [self.psql, "-X", "-q", "-A", "-t", "-F", "\t", "-P", "null=<NULL>", "-v", "ON_ERROR_STOP=1"],
                input=script,
                capture_output=True,
                text=True,
                env=self.env,
                # statement_timeout ends a slow query; this only catches a
                # server that stops answering altogether.
                timeout=self.timeout_s + 120,
            )
        except subprocess.TimeoutExpired as e:
            return None, e.stdout or "", e.stderr or "", time.time() - t0
        return p.returncode, p.stdout, p.stderr, time.time() - t0

    def wait_ready(self, limit_s=180):
        """Wait out a crash recovery (a backend that died takes all down)."""
        deadline = time.time() + limit_s
        while time.time() < deadline:
            rc, out, _, _ = self.run("SELECT 1;\n")
            if rc == 0 and out.strip() == "1":
                return True
            time.sleep(2)
        return False


def first_error(stderr):
    for line in stderr.splitlines():
        if "ERROR" in line or "FATAL" in line or "server closed" in line:
            return line.split(":", 1)[-1].strip() if line.startswith("psql:") else line.strip()
    return stderr.strip().splitlines()[0] if stderr.strip() else "failed"


def classify_failure(rc, stderr):
    if rc is None:
        return "hung"
    if "statement timeout" in stderr:
        return "timeout"
    if "server closed the connection" in stderr or "terminating connection because of crash" in stderr:
        return "crash"
    return "error"


def execute(psql, settings, sql):
    """Rows (sorted text lines) or a failure kind, with error text and ms."""
    script = settings + "\\timing on\n" + sql + ";\n"
    rc, out, err, seconds = psql.run(script)
    if rc != 0:
        return None, classify_failure(rc, err), first_error(err), seconds * 1000
    lines = out.splitlines()
    ms = seconds * 1000
    if lines and lines[-1].startswith("Time: "):
        ms = float(lines[-1].split()[1])
        lines = lines[:-1]
    return sorted(lines), "ok", "", ms


LIMIT_AT_END = re.compile(r"\s+LIMIT\s+\d+\s*;?\s*$", re.IGNORECASE)


def weft_lines(plan):
    """EXPLAIN lines that concern weft: its node, or why it was not used."""
    return [line.strip() for line in plan.splitlines() if "weft" in line.lower()]


def fallback_reason(plan):
    """weft's reason, the last thing EXPLAIN prints; a DataFusion error
    runs on over several lines ("caused by ..."), joined here."""
    lines = plan.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Weft: not used:"):
            rest = [line[len("Weft: not used:") :]] + lines[i + 1 :]
            return " ".join(part.strip() for part in rest if part.strip())
    return "; ".join(weft_lines(plan)) or "(no reason shown)"


def reason_group(reason):
    """The reason without the numbers that vary per query (row estimates)."""
    return re.sub(r"\b\d+(\.\d+)?\b", "N", reason)


def run(args):
    psql = Psql(args.bindir, args.host, args.port, args.db, args.timeout)
    rc, out, err, _ = psql.run("SELECT current_setting('weft.workers', true) IS NOT NULL;\n")
    if rc != 0:
        raise SystemExit(f"tpcds.py: cannot reach the cluster: {err.strip()}")
    has_workers = out.strip() == "t"
    base = (
        f"SET max_parallel_workers_per_gather = {args.workers};\n"
        + (f"SET weft.workers = {args.workers};\n" if has_workers else "")
        + f"SET statement_timeout = '{args.timeout}s';\n"
    )
    stock_settings = base + "SET weft.enable = off;\n"
    weft_settings = base + "SET weft.force = on;\n"
    explain_settings = "SET weft.explain_fallback = on;\n"

    os.makedirs(args.out, exist_ok=True)
    numbers = args.queries or sorted(int(os.path.basename(p)[:-4]) for p in glob.glob(os.path.join(args.sql, "*.sql")))
    report = []

    def say(line=""):
        print(line, flush=True)
        report.append(line)

    say(f"# session: {base.strip().replace(chr(10), ' ')}" + ("" if has_workers else " (no weft.workers setting)"))
    say("# stock: SET weft.enable = off; weft: SET weft.force = on")
    say("# taken: EXPLAIN under weft.force shows Custom Scan (Weft); gate: taken with weft's defaults (cost gate)")
    say(f"{'q':>3} {'taken':>5} {'gate':>4} {'result':<22} {'stock ms':>9} {'weft ms':>9}  reason")
    results = {}
    t_all = time.time()
    for n in numbers:
        with open(os.path.join(args.sql, f"{n:02d}.sql")) as f:
            sql = f.read().strip().rstrip(";").strip()
        if not psql.wait_ready():
            raise SystemExit("tpcds.py: the server did not come back")
        rc, plan, err, _ = psql.run(base + explain_settings + "SET weft.force = on;\nEXPLAIN " + sql + ";\n")
        if rc == 0:
            taken = "Custom Scan (Weft)" in plan
            reason = "" if taken else fallback_reason(plan)
        else:
            taken, reason = False, f"EXPLAIN failed: {first_error(err)}"
        gate_rc, gate_plan, _, _ = psql.run(base + "EXPLAIN " + sql + ";\n")
        gate = gate_rc == 0 and "Custom Scan (Weft)" in gate_plan
        with open(os.path.join(args.out, f"{n:02d}.explain"), "w") as f:
            f.write(plan if rc == 0 else err)

        stock, stock_kind, stock_err, stock_ms = execute(psql, stock_settings, sql)
        psql.wait_ready()
        weft, weft_kind, weft_err, weft_ms = execute(psql, weft_settings, sql)
        for side, rows, err_text in (("stock", stock, stock_err), ("weft", weft, weft_err)):
            with open(os.path.join(args.out, f"{n:02d}.{side}"), "w") as f:
                f.write("\n".join(rows) + "\n" if rows is not None else f"FAILED: {err_text}\n")

        detail = ""
        if stock_kind != "ok" and weft_kind != "ok":
            result = f"{stock_kind} (both)" if stock_kind == weft_kind else f"stock {stock_kind}, weft {weft_kind}"
            detail = weft_err if weft_kind == "error" else stock_err
        elif stock_kind != "ok":
            result, detail = f"stock {stock_kind}", stock_err
        elif weft_kind != "ok":
            result, detail = f"weft {weft_kind}", weft_err
        elif stock == weft:
            result = "same"
        elif LIMIT_AT_END.search(sql):
            # Rows tied on the ORDER BY at the LIMIT's cut may differ
            # legitimately; the whole results, without the LIMIT, settle it.
            full_sql = LIMIT_AT_END.sub("", sql)
            psql.wait_ready()
            s_all, s_kind, _, _ = execute(psql, stock_settings, full_sql)
            psql.wait_ready()
            w_all, w_kind, _, _ = execute(psql, weft_settings, full_sql)
            if s_kind == "ok" and w_kind == "ok":
                result = "same w/o LIMIT (ties)" if s_all == w_all else "differs"
            else:
                result = "differs (LIMIT, maybe ties)"
        else:
            result = "differs"
        if result.startswith("differs"):
            only_stock = sorted((collections.Counter(stock) - collections.Counter(weft)).elements())
            only_weft = sorted((collections.Counter(weft) - collections.Counter(stock)).elements())
            detail = f"{len(stock)} vs {len(weft)} rows; stock-only {only_stock[:1]}, weft-only {only_weft[:1]}"
        results[n] = dict(taken=taken, gate=gate, result=result, reason=reason)
        shown = reason if len(reason) <= args.reason_width else reason[: args.reason_width - 3] + "..."
        say(
            f"{n:>3} {'yes' if taken else 'no':>5} {'yes' if gate else 'no':>4} {result:<22}"
            f" {stock_ms:>9.0f} {weft_ms:>9.0f}  {shown or '-'}"
        )
        if detail and "statement timeout" not in detail:
            say(f"{'':>12}{detail[:300]}")

    # --- summary
    total = len(results)
    taken = [n for n, r in results.items() if r["taken"]]
    say()
    say(f"query run: {time.time() - t_all:.0f} s")
    gated = sum(r["gate"] for r in results.values())
    say(f"taken under weft.force: {len(taken)}/{total}; by the cost gate (defaults): {gated}/{total}")
    by_result = collections.defaultdict(list)
    for n, r in results.items():
        by_result[r["result"]].append(n)
    for result, ns in sorted(by_result.items(), key=lambda kv: -len(kv[1])):
        say(f"  {result}: {len(ns)}  {' '.join(map(str, ns))}")
    def numbers_where(test, among):
        return [n for n in among if test(results[n]["result"])]

    same_taken = numbers_where(lambda r: r.startswith("same"), taken)
    differs_taken = numbers_where(lambda r: r.startswith("differs"), taken)
    # Taken, but stock Postgres did not answer in time: weft's answer is
    # unchecked (a longer TPCDS_TIMEOUT checks it).
    unchecked = [n for n in taken if n not in same_taken and n not in differs_taken]
    say(
        f"taken: {len(same_taken)} the same answer, {len(differs_taken)} a different one"
        f" ({' '.join(map(str, differs_taken)) or 'none'}), {len(unchecked)} not compared"
        f" ({', '.join(str(n) + ' ' + results[n]['result'] for n in unchecked) or 'none'})"
    )
    differs = numbers_where(lambda r: r.startswith("differs"), sorted(results))
    say(f"all differences: {' '.join(map(str, differs)) or 'none'}")
    say()
    say("fallback reasons (not taken under weft.force), grouped:")
    groups = collections.defaultdict(list)
    for n, r in results.items():
        if not r["taken"]:
            groups[reason_group(r["reason"])].append(n)
    if not groups:
        say("  (none)")
    for reason, ns in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        say(f"  {len(ns):>3}  {reason}")
        say(f"       queries: {' '.join(map(str, ns))}")
    say()
    say("dialect edits to DuckDB's query texts:")
    for line in dialect_edits_text():
        say(line)
    if args.report:
        with open(args.report, "w") as f:
            f.write("\n".join(report) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("gen")
    p.add_argument("sf")
    p.add_argument("dir")
    p = sub.add_parser("queries")
    p.add_argument("raw")
    p.add_argument("out")
    p = sub.add_parser("run")
    p.add_argument("--bindir", default="/usr/lib/postgresql/15/bin")
    p.add_argument("--host", required=True, help="the cluster's socket directory")
    p.add_argument("--port", type=int, default=5477)
    p.add_argument("--db", default="tpcds")
    p.add_argument("--sql", required=True, help="directory of the Postgres query texts (NN.sql)")
    p.add_argument("--out", required=True, help="directory for per-query plans and results")
    p.add_argument("--report", help="also write the report here")
    p.add_argument("--timeout", type=int, default=60, help="statement_timeout per run, seconds")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--reason-width", type=int, default=110)
    p.add_argument("queries", nargs="*", type=int)
    args = parser.parse_args()
    if args.cmd == "gen":
        gen(args.sf, args.dir)
    elif args.cmd == "queries":
        queries(args.raw, args.out)
    else:
        run(args)


if __name__ == "__main__":
    main()
