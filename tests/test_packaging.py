"""The card's layout: the Alembic scripts at the top-level ``migrations/`` serve both the
repository's ``alembic`` command and, shipped in the wheel as ``dpone_state.migrations``,
``dpone-state upgrade`` without a clone."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from dpone_state import DEFAULT_RUN_TABLE, DEFAULT_XMIN_TABLE, migrate

ROOT = Path(__file__).resolve().parent.parent
VERSION_TABLE = "dpone_state_alembic_version"
PIP = (sys.executable, "-m", "pip")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPONE_STATE_")}
    env.update(extra)
    return env


def _provisioned(database: Path) -> tuple[set[str], str]:
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
            version = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    finally:
        engine.dispose()
    return names, str(version)


def _upgrades(command: list[str], cwd: Path, database: Path, state_url: str = "") -> None:
    """Run ``command`` (an upgrade to head) and check the SQLite database it provisioned."""
    env = _env(DPONE_STATE_URL=state_url) if state_url else _env()
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    names, version = _provisioned(database)
    assert {DEFAULT_XMIN_TABLE, DEFAULT_RUN_TABLE} <= names
    assert version == migrate.head_revision()


def test_alembic_ini_reads_the_top_level_migrations() -> None:
    ini = configparser.ConfigParser()
    ini.read(ROOT / "alembic.ini")
    assert ini["alembic"]["script_location"] == "migrations"
    assert (ROOT / "migrations" / "env.py").is_file()
    assert not (ROOT / "dpone_state" / "migrations").exists()


def test_alembic_upgrade_head_from_the_repository_root(tmp_path: Path) -> None:
    database = tmp_path / "state.db"
    alembic = Path(sys.executable).with_name("alembic")
    _upgrades([str(alembic), "upgrade", "head"], ROOT, database, f"sqlite:///{database}")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    source = build / "src"  # a copy: setuptools' in-tree build/ could hold deleted modules
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv*",
            ".demo",
            ".services",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
            "*.db",
        ),
    )
    done = subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        cwd=build,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (found,) = out.glob("dpone_state-*.whl")
    return found


def test_the_wheel_ships_the_migrations_as_a_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (
        "dpone_state/migrations/__init__.py",
        "dpone_state/migrations/env.py",
        "dpone_state/migrations/script.py.mako",
        "dpone_state/migrations/sql/postgresql.sql",
        "dpone_state/migrations/versions/v0002_revision_process_name_index.py",
        "dpone_state/py.typed",
    ):
        assert path in names
    assert not any(name.startswith("migrations/") for name in names)
    for module in (ROOT / "dpone_state").rglob("*.py"):  # every subpackage is listed
        assert module.relative_to(ROOT).as_posix() in names
    for module in (ROOT / "migrations").rglob("*.py"):
        assert f"dpone_state/{module.relative_to(ROOT).as_posix()}" in names


def test_dpone_state_upgrade_from_the_wheel_in_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv holds only the wheel; its dependencies come from this environment's
    site-packages, added by a ``.pth`` (which loads no editable-install hook of this repo)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        [*PIP, "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        env=_env(),
        timeout=300,
    )
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import dpone_state.migrations as m; print(m.__file__)"],
        cwd=work,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv), where
    database = work / "state.db"
    command = [str(venv / "bin" / "dpone-state"), "upgrade", "--url", f"sqlite:///{database}"]
    _upgrades(command, work, database)
