#!/usr/bin/env python3
"""Compares two pg_regress runs of the same tests statement by statement.

Used by scripts/regress/run.sh (`make regress`): the first run is stock
Postgres (weft.enable=off), the second weft.force=on. Exit status 0 when
every statement answered the same, 1 when some statement's answer or error
differs (the report lists each: its SQL, stock's output, weft's output), 2
when the inputs are unusable.

How a result file is cut into statements: pg_regress runs each test as
`psql -a -q < test.sql`, so the .out file is the .sql file's lines echoed
one by one, each line followed by whatever running it printed. A small
lexer that follows psql's own rules (quotes, dollar quotes, comments,
parentheses, BEGIN ATOMIC bodies, backslash commands, COPY FROM stdin data,
which psql reads without echoing) finds the lines on which a statement ends;
those lines close a "unit" (the lines since the previous unit), and the
output after a unit's last echoed line, up to the next unit's echoed lines,
is that unit's output. Both runs are cut along the same .sql file, so the
units pair up one to one.

Each unit whose outputs differ is put in one class:
  error         an ERROR (or a lost connection) in one run only, or another
                ERROR message: fails
  error-detail  the same ERROR lines, other DETAIL/HINT/CONTEXT lines: fails
                (a "CONTEXT:  parallel worker" line, which says which process
                raised the error, is left out of every comparison)
  explain       every statement in the unit is an EXPLAIN (or calls a
                function named explain..., the tests' EXPLAIN-filtering
                helpers), and the ERROR lines agree: listed, does not fail
  order         one query without ORDER BY at its top level, the same header
                and footer, and the same multiset of row lines: listed, does
                not fail
  result        anything else: fails
A unit that matches an entry of the known-differences file is listed under
its class as known and does not fail.
"""

import argparse
import collections
import difflib
import os
import re
import sys

# --------------------------------------------------------------------------
# psql's lexer, reduced to what finds statement ends (psqlscan.l, PG15).

IDENT_START = re.compile(r"[A-Za-z\x80-\uffff_]")
IDENT = re.compile(r"[A-Za-z\x80-\uffff_][A-Za-z\x80-\uffff_0-9$]*")
DOLLAR_TAG = re.compile(r"\$([A-Za-z\x80-\uffff_][A-Za-z\x80-\uffff_0-9]*)?\$")
PSQL_VAR_QUOTED = re.compile(r""":'[A-Za-z0-9_]+'|:"[A-Za-z0-9_]+\"""")
# Backslash commands that send the query buffer (and so end a statement).
SENDING_META = re.compile(r"\\(g|gx|gset|gexec|gdesc|crosstabview|watch)\b")
# COPY FROM STDIN (or STDOUT, which the grammar takes as the same) and
# \copy ... from stdin: psql reads the data lines that follow up to \.
# without echoing them.
COPY_FROM_STDIN = re.compile(r"^\s*\\?copy\b.*\bfrom\s+(stdin|stdout|pstdin)\b", re.I | re.S)
# \set ECHO: psql echoes lines only while it is `all` (pg_regress's -a).
SET_ECHO = re.compile(r"^\s*\\set\s+ECHO\s+(\S+)")


def ident_char(c):
    return c.isalnum() or c in "_$" or ord(c) >= 0x80


class Unit:
    """Lines first..last (0-based, inclusive) of a .sql file: the statements
    ending on line `last`, with the comments and blank lines before them."""

    def __init__(self, first, last):
        self.first = first
        self.last = last
        self.statements = []  # each statement's text, comments left out
        self.echoed = []  # indexes of the lines psql echoes (not COPY data)
        self.meta = False  # the last line holds a backslash command

    def start(self, lines):
        """The index of the unit's first line that is not blank or a comment."""
        n = self.first
        while n < self.last and (not lines[n].strip() or lines[n].lstrip().startswith("--")):
            n += 1
        return n

    def sql_lines(self, lines):
        """The unit's lines from its first that is not blank or a comment."""
        return lines[self.start(lines) : self.last + 1]


def split_units(lines):
    """Cuts a .sql file's lines into units (see the module's doc)."""
    units = []
    mode = None  # None, "'", "e'", '"', "$", "/*"
    tag = ""
    comment_depth = 0
    paren = 0
    begin_depth = 0
    idents = []  # first letters of create/or/replace/function/procedure
    ident_count = 0
    buf = []
    unit = Unit(0, 0)
    in_copy = False
    echo = True

    def end_statement():
        nonlocal buf, paren, begin_depth, idents, ident_count
        text = " ".join("".join(buf).split())
        if text:
            unit.statements.append(text)
        buf = []
        paren = 0
        begin_depth = 0
        idents = []
        ident_count = 0
        return text

    for n, line in enumerate(lines):
        if in_copy:
            # COPY data: psql reads it without echoing, up to \.
            if line == "\\.":
                in_copy = False
            continue
        # psql skips an empty line outside quotes and comments without
        # echoing it (MainLoop).
        if line == "" and mode is None:
            continue
        if echo:
            unit.echoed.append(n)
        ended = []
        meta = False
        i = 0
        length = len(line)
        while i < length:
            c = line[i]
            if mode == "/*":
                if line.startswith("/*", i):
                    comment_depth += 1
                    i += 2
                elif line.startswith("*/", i):
                    comment_depth -= 1
                    i += 2
                    if comment_depth == 0:
                        mode = None
                else:
                    i += 1
                continue
            if mode in ("'", "e'"):
                buf.append(c)
                if mode == "e'" and c == "\\":
                    if i + 1 < length:
                        buf.append(line[i + 1])
                    i += 2
                    continue
                if c == "'":
                    if i + 1 < length and line[i + 1] == "'":
                        buf.append("'")
                        i += 2
                        continue
                    mode = None
                i += 1
                continue
            if mode == '"':
                buf.append(c)
                if c == '"':
                    if i + 1 < length and line[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    mode = None
                i += 1
                continue
            if mode == "$":
                close = "$" + tag + "$"
                if line.startswith(close, i):
                    buf.append(close)
                    i += len(close)
                    mode = None
                else:
                    buf.append(c)
                    i += 1
                continue
            # Outside quotes and comments.
            prev = line[i - 1] if i > 0 else " "
            if line.startswith("--", i):
                break
            if line.startswith("/*", i):
                mode = "/*"
                comment_depth = 1
                i += 2
                buf.append(" ")
                continue
            if c == "'":
                before = line[i - 2] if i > 1 else " "
                mode = "e'" if prev in "eE" and not ident_char(before) else "'"
                buf.append(c)
                i += 1
                continue
            if c == '"':
                mode = '"'
                buf.append(c)
                i += 1
                continue
            if c == "$" and not ident_char(prev):
                m = DOLLAR_TAG.match(line, i)
                if m:
                    tag = m.group(1) or ""
                    mode = "$"
                    buf.append(m.group(0))
                    i = m.end()
                    continue
            if c == ":":
                if line.startswith("::", i):
                    buf.append("::")
                    i += 2
                    continue
                m = PSQL_VAR_QUOTED.match(line, i)
                if m:
                    buf.append(m.group(0))
                    i = m.end()
                    continue
            if c == "(":
                paren += 1
            elif c == ")":
                paren = max(0, paren - 1)
            elif c == ";" and paren == 0 and begin_depth == 0:
                buf.append(";")
                ended.append(end_statement())
                i += 1
                continue
            elif c == "\\":
                # A backslash command: the rest of the line is its own.
                meta = True
                if SENDING_META.match(line, i):
                    ended.append(end_statement())
                break
            elif IDENT_START.match(c) and not ident_char(prev):
                m = IDENT.match(line, i)
                word = m.group(0).lower()
                # psqlscan.l: inside CREATE [OR REPLACE] FUNCTION|PROCEDURE,
                # BEGIN .. END (and CASE .. END within it) hide semicolons.
                if ident_count < 4:
                    idents.append(word[0] if word in ("create", "function", "procedure", "or", "replace") else "")
                ident_count += 1
                pad = idents + [""] * 4
                in_routine = pad[0] == "c" and (
                    pad[1] in ("f", "p") or (pad[1] == "o" and pad[2] == "r" and pad[3] in ("f", "p"))
                )
                if in_routine and paren == 0:
                    if word == "begin":
                        begin_depth += 1
                    elif word == "case":
                        if begin_depth >= 1:
                            begin_depth += 1
                    elif word == "end":
                        if begin_depth > 0:
                            begin_depth -= 1
                buf.append(m.group(0))
                i = m.end()
                continue
            buf.append(c)
            i += 1
        buf.append("\n")
        if ended or meta:
            unit.last = n
            unit.meta = meta
            units.append(unit)
            if any(COPY_FROM_STDIN.match(s) for s in ended):
                in_copy = True
            if meta:
                m = SET_ECHO.match(line)
                if m:
                    echo = m.group(1).strip("'\"") == "all"
                elif COPY_FROM_STDIN.match(line[line.index("\\"):]):
                    in_copy = True
            unit = Unit(n + 1, n + 1)
    # Whatever follows the last statement (comments, blank lines, or an
    # unterminated statement psql runs at the end of its input).
    if unit.echoed:
        unit.last = len(lines) - 1
        tail = " ".join("".join(buf).split())
        if tail:
            unit.statements.append(tail)
        units.append(unit)
    return units


def cut_output(units, sql_lines, out_lines):
    """Each unit's output lines, or None for units psql never echoed (it
    stopped early: the output up to the end went to the last unit found).
    Returns (outputs, problem)."""
    outputs = [None] * len(units)
    p = 0
    prev = None
    for u, unit in enumerate(units):
        block = [sql_lines[n] for n in unit.echoed]
        q = find_block(out_lines, block, p)
        if q is None or (prev is None and q != 0):
            if prev is not None:
                outputs[prev] = out_lines[p:]
            return outputs, "psql's echo of line %d not found: the output stops or strays there" % (unit.first + 1)
        if prev is not None:
            outputs[prev] = out_lines[p:q]
        p = q + len(block)
        prev = u
    if prev is not None:
        outputs[prev] = out_lines[p:]
    return outputs, None


def find_block(hay, block, start):
    if not block:
        return start
    first = block[0]
    n = len(block)
    for q in range(start, len(hay) - n + 1):
        if hay[q] == first and hay[q : q + n] == block:
            return q
    return None


# --------------------------------------------------------------------------
# Classifying a difference.

ERROR_LINE = re.compile(r"^(ERROR|FATAL|PANIC):")
LOST = re.compile(r"server closed the connection unexpectedly|connection to server was lost|terminating connection")
MESSAGE_PART = re.compile(r"^(DETAIL|HINT|CONTEXT|LINE \d+|QUERY|WHERE):|^\s+\^\s*$|^\s")
TABLE_FOOTER = re.compile(r"^\(\d+ rows?\)$")


def error_lines(out):
    return [l for l in out if ERROR_LINE.match(l) or LOST.search(l)]


def strip_statement(text):
    """A statement's text without string, identifier and parenthesised
    contents (so that only its top level is left), upper-cased."""
    res = []
    depth = 0
    i = 0
    mode = None
    escapes = False
    while i < len(text):
        c = text[i]
        if mode:
            if escapes and c == "\\":
                i += 2
                continue
            if c == mode:
                mode = None
            i += 1
            continue
        if c in "'\"":
            mode = c
            # E'...': backslash escapes (a '' inside any string simply
            # closes and reopens it, which changes nothing here).
            escapes = c == "'" and i > 0 and text[i - 1] in "eE" and (i == 1 or not ident_char(text[i - 2]))
        elif c == "$":
            m = DOLLAR_TAG.match(text, i)
            if m and (i == 0 or not ident_char(text[i - 1])):
                end = text.find(m.group(0), m.end())
                i = len(text) if end < 0 else end + len(m.group(0))
                continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        elif depth == 0:
            res.append(c)
        i += 1
    return " ".join("".join(res).upper().split())


def is_explain(statement):
    s = statement.lstrip("( ").lower()
    return s.startswith("explain") or re.search(r"\b\w*explain\w*\s*\(", statement, re.I) is not None


def top_level_order_by(statement):
    return re.search(r"\bORDER\s+BY\b", strip_statement(statement)) is not None


def is_query(statement):
    return re.match(r"^\s*\(*\s*(select|with|values|table)\b", statement, re.I) is not None


def table_parts(out):
    """(header lines, row lines, footer) of a single psql aligned table, or
    None if the output is not exactly one."""
    if len(out) < 3 or not re.match(r"^-+(\+-+)*$", out[1]):
        return None
    end = len(out)
    while end > 0 and out[end - 1] == "":
        end -= 1
    if end < 3 or not TABLE_FOOTER.match(out[end - 1]):
        return None
    rows = out[2 : end - 1]
    if any(TABLE_FOOTER.match(r) for r in rows):
        return None
    return out[:2], rows, out[end - 1 :]


# Which process raised an error is the plan's choice, not the answer's:
# stock's plan may evaluate an expression in a parallel worker (Postgres
# then adds this CONTEXT line), weft's in the leader, with the same
# SQLSTATE and message.
PROCESS_CONTEXT = "CONTEXT:  parallel worker"


def without_process_context(lines):
    return [l for l in lines if l.rstrip() != PROCESS_CONTEXT]


def classify(unit, stock, weft):
    """(class, note) of a unit whose outputs differ."""
    if stock is None or weft is None:
        return "error", "not run in the %s run (psql stopped before it)" % ("stock" if stock is None else "weft")
    e_stock, e_weft = error_lines(stock), error_lines(weft)
    if e_stock != e_weft:
        if not e_stock:
            return "error", "weft raised an error stock did not"
        if not e_weft:
            return "error", "stock raised an error weft did not"
        return "error", "a different error"
    statements = unit.statements
    if statements and all(is_explain(s) for s in statements):
        return "explain", ""
    if e_stock:
        rest_s = [l for l in stock if not MESSAGE_PART.match(l)]
        rest_w = [l for l in weft if not MESSAGE_PART.match(l)]
        if rest_s == rest_w:
            return "error-detail", "the same ERROR, other DETAIL/HINT/CONTEXT"
    if len(statements) == 1 and is_query(statements[0]):
        ts, tw = table_parts(stock), table_parts(weft)
        if ts and tw and ts[0] == tw[0] and ts[2] == tw[2]:
            if collections.Counter(ts[1]) == collections.Counter(tw[1]):
                if not top_level_order_by(statements[0]):
                    return "order", ""
                return "result", "the same rows in another order, under ORDER BY (ties in the sort keys?)"
            if re.search(r"\b(LIMIT|FETCH|OFFSET)\b", strip_statement(statements[0])) and not top_level_order_by(
                statements[0]
            ):
                return "result", "other rows, under LIMIT/OFFSET without ORDER BY"
    return "result", ""


# --------------------------------------------------------------------------
# Known differences: "test:statement-prefix" lines.


def normalize(text):
    return " ".join(text.split()).lower()


def read_known(path):
    known = []
    if not path or not os.path.exists(path):
        return known
    reason = ""
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not line.strip():
                reason = ""
                continue
            if line.lstrip().startswith("#"):
                reason = (reason + " " + line.lstrip()[1:].strip()).strip()
                continue
            # A comment may also follow the entry after two spaces and '#'.
            m = re.match(r"^(.*?)\s{2,}#\s*(.*)$", line)
            entry, note = (m.group(1), m.group(2)) if m else (line, "")
            if ":" not in entry:
                sys.exit("%s:%d: expected test:statement-prefix" % (path, number))
            test, prefix = entry.split(":", 1)
            known.append({"test": test.strip(), "prefix": normalize(prefix), "reason": note or reason,
                          "line": number, "used": 0})
    return known


def match_known(known, test, unit):
    for entry in known:
        if entry["test"] != test or not entry["prefix"]:
            continue
        if any(normalize(s).startswith(entry["prefix"]) for s in unit.statements):
            entry["used"] += 1
            return entry
    return None


# --------------------------------------------------------------------------


LOG_ENTRY = re.compile(r"^\S+ \S+ \S+ \[\d+\] (\S*): (\w+):  (.*)$")


def read_plans(path):
    """Per application name (pg_regress/<test>): [plans auto_explain logged,
    plans holding a Custom Scan (Weft)]."""
    plans = collections.defaultdict(lambda: [0, 0])
    current = None
    for line in read_lines(path):
        m = LOG_ENTRY.match(line)
        if m:
            current = None
            if m.group(2) == "LOG" and m.group(3).startswith("duration:") and "plan:" in m.group(3):
                current = plans[m.group(1)]
                current[0] += 1
                weft_seen = False
            continue
        if current is not None and not weft_seen and "Custom Scan (Weft)" in line:
            current[1] += 1
            weft_seen = True
    return plans


def schedule_tests(path):
    tests = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line.startswith("test:"):
                tests.extend(line[5:].split())
    return tests


def read_lines(path):
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read().split("\n")


def clip(line, width=240):
    if len(line) <= width:
        return line
    return line[:width] + "... (%d more characters)" % (len(line) - width)


def indent(lines, limit):
    shown = lines[:limit]
    text = ["    " + clip(l) for l in shown]
    if len(lines) > limit:
        text.append("    ... (%d more lines)" % (len(lines) - limit))
    if not lines:
        text.append("    (no output)")
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stock", help="the stock run's results/ directory")
    ap.add_argument("weft", help="the weft run's results/ directory")
    ap.add_argument("--sql", required=True, help="the suite's sql/ directory")
    ap.add_argument("--schedule", required=True)
    ap.add_argument("--known", help="known-differences file")
    ap.add_argument("--report", help="also write the report here")
    ap.add_argument("--label", default="")
    ap.add_argument("--timing", default="")
    ap.add_argument("--server-log")
    ap.add_argument("--plans-log", help="server log of a run with auto_explain: count weft's plans per test")
    ap.add_argument("--expected-diffs", help="pg_regress's regression.diffs of the stock run against upstream's expected output")
    ap.add_argument("--lines", type=int, default=30, help="output lines shown per side (default 30)")
    args = ap.parse_args()

    tests = schedule_tests(args.schedule)
    known = read_known(args.known)
    counts = collections.OrderedDict()
    found = collections.defaultdict(list)  # class -> [(test, unit, stock, weft, note, known)]
    problems = []
    total = 0
    for test in tests:
        c = counts.setdefault(test, collections.Counter())
        sql_path = os.path.join(args.sql, test + ".sql")
        if not os.path.exists(sql_path):
            problems.append("%s: no %s" % (test, sql_path))
            continue
        sql = read_lines(sql_path)
        if sql and sql[-1] == "":
            sql = sql[:-1]
        units = split_units(sql)
        outs = {}
        for side, d in (("stock", args.stock), ("weft", args.weft)):
            path = os.path.join(d, test + ".out")
            if not os.path.exists(path):
                problems.append("%s: no output from the %s run (%s)" % (test, side, path))
                outs[side] = None
                continue
            out = read_lines(path)
            cut, problem = cut_output(units, sql, out)
            if problem:
                problems.append("%s (%s run): %s" % (test, side, problem))
            outs[side] = cut
        if outs["stock"] is None or outs["weft"] is None:
            c["no output"] += 1
            continue
        for u, unit in enumerate(units):
            if not unit.statements and not unit.meta:
                # Only comments and blank lines: nothing ran.
                if outs["stock"][u] == outs["weft"][u]:
                    continue
            total += 1
            s, w = outs["stock"][u], outs["weft"][u]
            if s is not None and w is not None:
                s, w = without_process_context(s), without_process_context(w)
            if s == w:
                c["identical"] += 1
                continue
            cls, note = classify(unit, s, w)
            entry = match_known(known, test, unit) if cls in ("error", "error-detail", "result") else None
            c[cls + (" (known)" if entry else "")] += 1
            found[cls].append((test, unit, sql, s, w, note, entry))

    failing = sum(1 for cls in ("result", "error", "error-detail") for f in found[cls] if not f[6])
    known_count = sum(1 for cls in ("result", "error", "error-detail") for f in found[cls] if f[6])

    r = []
    r.append("weft regress: " + args.label)
    if args.timing:
        r.append("time: " + args.timing)
    r.append("")
    r.append("%d statements (units of the .sql files) compared in %d tests" % (total, len(tests)))
    names = [
        ("identical", "identical"),
        ("result", "result differences (FAIL)"),
        ("error", "error differences (FAIL)"),
        ("error-detail", "error detail differences (FAIL)"),
        ("explain", "EXPLAIN-only differences (listed)"),
        ("order", "row-order-only differences (listed)"),
    ]
    for key, title in names:
        n = sum(v[key] for v in counts.values())
        r.append("  %-40s %6d" % (title, n))
    r.append("  %-40s %6d" % ("known differences (allowlisted)", known_count))
    if problems:
        r.append("")
        r.append("PROBLEMS (FAIL):")
        r.extend("  " + p for p in problems)
    if args.server_log and os.path.exists(args.server_log):
        crashes = [l for l in read_lines(args.server_log) if re.search(r"terminated by signal|was terminated by exception|PANIC:", l)]
        if crashes:
            r.append("")
            r.append("SERVER CRASHES in the server log:")
            r.extend("  " + l for l in crashes[:20])
    plans = read_plans(args.plans_log) if args.plans_log else None
    r.append("")
    r.append("per test: identical / result / error / error-detail / explain / order / known"
             + (" / weft's plans of all executed (auto_explain)" if plans is not None else ""))
    for test, c in counts.items():
        kn = sum(v for k, v in c.items() if k.endswith("(known)"))
        flag = "  <-- FAIL" if (c["result"] or c["error"] or c["error-detail"] or c["no output"]) else ""
        taken = ""
        if plans is not None:
            all_, weft_ = plans.get("pg_regress/" + test, [0, 0])
            taken = "  %5d/%-5d" % (weft_, all_)
        r.append(
            "  %-22s %5d %4d %4d %4d %4d %4d %4d%s%s%s"
            % (test, c["identical"], c["result"], c["error"], c["error-detail"], c["explain"], c["order"], kn,
               taken, "  (no output)" if c["no output"] else "", flag)
        )
    if plans is not None:
        all_ = sum(plans.get("pg_regress/" + t, [0, 0])[0] for t in tests)
        weft_ = sum(plans.get("pg_regress/" + t, [0, 0])[1] for t in tests)
        r.append("  weft ran %d of the %d plans executed (top-level and nested) in the count run" % (weft_, all_))

    def detail(cls, title, with_known):
        items = [f for f in found[cls] if bool(f[6]) == with_known]
        if not items:
            return
        r.append("")
        r.append("=" * 78)
        r.append("%s: %d" % (title, len(items)))
        r.append("=" * 78)
        for test, unit, sql, s, w, note, entry in items:
            r.append("")
            r.append("--- %s.sql:%d%s" % (test, unit.start(sql) + 1, ("  [" + note + "]") if note else ""))
            if entry:
                r.append("    known (known-differences line %d)%s" % (entry["line"], ": " + entry["reason"] if entry["reason"] else ""))
            r.append("  SQL:")
            r.extend(indent(unit.sql_lines(sql), 20))
            # Beside an error (a few lines), the other side's first rows
            # are enough; two long outputs get a diff as well.
            short = min(len(s or []), len(w or [])) <= 4
            limit = min(args.lines, 12) if short else args.lines
            r.append("  stock:")
            r.extend(indent(s or [], limit))
            r.append("  weft:")
            r.extend(indent(w or [], limit))
            if not short and (len(s) > limit or len(w) > limit):
                diff = list(difflib.unified_diff(s, w, "stock", "weft", n=1, lineterm=""))
                r.append("  diff:")
                r.extend(indent(diff[2:], 40))

    detail("result", "RESULT DIFFERENCES (FAIL)", False)
    detail("error", "ERROR DIFFERENCES (FAIL)", False)
    detail("error-detail", "ERROR DETAIL DIFFERENCES (FAIL)", False)
    detail("result", "KNOWN RESULT DIFFERENCES (allowlisted, not failing)", True)
    detail("error", "KNOWN ERROR DIFFERENCES (allowlisted, not failing)", True)
    detail("error-detail", "KNOWN ERROR DETAIL DIFFERENCES (allowlisted, not failing)", True)
    for cls, title in (("explain", "EXPLAIN-ONLY DIFFERENCES (listed, not failing)"),
                       ("order", "ROW-ORDER-ONLY DIFFERENCES, no ORDER BY (listed, not failing)")):
        if found[cls]:
            r.append("")
            r.append("%s: %d" % (title, len(found[cls])))
            for test, unit, sql, s, w, note, entry in found[cls]:
                first = unit.sql_lines(sql)[0].strip()
                r.append("  %s.sql:%d  %s" % (test, unit.start(sql) + 1, first[:100]))
    if args.expected_diffs and os.path.exists(args.expected_diffs):
        # Not part of the verdict: the stock run (weft preloaded, off)
        # against upstream's expected output. With weft not loaded
        # (--stock) every test matches it; a test listed here with weft
        # loaded is something weft changes even while off.
        per_test = collections.OrderedDict()
        test = None
        for line in read_lines(args.expected_diffs):
            m = re.match(r"^diff .*/expected/(\S+)\.out ", line)
            if m:
                test = per_test.setdefault(m.group(1), [])
                continue
            if test is not None and re.match(r"^[-+](?![-+]{2} )", line):
                test.append(line)
        if per_test:
            r.append("")
            r.append("NOTE (not failing): the stock run differs from upstream's expected output in %d tests." % len(per_test))
            r.append("When `run.sh --stock` (weft not loaded) shows no such note, these are changes weft makes")
            r.append("while preloaded even with weft.enable=off:")
            for test, lines in per_test.items():
                r.append("  %s: %d lines differ, e.g." % (test, len(lines)))
                r.extend("    " + clip(l) for l in lines[:4])

    unused = [e for e in known if not e["used"]]
    if unused:
        r.append("")
        r.append("known-differences entries that matched nothing (fixed? remove them):")
        for e in unused:
            r.append("  line %d: %s:%s" % (e["line"], e["test"], e["prefix"]))
    r.append("")
    verdict = "FAIL" if failing or problems else "OK"
    r.append("%s: %d failing differences, %d problems, %d known, %d EXPLAIN-only, %d order-only"
             % (verdict, failing, len(problems), known_count, len(found["explain"]), len(found["order"])))
    text = "\n".join(r) + "\n"
    sys.stdout.write(text)
    if args.report:
        with open(args.report, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
    if problems and not failing:
        sys.exit(2)
    sys.exit(1 if failing or problems else 0)


if __name__ == "__main__":
    main()
