"""Engines, dialect checks and the import surface (no database server needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import dpone_state
from dpone_state import (
    BackendMismatchError,
    StateUnavailableError,
    UnsupportedBackendError,
    XMinStateStorage,
    create_state_engine,
    safe_url,
)

# The per-backend modules stay importable as before (the package exports the same classes).
from dpone_state.mysql import MysqlXMinStateStorage
from dpone_state.postgres import PostgresRunStateStorage, PostgresXMinStateStorage
from dpone_state.sqlite import SqliteRunStateStorage, SqliteXMinStateStorage

DRIVERS = ["psycopg2", "pymysql", "pyodbc", "google.cloud.bigquery", "sqlalchemy_bigquery", "hvac"]
# What ``import dpone_state`` must not load beside the drivers: the command line's Click and
# Rich, Alembic, PyYAML, and the modules behind the names loaded on first use (XMin extraction
# and health, exactly-once loads, export/import, strategies). Any SQLAlchemy dialect package
# (``sqlalchemy.dialects.<name>``) is refused too: each loads with its own backend's engine.
HEAVY = [
    *DRIVERS,
    *("alembic", "click", "rich", "yaml", "dpone_state.cli", "dpone_state.migrate"),
    *("dpone_state.exactly_once", "dpone_state.portability", "dpone_state.strategy"),
    *("dpone_state.xmin", "dpone_state.xmin_health", "dpone_state.xmin_window"),
]


def test_importing_the_package_imports_no_heavy_module() -> None:
    code = (
        "import sys, dpone_state, dpone_state.postgres, dpone_state.mysql, dpone_state.sqlite\n"
        "import dpone_state.mssql\n"
        "import dpone_state.bigquery\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "loaded += [m for m in sys.modules if m.startswith('sqlalchemy.dialects.')]\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported by `import dpone_state`: {out.stdout}"


def test_names_loaded_on_first_use_are_their_modules_objects() -> None:
    # In a fresh interpreter: this one has loaded every module already.
    code = """
import sys, dpone_state
from dpone_state import XMinExtractor, load_exactly_once
from dpone_state.xmin import XMinExtractor as extractor
from dpone_state.exactly_once import load_exactly_once as load
assert XMinExtractor is extractor and load_exactly_once is load
assert dpone_state.xmin.XMIN_KEY == "__dpone__xmin"  # a submodule by attribute, as before
import dpone_state.xmin_health  # the submodule named like the function keeps the function
assert dpone_state.xmin_health is sys.modules["dpone_state.xmin_health"].xmin_health
assert set(dpone_state.__all__) <= set(dir(dpone_state))
namespace = {}
exec("from dpone_state import *", namespace)
assert {name for name in dpone_state.__all__ if name not in namespace} == set()
for name in dpone_state.__all__:
    value = getattr(dpone_state, name)
    home = sys.modules.get(getattr(value, "__module__", ""), None)
    assert home is None or getattr(home, name, value) is value, name
try:
    dpone_state.no_such_name
except AttributeError as error:
    assert "no_such_name" in str(error)
else:
    raise AssertionError("an unknown name resolved")
"""
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_public_api_is_declared() -> None:
    for name in dpone_state.__all__:
        assert hasattr(dpone_state, name), name
    assert (Path(dpone_state.__file__).parent / "py.typed").exists()


def test_backend_classes_refuse_other_dialects(tmp_path: Path) -> None:
    engine = create_state_engine(f"sqlite:///{tmp_path / 's.db'}")
    SqliteXMinStateStorage(engine)
    SqliteRunStateStorage(engine)
    for cls in (PostgresXMinStateStorage, PostgresRunStateStorage, MysqlXMinStateStorage):
        with pytest.raises(BackendMismatchError, match="sqlite"):
            cls(engine)


def test_unsupported_dialect_is_a_typed_error() -> None:
    with pytest.raises(UnsupportedBackendError, match="oracle"):
        create_state_engine("oracle://u:p@h/db")


def test_connector_must_be_engine_or_url() -> None:
    with pytest.raises(TypeError, match="Engine or a URL"):
        XMinStateStorage(42)  # type: ignore[arg-type]


def test_sqlite_engine_uses_wal_and_busy_timeout(tmp_path: Path) -> None:
    engine = create_state_engine(f"sqlite:///{tmp_path / 'deep' / 'dir' / 's.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_sqlite_default_schema_is_none(tmp_path: Path) -> None:
    assert XMinStateStorage(f"sqlite:///{tmp_path / 's.db'}").schema is None


def test_unreachable_database_is_a_typed_error_without_password() -> None:
    storage = XMinStateStorage("postgresql+psycopg2://user:s3cret-pw@127.0.0.1:1/db")
    with pytest.raises(StateUnavailableError) as info:
        storage.load_state("s", "t")
    assert "s3cret-pw" not in str(info.value)
    assert "127.0.0.1" in str(info.value)
    assert "s3cret-pw" not in repr(storage)
    assert safe_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_not_provisioned_error_says_how_to_provision(tmp_path: Path) -> None:
    storage = XMinStateStorage(f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(dpone_state.StateNotProvisionedError) as caught:
        storage.save_state("s", "t", dpone_state.XMinState(1))
    # the exact command for this store
    assert caught.value.command == f"dpone-state upgrade --url sqlite:///{tmp_path / 's.db'}"
    assert caught.value.command in str(caught.value)
    with sa.create_engine(f"sqlite:///{tmp_path / 's.db'}").connect() as conn:
        assert sa.inspect(conn).get_table_names() == []
