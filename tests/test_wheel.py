"""The package as a user gets it: the README's Install section, run in fresh venvs on a copy of
the repository, and the built wheel, which from an empty directory provisions PostgreSQL and
runs the README's quickstart. Needs the package index (pip downloads the build backend and the
dependencies, or takes them from its cache)."""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import dpone_state
from dpone_state import RunStateStorage, XMinStateStorage, create_state_engine, migrate
from tests.test_readme import BLOCKS, PLACEHOLDERS, REPO, Block, fresh_postgres_database

pytestmark = pytest.mark.timeout(600)


def _sh(command: list[str], cwd: Path, venv: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DPONE_STATE_", "PYTHON"))}
    env.pop("VIRTUAL_ENV", None)
    if venv is not None:  # as after `. venv/bin/activate`
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
        env["VIRTUAL_ENV"] = str(venv)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    done = subprocess.run(
        command, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command} in {cwd}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def _clone(target: Path) -> Path:
    """The repository's files (tracked, and new ones not ignored), as a fresh clone has them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, (raw.decode() for raw in listed)):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


def _venv(path: Path) -> Path:
    _sh([sys.executable, "-m", "venv", str(path)], cwd=path.parent)
    return path


def _install_blocks() -> list[Block]:
    blocks = [b for b in BLOCKS if "install" in b.options]
    assert len(blocks) == 2, "the Install section: from the clone, and a wheel"
    return blocks


def test_install_section_and_the_wheel_run_the_quickstart_on_postgresql(tmp_path: Path) -> None:
    clone = _clone(tmp_path / "clone")
    from_clone, from_wheel = _install_blocks()
    empty = tmp_path / "empty"
    empty.mkdir()
    probe = "import dpone_state, sys; print(dpone_state.__version__, dpone_state.__file__)"

    # 1. `pip install '.[postgres]'` in the clone, into a fresh venv.
    venv = _venv(tmp_path / "venv-clone")
    _sh(["bash", "-e", "-c", from_clone.code], cwd=clone, venv=venv)
    version, where = _sh([str(venv / "bin/python"), "-c", probe], cwd=empty).split()
    assert version == dpone_state.__version__
    assert where.startswith(str(venv))  # installed, not the source tree

    # 2. Build the wheel there, install it into another fresh venv.
    venv = _venv(tmp_path / "venv-wheel")
    _sh(["bash", "-e", "-c", from_wheel.code], cwd=clone, venv=venv)
    (wheel,) = (clone / "dist").glob("dpone_state-*.whl")
    _check_wheel(wheel)
    version, where = _sh([str(venv / "bin/python"), "-c", probe], cwd=empty).split()
    assert version == dpone_state.__version__
    assert where.startswith(str(venv))

    # 3. From the empty directory: provision PostgreSQL with the command, run the quickstart.
    (quickstart,) = [b for b in BLOCKS if b.section == "Quickstart" and b.language == "python"]
    with fresh_postgres_database() as url:
        _sh([str(venv / "bin/dpone-state"), "upgrade", "--url", url], cwd=empty)
        current = json.loads(
            _sh([str(venv / "bin/dpone-state"), "current", "--url", url, "--json"], cwd=empty)
        )
        assert current["current"] == current["head"]
        code = quickstart.code
        for placeholder in PLACEHOLDERS:
            code = code.replace(placeholder, url)
        (tmp_path / "quickstart.py").write_text(code)
        _sh([str(venv / "bin/python"), str(tmp_path / "quickstart.py")], cwd=empty)
        assert list(empty.iterdir()) == []  # everything went to PostgreSQL
        assert migrate.current(url) == current["head"]
        engine = create_state_engine(url)
        try:
            saved = XMinStateStorage(engine).load_state("public", "orders")
            assert saved is not None
            assert saved.xmin_value == 8_589_934_700
            assert len(RunStateStorage(engine).get_run_states_by_dag("orders_daily")) == 1
        finally:
            engine.dispose()


def _check_wheel(wheel: Path) -> None:
    """What an index page and pip read: metadata, licence, and the migrations inside."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(metadata_name))
        license_text = archive.read(
            next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
        ).decode()
    assert metadata["Version"] == dpone_state.__version__
    assert metadata["License-Expression"] == "Apache-2.0"
    assert "Apache License" in license_text
    assert "TERMS AND CONDITIONS FOR USE" in license_text
    assert metadata.get_all("Project-URL")
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    extras = set(metadata.get_all("Provides-Extra"))
    assert {"postgres", "mysql", "mssql", "bigquery", "vault"} <= extras
    assert not extras & {"test", "dev"}  # tools are dependency groups, never published
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload().startswith("# dpone-state\n\ndpone-state keeps")
    assert "dpone_state/py.typed" in names
    assert any(n.startswith("dpone_state/migrations/versions/") for n in names)
    assert any(n.startswith("dpone_state/migrations/sql/") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "examples/", "bench/"))]
