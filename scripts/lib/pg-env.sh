# Sourced by the scripts that run throwaway Postgres clusters
# (scripts/regress/run.sh, scripts/tpcds/run.sh).
#
# as_pg CMD...: runs CMD as the server's OS user. Postgres refuses to run
# as root: as root that is the `postgres` user; otherwise the caller.
#
# pg_env: a clean environment for the server and its clients, as a
# command prefix ("${pg_env[@]}" CMD...): a caller's libpq settings must
# not point them elsewhere, and RUST_BACKTRACE would make weft's panics
# (and so its error reports) print differently.

if [ "$(id -u)" -eq 0 ]; then
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi
pg_env=(env -u PGHOST -u PGHOSTADDR -u PGPORT -u PGUSER -u PGDATABASE -u PGDATA
    -u PGOPTIONS -u PGSERVICE -u PGSERVICEFILE -u PGPASSWORD -u PGPASSFILE
    -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE)
