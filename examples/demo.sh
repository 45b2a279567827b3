#!/usr/bin/env bash
# `make demo`: one pipeline's state on the embedded SQLite backend, told step by step.
# The dpone-state command provisions and checks the database; examples/demo.py is the runtime's
# side (checkpoint, compare-and-set, runs, retention). Safe to run again.
#
# VENV      the interpreter's venv (make demo: .demo/venv, the package without dev tools)
# DEMO_DIR  where the state file goes (default .demo; `make clean` removes it)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.demo/venv}
DEMO_DIR=${DEMO_DIR:-.demo}
mkdir -p "$DEMO_DIR"
export PATH="$VENV/bin:$PATH"
export DPONE_STATE_URL="sqlite:///$DEMO_DIR/dpone_state.db"   # the command and demo.py use it

echo "dpone-state demo: the state of one pipeline, in $DEMO_DIR/dpone_state.db"
echo
echo "== 1. Provision the tables with the packaged migrations (idempotent)"
echo "\$ dpone-state upgrade"
dpone-state upgrade

python examples/demo.py

echo
echo "== 6. Health: the database, the migration revision, each table's shape"
echo "\$ dpone-state doctor"
dpone-state doctor
