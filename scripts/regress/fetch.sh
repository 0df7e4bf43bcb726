#!/usr/bin/env bash
# Fetches Postgres 15's regression suite (src/test/regress of Debian's
# `postgresql-15` source package) and builds its C helper library
# (regress.so) against the installed server headers, once: later calls find
# both in the cache and return at once. Prints the cache directory holding
#   regress/  sql/, expected/, data/, parallel_schedule, ... of the suite
#   lib/      regress.so, the suite's C functions (test_setup.sql loads it),
#             and refint.so, autoinc.so (contrib/spi, which the triggers
#             test loads), built from the same source: the installed
#             contrib's may be of another minor version whose behaviour
#             the suite's expected output does not match.
#
# Cache: $WEFT_REGRESS_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/weft/regress
# (target/regress-cache without a home directory).
# Works as root (CI) and as a normal user: apt runs with a private state
# directory under the cache (its own lists, its own deb-src entries made from
# the system's apt sources), so the system's apt configuration is never
# touched and no root is needed.
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
if [ -n "${WEFT_REGRESS_CACHE:-}" ]; then
    CACHE=$WEFT_REGRESS_CACHE
elif [ -n "${XDG_CACHE_HOME:-}${HOME:-}" ]; then
    CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/weft/regress
else
    # No home (some CI containers): the repository's target directory.
    CACHE=$(cd "$(dirname "$0")/../.." && pwd)/target/regress-cache
fi
say() { echo "regress/fetch: $*" >&2; }

# Done already? The stamp is written last, so a run interrupted half-way is
# redone from the start; it names the cache's layout, so that a cache an
# older version of this script made is made again.
LAYOUT=3
if [ "$(cat "$CACHE/ready" 2>/dev/null)" = "$LAYOUT" ]; then
    echo "$CACHE"
    exit 0
fi

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
APT="$CACHE/apt"
rm -rf "$APT" "$CACHE/regress" "$CACHE/lib" "$CACHE/ready"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/sources.list.d" "$APT/download"

# --- deb-src entries from the system's own apt sources ----------------------
# Every `deb` source of the system's (one-line .list files and deb822
# .sources files alike) becomes a `deb-src` one. Third-party repositories are
# harmless here (they may just have no Sources index: apt only warns).
python3 - "$APT/sources.list.d/weft.sources" <<'PY'
import glob, re, sys
out = []
def add(uris, suites, comps, signed):
    entry = "Types: deb-src\nURIs: %s\nSuites: %s\nComponents: %s\n" % (uris, suites, comps)
    if signed:
        entry += "Signed-By: %s\n" % signed
    out.append(entry)
# One-line format: deb [options] uri suite component...
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        opts = m.group(1) or ""
        signed = re.search(r"signed-by=(\S+?)\s*(\]|$)", opts)
        add(m.group(2), m.group(3), m.group(4) or "main", signed.group(1) if signed else None)
# deb822 format: paragraphs of Field: value, Types may list several.
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    text = open(path).read()
    for para in re.split(r"\n\s*\n", text):
        fields = {}
        for line in para.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        add(fields.get("uris", ""), fields.get("suites", ""), fields.get("components", "main"),
            fields.get("signed-by"))
if not out:
    sys.exit("no deb entries in /etc/apt/sources.list or /etc/apt/sources.list.d/")
open(sys.argv[1], "w").write("\n".join(out))
PY

# apt with every path it writes under the cache. As root apt would hand
# downloads to its unprivileged _apt user, which cannot write into a
# root-owned cache under /root: let root download itself (the files are
# still checked against the signed indexes).
apt_opts=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$APT/sources.list.d"
    -o "Dir::State::Lists=$APT/lists"
    -o "Dir::Cache=$APT/cache"
    -o "Debug::NoLocking=1"
)
if [ "$(id -u)" -eq 0 ]; then
    apt_opts+=(-o "APT::Sandbox::User=root")
fi

say "reading the Sources indexes (private apt state in $APT)"
apt-get "${apt_opts[@]}" -q update >"$APT/update.log" 2>&1 || {
    cat "$APT/update.log" >&2
    say "apt-get update failed"
    exit 1
}

# Every version of postgresql-15's source the indexes list, the installed
# server's first (its tests match it best), then newest first. An index may
# list a version its archive does not serve (the security archive at times
# lists a newer one than it has): on a failed download the next is tried.
installed=$("$PG_CONFIG" --version | sed -n 's/.*(Debian \([^)]*\)).*/\1/p')
mapfile -t versions < <(
    { [ -n "$installed" ] && echo "$installed"
      apt-cache "${apt_opts[@]}" showsrc postgresql-15 2>/dev/null | sed -n 's/^Version: //p' | sort -Vr -u
    } | awk '!seen[$0]++'
)
listed=$(apt-cache "${apt_opts[@]}" showsrc postgresql-15 2>/dev/null | sed -n 's/^Version: //p' | tr '\n' ' ')
if [ -z "$listed" ]; then
    say "no postgresql-15 source package in the Sources indexes of the system's apt sources"
    exit 1
fi

got=
for version in "${versions[@]}"; do
    case " $listed " in *" $version "*) ;; *) continue ;; esac
    say "downloading postgresql-15 $version source"
    rm -rf "$APT/download" && mkdir -p "$APT/download"
    # --download-only: only the upstream tarball is needed (the regression
    # suite is not patched by Debian), so no dpkg-source/dpkg-dev.
    if (cd "$APT/download" && apt-get "${apt_opts[@]}" -q source --download-only "postgresql-15=$version") >"$APT/source.log" 2>&1; then
        got=$version
        break
    fi
    grep -m3 -E '^(E|Err):' "$APT/source.log" >&2 || tail -3 "$APT/source.log" >&2
    say "postgresql-15 $version could not be downloaded; trying the next version"
done
if [ -z "$got" ]; then
    say "no listed version of postgresql-15's source could be downloaded"
    exit 1
fi

tarball=$(ls "$APT"/download/postgresql-15_*.orig.tar.* | head -1)
say "extracting src/test/regress from $(basename "$tarball")"
mkdir -p "$CACHE/extract"
tar -xf "$tarball" -C "$CACHE/extract" --wildcards '*/src/test/regress/*' '*/contrib/spi/*'
mv "$CACHE"/extract/postgresql-*/src/test/regress "$CACHE/regress"
mkdir -p "$CACHE/lib"
cp "$CACHE"/extract/postgresql-*/contrib/spi/refint.c "$CACHE"/extract/postgresql-*/contrib/spi/autoinc.c "$CACHE/lib/"
rm -rf "$CACHE/extract" "$APT/download"
echo "$got" >"$CACHE/regress/VERSION"

# regress.so with the server's own flags that change what C code means
# (-fwrapv, -fno-strict-aliasing, -fexcess-precision=standard: float results
# as the server computes them).
# -DREFINT_VERBOSE as contrib/spi/Makefile builds refint (its NOTICEs are
# in the triggers test's output).
for lib in "$CACHE/regress/regress.c" "$CACHE/lib/refint.c" "$CACHE/lib/autoinc.c"; do
    name=$(basename "$lib" .c)
    say "building $name.so"
    gcc -O2 -fPIC -shared -fno-strict-aliasing -fwrapv -fexcess-precision=standard -DREFINT_VERBOSE \
        -I"$("$PG_CONFIG" --includedir-server)" -o "$CACHE/lib/$name.so" "$lib"
done

echo "$LAYOUT" >"$CACHE/ready"
say "ready: postgresql-15 $got's regression suite in $CACHE"
echo "$CACHE"
