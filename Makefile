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

# The demo's own light venv: the package and its dependencies; no drivers, no dev tools.
DEMO_DIR   := .demo
DEMO_VENV  := $(DEMO_DIR)/venv
DEMO_STAMP := $(DEMO_VENV)/.installed

$(DEMO_STAMP): pyproject.toml
	@echo "creating $(DEMO_VENV): the package and its dependencies, no drivers or dev tools"
	@rm -rf $(DEMO_VENV)
	@$(PYTHON) -m venv $(DEMO_VENV)
	@$(DEMO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e . \
	  >$(DEMO_DIR)/pip.log 2>&1 || { cat $(DEMO_DIR)/pip.log; exit 1; }
	@touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)  ## one pipeline's state on the embedded SQLite default, told step by step
	@VENV=$(DEMO_VENV) DEMO_DIR=$(DEMO_DIR) bash examples/demo.sh

sql: $(STAMP)  ## regenerate the shipped offline migration scripts (migrations/sql/)
	$(PY) -c 'from dpone_state.migrate import write_offline_scripts as w; print(*w(), sep="\n")'

lint: $(STAMP)  ## ruff + mypy (strict)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: $(STAMP)  ## lint, then the whole suite with its services started and stopped
	bash scripts/test.sh

bench: $(STAMP)  ## benchmarks (not tests); results in bench/README.md
	bash scripts/bench.sh

clean:  ## everything the targets made: venvs, the demo's database, services, caches, builds
	rm -rf $(VENV) $(DEMO_DIR) .services .mypy_cache .ruff_cache .pytest_cache .hypothesis \
	  build dist dpone_state.egg-info dpone_state.db*
