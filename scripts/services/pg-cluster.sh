#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster for dpone-state's fault and XID-wraparound tests.
# It is NOT the machine's shared server on 5432: own data dir, own port, trust
# auth, 127.0.0.1 only (no Unix socket), fsync off.
#
# Usage: scripts/services/pg-cluster.sh init|start|stop|restart|status|destroy|url|wrap
#
#   init     initdb (if the data dir is not a cluster yet) and start it
#   start    start an initialized cluster (no-op if running)
#   stop     fast shutdown (no-op if stopped)
#   restart  pg_ctl restart -m fast (for fault tests: drops every connection)
#   status   exit 0 and "running" if it runs, exit 3 and "stopped" otherwise
#   destroy  stop (immediate) and delete the data dir
#   url      print postgresql+psycopg2://postgres@127.0.0.1:PORT/postgres
#   wrap     move the next transaction ID to just before 2^32 (default
#            4294966000: 1296 XIDs before the wraparound into epoch+1), freezing
#            every database on the way; leaves the cluster running
#
# Environment:
#   DPONE_STATE_PG_CLUSTER_DIR       data dir (default /tmp/dpone-state-pg); owned
#                                    by postgres, so every parent must be
#                                    traversable (o+x) by the postgres user
#   DPONE_STATE_PG_CLUSTER_PORT      port (default 55432)
#   DPONE_STATE_PG_CLUSTER_WRAP_XID  XID `wrap` moves to (default 4294966000)
#   DPONE_STATE_PG_BIN               PostgreSQL bin dir (default /usr/lib/postgresql/15/bin)
set -euo pipefail

PGBIN="${DPONE_STATE_PG_BIN:-/usr/lib/postgresql/15/bin}"
DATA="${DPONE_STATE_PG_CLUSTER_DIR:-/tmp/dpone-state-pg}"
PORT="${DPONE_STATE_PG_CLUSTER_PORT:-55432}"
WRAP_XID="${DPONE_STATE_PG_CLUSTER_WRAP_XID:-4294966000}"
LOGFILE="$DATA/server.log"
PG_USER=postgres
# Largest single XID jump `wrap` takes. Each jump must stay well below 2^31 from
# the oldest datfrozenxid (and below the 2^31 - 40M warn limit); VACUUM FREEZE
# after each jump brings datfrozenxid up to the new XID.
WRAP_STEP=1500000000

log() { echo "pg-cluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Never let the caller's libpq environment (e.g. one aimed at the shared server)
# leak into our client calls.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS PGSSLMODE

[[ -x "$PGBIN/pg_ctl" ]] || die "$PGBIN/pg_ctl not found (apt-get install postgresql-15)"

# Run a server-side binary as the postgres user (initdb and pg_ctl refuse root).
as_pg() {
    if [[ "$(id -un)" == "$PG_USER" ]]; then
        (cd / && "$@")
    elif [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u "$PG_USER" -- "$@")
    else
        die "run as root or as $PG_USER"
    fi
}

psql_c() {
    "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres "$@"
}

is_initialized() { [[ -f "$DATA/PG_VERSION" ]]; }

is_running() {
    is_initialized || return 1
    as_pg "$PGBIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

pg_ctl_start() {
    if ! as_pg "$PGBIN/pg_ctl" start -D "$DATA" -l "$LOGFILE" -w -t 30 -s; then
        log "server did not start; last lines of $LOGFILE:"
        tail -n 30 "$LOGFILE" >&2 || true
        exit 1
    fi
}

cmd_init() {
    if is_initialized; then
        [[ "$(cat "$DATA/PG_VERSION")" == 15 ]] || die "$DATA holds a PostgreSQL $(cat "$DATA/PG_VERSION") cluster, not 15"
    else
        if [[ -e "$DATA" ]] && [[ -n "$(ls -A "$DATA" 2>/dev/null)" ]]; then
            die "$DATA exists, is not empty and is not a PostgreSQL cluster; refusing to touch it"
        fi
        mkdir -p "$DATA"
        chown "$PG_USER:$PG_USER" "$DATA"
        chmod 700 "$DATA"
        if ! as_pg test -w "$DATA"; then
            rmdir "$DATA" 2>/dev/null || true
            die "$PG_USER cannot reach $DATA (every parent dir needs o+x)"
        fi
        log "initdb $DATA"
        as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C \
            --no-sync --no-instructions >/dev/null
        cat >>"$DATA/postgresql.conf" <<EOF

# --- dpone-state throwaway test cluster (scripts/services/pg-cluster.sh) ---
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
shared_buffers = 32MB
log_line_prefix = '%m [%p] %d '
EOF
    fi
    cmd_start
}

cmd_start() {
    is_initialized || die "no cluster in $DATA (run: $0 init)"
    if is_running; then
        return 0
    fi
    # The port is fixed in postgresql.conf at init; honour a changed env var too.
    sed -i "s/^port = .*/port = $PORT/" "$DATA/postgresql.conf"
    pg_ctl_start
    log "running on 127.0.0.1:$PORT (data $DATA)"
}

cmd_stop() {
    is_running || return 0
    as_pg "$PGBIN/pg_ctl" stop -D "$DATA" -m fast -w -t 30 -s
}

cmd_restart() {
    is_initialized || die "no cluster in $DATA (run: $0 init)"
    if ! as_pg "$PGBIN/pg_ctl" restart -D "$DATA" -l "$LOGFILE" -m fast -w -t 30 -s; then
        log "restart failed; last lines of $LOGFILE:"
        tail -n 30 "$LOGFILE" >&2 || true
        exit 1
    fi
}

cmd_status() {
    if is_running; then
        echo "running on 127.0.0.1:$PORT (data $DATA)"
        return 0
    fi
    echo "stopped"
    return 3
}

cmd_destroy() {
    if is_running; then
        as_pg "$PGBIN/pg_ctl" stop -D "$DATA" -m immediate -w -t 30 -s || true
    fi
    [[ -e "$DATA" ]] || return 0
    if ! is_initialized && [[ -n "$(ls -A "$DATA" 2>/dev/null)" ]]; then
        die "$DATA is not a PostgreSQL cluster; refusing to delete it"
    fi
    rm -rf -- "$DATA"
    log "destroyed $DATA"
}

cmd_url() {
    echo "postgresql+psycopg2://postgres@127.0.0.1:$PORT/postgres"
}

# Next full transaction ID (epoch << 32 | xid) without consuming one.
next_full_xid() {
    psql_c -c "SELECT pg_snapshot_xmax(pg_current_snapshot())"
}

cmd_wrap() {
    is_initialized || die "no cluster in $DATA (run: $0 init)"
    local full epoch xid next seg steps i start
    cmd_start
    full="$(next_full_xid)"
    epoch=$((full >> 32))
    xid=$((full & 0xFFFFFFFF))
    if ((xid >= WRAP_XID)); then
        log "next XID already $epoch:$xid (>= $WRAP_XID); nothing to do"
        return 0
    fi
    # template0 must be frozen too, or its datfrozenxid holds the XID horizon back.
    psql_c -c "UPDATE pg_database SET datallowconn = true WHERE datname = 'template0'"
    # Equal jumps of at most WRAP_STEP: from a fresh cluster 3 jumps of ~1.43e9.
    start=$xid
    steps=$(( (WRAP_XID - start + WRAP_STEP - 1) / WRAP_STEP ))
    for ((i = 1; i <= steps; i++)); do
        next=$(( start + (WRAP_XID - start) * i / steps ))
        cmd_stop
        # pg_resetwal keeps the epoch; the pg_xact (CLOG) segment holding `next`
        # must exist: 1048576 XIDs per 256 KiB segment, named by 4 upper-case hex digits.
        seg="$(printf '%04X' $((next / 1048576)))"
        as_pg "$PGBIN/pg_resetwal" -x "$next" -D "$DATA" >/dev/null
        if [[ ! -f "$DATA/pg_xact/$seg" ]]; then
            as_pg dd if=/dev/zero of="$DATA/pg_xact/$seg" bs=262144 count=1 status=none
        fi
        pg_ctl_start
        "$PGBIN/vacuumdb" -h 127.0.0.1 -p "$PORT" -U postgres --all --freeze --quiet
        log "next XID moved to $epoch:$next, all databases frozen"
    done
    psql_c -c "UPDATE pg_database SET datallowconn = false WHERE datname = 'template0'"
    full="$(next_full_xid)"
    log "next XID $((full >> 32)):$((full & 0xFFFFFFFF)) = $full; wraparound into epoch $((epoch + 1)) at $(((epoch + 1) << 32))"
}

case "${1:-}" in
    init) cmd_init ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_restart ;;
    status) cmd_status ;;
    destroy) cmd_destroy ;;
    url) cmd_url ;;
    wrap) cmd_wrap ;;
    *)
        echo "usage: $0 init|start|stop|restart|status|destroy|url|wrap" >&2
        exit 2
        ;;
esac
