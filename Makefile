# dpone-state: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Meltano's state store, the peer of the benchmark, in a virtual environment of its own (it pins
# its own dependencies), with psycopg2 and this package beside it.
PEER_VENV  ?= .venv-peer
PEER_STAMP := $(PEER_VENV)/.installed

# The storages' direct execution path uses SQLAlchemy internals: the storage suite also runs on
# the oldest supported SQLAlchemy series (the main venv has the newest).
SA20_VENV  ?= .venv-sqlalchemy-2.0
SA20_STAMP := $(SA20_VENV)/.installed

.PHONY: demo test lint bench bench-peer test-sqlalchemy-2.0 install clean sql

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

# The storage tests that also run on SQLAlchemy 2.0 (the direct execution path reads compiled
# statements' internals): `make test` runs them there without BigQuery (always on Core's
# path); `make test-sqlalchemy-2.0` runs them on every backend.
SA20_TESTS := tests/test_round_trips.py tests/test_statements.py tests/test_xmin_storage.py \
	tests/test_run_storage.py tests/test_faults.py tests/test_concurrency.py \
	tests/test_properties.py tests/test_keeper.py

test: $(STAMP) $(SA20_STAMP)  ## lint, the whole suite (and its storage tests on SQLAlchemy 2.0), services started and stopped
	SA20_PYTHON=$(SA20_VENV)/bin/python SA20_TESTS="$(SA20_TESTS)" bash scripts/test.sh

bench: $(STAMP) $(PEER_STAMP)  ## benchmarks (not tests), the peer included; results in bench/README.md
	PEER_VENV=$(PEER_VENV) bash scripts/bench.sh

$(PEER_STAMP): pyproject.toml
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/python -m pip install --quiet meltano psycopg2-binary -e .
	touch $(PEER_STAMP)

bench-peer: $(PEER_STAMP)  ## only the peer benchmark (Meltano's state store beside dpone-state)
	$(PEER_VENV)/bin/python bench/bench_peer.py

$(SA20_STAMP): pyproject.toml
	$(PYTHON) -m venv $(SA20_VENV)
	$(SA20_VENV)/bin/python -m pip install --quiet --upgrade 'pip>=25.1'  # --group (PEP 735)
	$(SA20_VENV)/bin/python -m pip install --quiet -e '.[all]' --group test 'sqlalchemy>=2.0,<2.1'
	touch $(SA20_STAMP)

test-sqlalchemy-2.0: $(SA20_STAMP)  ## the storage tests on SQLAlchemy 2.0, every backend (services as for make test)
	$(SA20_VENV)/bin/python -m pytest -q -n $${DPONE_STATE_TEST_WORKERS:-2} --dist loadfile $(SA20_TESTS)

clean:  ## everything the targets made: venvs, the demo's database, services, caches, builds
	rm -rf $(VENV) $(PEER_VENV) $(SA20_VENV) $(DEMO_DIR) .services .mypy_cache .ruff_cache .pytest_cache .hypothesis \
	  build dist dpone_state.egg-info dpone_state.db*
