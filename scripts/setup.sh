#!/usr/bin/env bash
# Idempotent set-up for `make demo` and `make test` on a fresh machine.
# weft needs the Rust toolchain (1.95 stable, with rustfmt and clippy),
# cargo-nextest, and for the extension: PG 15 server headers, libclang,
# cargo-pgrx 0.18.0 and its config naming the system pg_config.
set -euo pipefail

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
    echo "setup: cargo not found; install Rust 1.95 stable (rustup) first" >&2
    exit 1
fi
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    if need rustup; then
        rustup component add rustfmt clippy
    else
        echo "setup: cargo fmt / cargo clippy missing and no rustup to add them" >&2
        exit 1
    fi
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "setup: installing cargo-nextest from crates.io"
    cargo install cargo-nextest --locked
fi

# --- Postgres build pieces for the extension (pgext/) -----------------------
# Headers and libclang for pgrx's bindgen; pinned cargo-pgrx 0.18.0 (0.19 needs
# a newer Rust than 1.95); and pgrx's config pointing at the system PG 15.
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
if [ ! -x "$PG_CONFIG" ]; then
    echo "setup: PostgreSQL 15 not found at $PG_CONFIG" >&2
    exit 1
fi
if [ ! -d "$($PG_CONFIG --includedir-server)" ] || ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    echo "setup: installing postgresql-server-dev-15 and libclang-dev (apt)"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q postgresql-server-dev-15 libclang-dev pkg-config
fi
if [ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx 0.18.0" ]; then
    echo "setup: installing cargo-pgrx 0.18.0 from crates.io"
    cargo install cargo-pgrx --version 0.18.0 --locked
fi
if ! grep -qs "^pg15 *= *\"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    # pgrx init would run initdb for its own test cluster, which refuses root;
    # writing the config it would write is all weft needs (tests make their
    # own clusters).
    mkdir -p "${PGRX_HOME:-$HOME/.pgrx}"
    printf '[configs]\npg15 = "%s"\n' "$PG_CONFIG" > "${PGRX_HOME:-$HOME/.pgrx}/config.toml"
fi

# --- Locales for the collation tests -----------------------------------------
# The differential tests run in databases created with the libc locale
# en_US.UTF-8 (and with ICU, which the server carries itself); a locale must
# exist on the machine before a database can use it.
if ! locale -a 2>/dev/null | grep -qix 'en_US\.utf-\?8'; then
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    echo "setup: generating the en_US.UTF-8 locale"
    if ! command -v locale-gen >/dev/null 2>&1; then
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q locales
    fi
    $SUDO sed -i 's/^# *\(en_US\.UTF-8 UTF-8\)/\1/' /etc/locale.gen
    grep -q '^en_US\.UTF-8 UTF-8' /etc/locale.gen || echo 'en_US.UTF-8 UTF-8' | $SUDO tee -a /etc/locale.gen >/dev/null
    $SUDO locale-gen
fi

# --- Client drivers for the driver tests (pgext/tests/drivers.rs) -------------
# pgjdbc and a JDK from Debian; psycopg 3 from PyPI (pinned) in a venv under
# the target directory.
if ! need javac || [ ! -f /usr/share/java/postgresql.jar ]; then
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    echo "setup: installing a JDK and pgjdbc (apt)"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q default-jdk-headless libpostgresql-jdbc-java
fi
PSYCOPG_VERSION=3.2.3
CLIENTS_VENV=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}/clients/venv
if ! "$CLIENTS_VENV/bin/python" -c "import psycopg, sys; sys.exit(psycopg.__version__ != '$PSYCOPG_VERSION')" 2>/dev/null; then
    echo "setup: installing psycopg $PSYCOPG_VERSION (PyPI) into $CLIENTS_VENV"
    if ! python3 -c "import ensurepip, venv" 2>/dev/null; then
        if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q python3-venv
    fi
    python3 -m venv "$CLIENTS_VENV"
    "$CLIENTS_VENV/bin/pip" install -q "psycopg[binary]==$PSYCOPG_VERSION"
fi
