#!/usr/bin/env bash
# What only a real SQL Server can settle, in one command (README: "SQL Server: what only a real
# server settles"). Where Docker can run the official SQL Server image, this:
#   1. starts it (mcr.microsoft.com/mssql/server, Developer edition) on 127.0.0.1:$PORT,
#   2. for READ_COMMITTED_SNAPSHOT OFF, then ON, and for each ODBC driver (Microsoft's
#      msodbcsql 18, then FreeTDS): empties the plan cache, runs the behaviour suite against the
#      server (DPONE_STATE_TEST_MSSQL_URL; its tests/test_round_trips.py counts the requests of
#      the storage's session with an Extended Events session and expects one per call, no
#      COMMIT or ROLLBACK), then reports the parameter declarations and cached
#      plans of every statement dpone-state sent (scripts/mssql_plan_report.py: one
#      declaration per statement expected, NULLs included),
#   3. removes the container.
# Exit status: 0 when every run passed; the first failure's status otherwise.
#
#   scripts/mssql-server-check.sh             # run it (needs docker, pyodbc and both drivers)
#   scripts/mssql-server-check.sh --dry-run   # print the commands instead of running them
#
# Environment: DPONE_STATE_MSSQL_CHECK_PORT (default 14330), DPONE_STATE_MSSQL_CHECK_IMAGE
# (default mcr.microsoft.com/mssql/server:2022-latest), PYTHON (default .venv/bin/python).
set -euo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=1; shift; fi
if [[ $# -ne 0 ]]; then echo "usage: $0 [--dry-run]" >&2; exit 2; fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${DPONE_STATE_MSSQL_CHECK_PORT:-14330}"
IMAGE="${DPONE_STATE_MSSQL_CHECK_IMAGE:-mcr.microsoft.com/mssql/server:2022-latest}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
NAME="dpone-state-mssql-check-$$"
PASSWORD="Dpone-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
DATABASE=dpone_test
DRIVERS=("ODBC Driver 18 for SQL Server" "FreeTDS")

run() {  # print (the throwaway password masked), then run unless --dry-run
    local shown="$*"
    printf '+ %s\n' "${shown//$PASSWORD/***}"
    if [[ $DRY_RUN -eq 0 ]]; then "$@"; fi
}

sqlcmd() {  # T-SQL inside the container (the image ships sqlcmd)
    run docker exec "$NAME" /opt/mssql-tools18/bin/sqlcmd -C -b -S localhost -U sa \
        -P "$PASSWORD" -d "${2:-master}" -Q "$1"
}

url_for() {
    local driver="${1// /+}" extra=""
    if [[ "$1" == "FreeTDS" ]]; then extra="&TDS_Version=7.4"; else extra="&TrustServerCertificate=yes"; fi
    printf 'mssql+pyodbc://sa:%s@127.0.0.1:%s/%s?driver=%s%s' "$PASSWORD" "$PORT" "$DATABASE" "$driver" "$extra"
}

cleanup() { if [[ $DRY_RUN -eq 0 ]]; then docker rm -f "$NAME" >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT

if [[ $DRY_RUN -eq 0 ]]; then
    command -v docker >/dev/null || { echo "docker is not installed" >&2; exit 1; }
    docker info >/dev/null 2>&1 || { echo "docker cannot reach a daemon" >&2; exit 1; }
fi

run docker run -d --name "$NAME" -e ACCEPT_EULA=Y -e "MSSQL_SA_PASSWORD=$PASSWORD" \
    -e MSSQL_PID=Developer -p "127.0.0.1:$PORT:1433" "$IMAGE"
echo "+ waiting for SQL Server to accept logins (up to 120 s)"
if [[ $DRY_RUN -eq 0 ]]; then
    for _ in $(seq 1 60); do
        if docker exec "$NAME" /opt/mssql-tools18/bin/sqlcmd -C -S localhost -U sa -P "$PASSWORD" \
            -Q "SELECT 1" >/dev/null 2>&1; then break; fi
        sleep 2
    done
fi
sqlcmd "CREATE DATABASE $DATABASE"

status=0
for rcsi in OFF ON; do
    sqlcmd "ALTER DATABASE $DATABASE SET READ_COMMITTED_SNAPSHOT $rcsi WITH ROLLBACK IMMEDIATE"
    for driver in "${DRIVERS[@]}"; do
        echo "=== READ_COMMITTED_SNAPSHOT $rcsi, driver $driver"
        sqlcmd "DBCC FREEPROCCACHE WITH NO_INFOMSGS" "$DATABASE"
        url="$(url_for "$driver")"
        if ! run env CI=true "DPONE_STATE_TEST_MSSQL_URL=$url" "$PYTHON" -m pytest "$ROOT/tests" \
            -q -p no:randomly -k mssql; then
            [[ $status -eq 0 ]] && status=1
        fi
        if ! run "$PYTHON" "$ROOT/scripts/mssql_plan_report.py" "$url"; then
            [[ $status -eq 0 ]] && status=1
        fi
    done
done
exit "$status"
