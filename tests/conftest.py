"""Fixtures of the behaviour suite: every test that takes ``backend`` runs on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dpone_state import RunStateStorage, XMinStateStorage
from dpone_state.cli import main as cli_main
from tests.backends import BACKENDS, IN_CI, Backend, create_dpone_bigquery_tables, reachable


@dataclass
class StateDB:
    """A provisioned, isolated state store on one backend."""

    backend: Backend
    engine: Engine
    url: str
    schema: str | None

    def xmin(self, table: str = "etl_xmin_state") -> XMinStateStorage:
        return XMinStateStorage(self.engine, schema=self.schema, table=table)

    def runs(self, table: str = "etl_run_state") -> RunStateStorage:
        return RunStateStorage(self.engine, schema=self.schema, table=table)


def _engine_or_skip(backend: Backend, tmp_root: Path) -> tuple[Engine, str]:
    url = backend.url
    if backend.name == "sqlite" and url is None:
        url = f"sqlite:///{tmp_root / 'state.db'}"
    if url is None:
        pytest.skip(f"{backend.name}: not configured; {backend.how_to_enable}")
    engine = backend.make_engine(url)
    problem = (backend.probe or reachable)(engine)
    if problem is not None:
        engine.dispose()
        message = f"{backend.name} not reachable ({problem}); {backend.how_to_enable}"
        if IN_CI and backend.required_in_ci:
            pytest.fail(f"required in CI: {message}", pytrace=False)
        pytest.skip(message)
    return engine, url


def adopt_legacy_tables(engine: Engine, url: str, schema: str) -> None:
    """dpone's own BigQuery tables, then `dpone-state upgrade` on them (exit 0 or fail)."""
    create_dpone_bigquery_tables(engine, schema)
    code = cli_main(["--url", url, "--schema", schema, "upgrade"])
    assert code == 0, "dpone-state upgrade failed on dpone's legacy BigQuery tables"


@pytest.fixture(scope="session", params=sorted(BACKENDS))
def state_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StateDB]:
    """A state store provisioned once per backend and session (tables emptied per test)."""
    backend = BACKENDS[request.param]
    engine, url = _engine_or_skip(backend, tmp_path_factory.mktemp(backend.name))
    schema = backend.new_schema_name()
    db = StateDB(backend, engine, url, schema)
    if backend.adopts_legacy:
        assert schema is not None
        adopt_legacy_tables(engine, url, schema)
    else:
        db.xmin().create_tables()
        db.runs().create_tables()
    try:
        yield db
    finally:
        backend.drop_schema(engine, schema)
        engine.dispose()


@pytest.fixture
def db(state_db: StateDB) -> StateDB:
    """The backend's state store with both default tables empty."""
    with state_db.engine.begin() as conn:
        for storage in (state_db.xmin(), state_db.runs()):
            conn.execute(sa.delete(storage.table).where(sa.true()))  # BigQuery needs a WHERE
    return state_db


@pytest.fixture
def xmin(db: StateDB) -> XMinStateStorage:
    return db.xmin()


@pytest.fixture
def runs(db: StateDB) -> RunStateStorage:
    return db.runs()
