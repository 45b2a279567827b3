#!/usr/bin/env bash
# The whole suite from a fresh machine: the system packages it needs, lint, the test services
# this repo owns (each on a free port, started for this run and stopped at its end), pytest.
# Two runs at once on one machine (two checkouts, or one) never share or stop a service.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

# unixODBC + FreeTDS: the real pyodbc connect path (tests/test_mssql_engine.py) needs them.
bash scripts/services/odbc.sh ensure

"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"

# free_port VAR [SPAN]: set VAR to a port P such that P .. P+SPAN-1 are free now and none was
# handed out before by this script (the kernel picks P; picked again on a clash).
TAKEN=()
free_port() {
  local port span=${2:-1}
  port=$("$VENV/bin/python" - "$span" "${TAKEN[@]}" <<'EOF'
import socket, sys
span, taken = int(sys.argv[1]), {int(p) for p in sys.argv[2:]}
for _ in range(200):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if taken & set(range(port, port + span)):
        continue
    sockets = []
    try:
        for offset in range(span):
            s = socket.socket()
            sockets.append(s)
            s.bind(("127.0.0.1", port + offset))
    except OSError:
        continue
    finally:
        for s in sockets:
            s.close()
    print(port)
    break
else:
    sys.exit("no free port found")
EOF
  )
  TAKEN+=($(seq "$port" $((port + span - 1))))
  printf -v "$1" '%s' "$port"
}

STARTED=()
cleanup() {
  local svc
  for svc in "${STARTED[@]}"; do
    eval "$svc" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

# BigQuery emulator, unless the caller names one (DPONE_STATE_TEST_BIGQUERY_EMULATOR) or a
# real project (DPONE_STATE_TEST_BIGQUERY_PROJECT).
if [[ -z "${DPONE_STATE_TEST_BIGQUERY_EMULATOR:-}" && -z "${DPONE_STATE_TEST_BIGQUERY_PROJECT:-}" ]]; then
  bq_port=${DPONE_STATE_BQ_EMULATOR_PORT:-}
  [[ -n "$bq_port" ]] || free_port bq_port
  bq_grpc_port=${DPONE_STATE_BQ_EMULATOR_GRPC_PORT:-}
  [[ -n "$bq_grpc_port" ]] || free_port bq_grpc_port
  bq=(env "DPONE_STATE_BQ_EMULATOR_PORT=$bq_port" "DPONE_STATE_BQ_EMULATOR_GRPC_PORT=$bq_grpc_port"
    bash scripts/services/bigquery-emulator.sh)
  if ! "${bq[@]}" status >/dev/null 2>&1; then   # one this checkout runs there already: reused
    STARTED+=("${bq[*]} stop")
    "${bq[@]}" start
  fi
  export DPONE_STATE_TEST_BIGQUERY_EMULATOR="http://127.0.0.1:$bq_port"
fi

# OpenBao (Vault API) dev server for the `connection_type: vault` tests, unless the caller
# names one (DPONE_STATE_TEST_VAULT_ADDR).
if [[ -z "${DPONE_STATE_TEST_VAULT_ADDR:-}" ]]; then
  vault_port=${DPONE_STATE_TEST_VAULT_PORT:-}
  [[ -n "$vault_port" ]] || free_port vault_port 2   # the dev server binds PORT+1 too
  export DPONE_STATE_TEST_VAULT_PORT=$vault_port
  if ! bash scripts/services/openbao.sh status >/dev/null 2>&1; then
    STARTED+=("DPONE_STATE_TEST_VAULT_PORT=$vault_port bash scripts/services/openbao.sh stop")
    bash scripts/services/openbao.sh start
  fi
  eval "$(bash scripts/services/openbao.sh env)"
  export DPONE_STATE_TEST_VAULT_ADDR="$VAULT_ADDR" DPONE_STATE_TEST_VAULT_TOKEN="$VAULT_TOKEN"
  unset VAULT_ADDR VAULT_TOKEN
fi

# The throwaway PostgreSQL clusters of tests/test_faults.py, test_xmin_extraction.py and
# test_xmin_safety.py (a primary and its standby): a free port each (their data dirs are named
# after it) unless these are set.
CLUSTER_PORTS=(DPONE_STATE_TEST_FAULT_PG_PORT DPONE_STATE_TEST_XMIN_CLUSTER_PORT
  DPONE_STATE_TEST_XMIN_SAFETY_PORT DPONE_STATE_TEST_XMIN_STANDBY_PORT)
for var in "${CLUSTER_PORTS[@]}"; do
  [[ -n "${!var:-}" ]] || free_port "$var"
  export "${var?}"
done

echo "test services: BigQuery emulator ${DPONE_STATE_TEST_BIGQUERY_EMULATOR:-(real project)}," \
  "Vault $DPONE_STATE_TEST_VAULT_ADDR, throwaway clusters on ports" \
  "$DPONE_STATE_TEST_FAULT_PG_PORT $DPONE_STATE_TEST_XMIN_CLUSTER_PORT" \
  "$DPONE_STATE_TEST_XMIN_SAFETY_PORT $DPONE_STATE_TEST_XMIN_STANDBY_PORT"
# Two workers by default (DPONE_STATE_TEST_WORKERS; 1: one process): each test file runs whole
# in one worker (--dist loadfile), since a file's throwaway cluster is on one port.
WORKERS=${DPONE_STATE_TEST_WORKERS:-2}
PARALLEL=()
if [[ "$WORKERS" -gt 1 ]]; then
  PARALLEL=(-n "$WORKERS" --dist loadfile)
fi
"$VENV/bin/python" -m pytest "${PARALLEL[@]}" "$@"

# The storage tests again on SQLAlchemy 2.0 (make test names its venv and the files), when the
# whole suite ran (no pytest arguments); BigQuery takes Core's path, the same on both series.
if [[ $# -eq 0 && -n "${SA20_PYTHON:-}" ]]; then
  echo "the storage tests on SQLAlchemy $("$SA20_PYTHON" -c 'import sqlalchemy; print(sqlalchemy.__version__)')"
  # shellcheck disable=SC2086  # a list of paths
  "$SA20_PYTHON" -m pytest "${PARALLEL[@]}" -q $SA20_TESTS -k "not bigquery"
fi
