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
if ! bash scripts/services/bigquery-emulator.sh status >/dev/null 2>&1; then
  bash scripts/services/bigquery-emulator.sh start && STARTED+=(bigquery-emulator)
fi

"$VENV/bin/python" -m pytest "$@"
