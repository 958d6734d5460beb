#!/usr/bin/env bash
# Starts or stops the private PostgreSQL 15 cluster used by `make test`, `make demo` and
# `make bench`. PostgreSQL refuses to run as root, so as root the cluster runs as user postgres.
#   scripts/pg.sh start|stop|restart|status|url
# restart keeps the data (fast shutdown: sessions are terminated, as a PostgreSQL restart does to
# clients); ODOO_SYNC_PG_RESTART_MODE=immediate makes it a crash and recovery instead.
# Environment: ODOO_SYNC_PG_PORT (default 55432), ODOO_SYNC_PG_DATA (default /tmp/odoo_sync_pg_<port>),
# ODOO_SYNC_PG_DURABLE=1 to keep PostgreSQL's durable defaults (fsync, synchronous_commit and
# full_page_writes on) instead of trading them for test speed; the benchmarks use it to show what
# capture costs on a production-like server.
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin
PORT=${ODOO_SYNC_PG_PORT:-55432}
DATA=${ODOO_SYNC_PG_DATA:-/tmp/odoo_sync_pg_$PORT}
SOCKDIR=/tmp

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

running() { [ -f "$DATA/postmaster.pid" ] && as_owner "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

case "${1:-}" in
  start)
    if running; then echo "pg: already running on port $PORT"; exit 0; fi
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$DATA"
    as_owner "$PGBIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$DATA.initdb.log" 2>&1 \
      || { cat "$DATA.initdb.log"; exit 1; }
    speed="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    [ "${ODOO_SYNC_PG_DURABLE:-0}" = 1 ] && speed=""
    # A backtrace in the server's environment would end up in the DETAIL of every error.
    as_owner env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$PGBIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start \
      -o "-p $PORT -k $SOCKDIR -c listen_addresses=127.0.0.1 $speed -c max_connections=200 -c max_prepared_transactions=20 -c shared_buffers=256MB" >/dev/null \
      || { cat "$DATA/server.log"; exit 1; }
    echo "pg: started on port $PORT (data $DATA, pid $(head -1 "$DATA/postmaster.pid"))"
    ;;
  stop)
    if running; then
      pid=$(head -1 "$DATA/postmaster.pid")
      # A backend whose client has just gone can deadlock on a second SIGTERM of the fast
      # shutdown: PostgreSQL 15 then exits from inside the signal handler, and glibc's exit
      # handlers wait for the locale lock the interrupted error report holds. Seen once at the
      # end of `make test`; an immediate shutdown (SIGQUIT, then SIGKILL after 5 s) ends it.
      if ! as_owner "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 30 stop >/dev/null; then
        echo "pg: fast shutdown stuck; stopping immediately" >&2
        as_owner "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w -t 60 stop >/dev/null
      fi
      echo "pg: stopped (pid $pid)"
    fi
    ;;
  restart)
    if ! running; then echo "pg: not running on port $PORT" >&2; exit 1; fi
    as_owner env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$PGBIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" \
      -m "${ODOO_SYNC_PG_RESTART_MODE:-fast}" -w -t 60 restart >/dev/null \
      || { tail -20 "$DATA/server.log"; exit 1; }
    echo "pg: restarted on port $PORT (pid $(head -1 "$DATA/postmaster.pid"))"
    ;;
  status)
    if running; then echo "pg: running on port $PORT"; else echo "pg: not running"; exit 1; fi
    ;;
  url)
    echo "host=$SOCKDIR port=$PORT user=postgres dbname=postgres"
    ;;
  *)
    echo "usage: $0 start|stop|restart|status|url" >&2; exit 2 ;;
esac
