# dpone-state: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench install clean sql

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade 'pip>=25.1'  # --group (PEP 735 dependency groups)
	$(PY) -m pip install --quiet -e '.[all]' --group dev
	touch $(STAMP)

demo: $(STAMP)  ## the main job on the embedded SQLite default, through the dpone-state command
	VENV=$(VENV) bash examples/demo.sh

sql: $(STAMP)  ## regenerate the shipped offline migration scripts (dpone_state/migrations/sql/)
	$(PY) -c 'from dpone_state.migrate import write_offline_scripts as w; print(*w(), sep="\n")'

lint: $(STAMP)  ## ruff + mypy (strict)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: $(STAMP)  ## lint, then the whole suite with its services started and stopped
	bash scripts/test.sh

bench: $(STAMP)  ## benchmarks (not tests); results in bench/README.md
	bash scripts/bench.sh

clean:
	rm -rf $(VENV) .services .mypy_cache .ruff_cache .pytest_cache dpone_state.db*
