#!/usr/bin/env bash
# The whole suite: lint, start the test services this repo owns, run pytest, stop them.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"

cleanup() {
  for svc in "${STARTED[@]:-}"; do
    [ -n "$svc" ] && bash "scripts/services/$svc.sh" stop >/dev/null 2>&1 || true
  done
}
STARTED=()
trap cleanup EXIT

# Services owned by this repo (installed and started here, stopped on exit) are added below.
# BigQuery emulator (the suite reaches it at the port the script starts it on).
if ! bash scripts/services/bigquery-emulator.sh status >/dev/null 2>&1; then
  bash scripts/services/bigquery-emulator.sh start && STARTED+=(bigquery-emulator)
fi
export DPONE_STATE_TEST_BIGQUERY_EMULATOR="${DPONE_STATE_TEST_BIGQUERY_EMULATOR:-http://127.0.0.1:${DPONE_STATE_BQ_EMULATOR_PORT:-9050}}"

# OpenBao (Vault API) dev server for the `connection_type: vault` tests.
bash scripts/services/openbao.sh install
if ! bash scripts/services/openbao.sh status >/dev/null; then
  bash scripts/services/openbao.sh start
  STARTED+=(openbao)
fi
eval "$(bash scripts/services/openbao.sh env)"
export DPONE_STATE_TEST_VAULT_ADDR="$VAULT_ADDR" DPONE_STATE_TEST_VAULT_TOKEN="$VAULT_TOKEN"
unset VAULT_ADDR VAULT_TOKEN

"$VENV/bin/python" -m pytest "$@"
