#!/usr/bin/env bash
# `make demo`: the main job on the embedded SQLite default, driven by the dpone-state command.
# Provision with the packaged migrations, let the runtime (examples/demo.py) checkpoint a table
# and record a run, then inspect, repair and prune the state from the shell.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export DPONE_STATE_URL=sqlite:///demo/dpone_state.db   # what both the command and demo.py use

state() {
  echo
  echo "\$ dpone-state $*"
  "$VENV/bin/dpone-state" "$@"
}

state upgrade                                # provision (idempotent)
echo
echo "\$ python examples/demo.py                  # the runtime's side: checkpoint + run"
"$VENV/bin/python" examples/demo.py
state xmin list
state runs list demo_orders --limit 3
state runs dags
state xmin set public.orders 5000 --yes      # repair a checkpoint (compare-and-set; it says how far it moves)
state xmin show public.orders --json
state runs prune --days 30 --dry-run
state export --output demo/state.ndjson      # both tables, every field: what `import`/`copy` move
state copy --from "$DPONE_STATE_URL" --to sqlite:///demo/copy.db --yes
state doctor
echo
echo "\$ dpone-state sql --dialect mssql | head    # the script a DBA runs by hand"
"$VENV/bin/dpone-state" sql --dialect mssql | head -n 8
