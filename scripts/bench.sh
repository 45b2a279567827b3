#!/usr/bin/env bash
# Benchmarks (not tests): each prints figures measured side by side in one run.
# PostgreSQL: DPONE_STATE_BENCH_PG_URL (default postgresql+psycopg2://postgres@127.0.0.1:5432/test).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VENV:-.venv}/bin/python
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -srm), $($PY --version)"
echo "== import";           $PY bench/bench_import.py
echo "== per call";         $PY bench/bench_calls.py "$@"
echo "== bulk checkpoints"; $PY bench/bench_bulk.py
echo "== scale and pruning"; $PY bench/bench_scale.py
PEER_PY=${PEER_VENV:-.venv-peer}/bin/python
if [ -x "$PEER_PY" ]; then
  echo "== the peer: Meltano's state store"; "$PEER_PY" bench/bench_peer.py
else
  echo "== the peer: skipped (build its venv with make bench-peer)"
fi
