"""Every example of README.md runs, so none can rot.

Each ``python`` and ``sh`` block runs as a new process in an empty directory (with
``DPONE_STATE_*`` unset), once on SQLite and once on a PostgreSQL database created for it and
dropped after. The only change made to a block's text: the example URLs (``PLACEHOLDERS``)
become the test database's URL. ``yaml`` blocks are validated by ``load_state_settings``.
A comment on the line before a block changes how it runs (``OPTIONS``); ``install`` blocks are
run by tests/test_wheel.py in a fresh venv.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from dpone_state import (
    RunState,
    RunStateStatus,
    RunStateStorage,
    XMinState,
    XMinStateStorage,
    create_state_engine,
    load_state_settings,
    migrate,
)
from tests.backends import BACKENDS, IN_CI
from tests.conftest import _engine_or_skip

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

#: The URLs the README's examples use; each run swaps them for its test database's URL.
PLACEHOLDERS = (
    "postgresql+psycopg2://etl@db.internal/meta",
    "postgresql+psycopg2://etl@db/meta",
    "sqlite:///dpone_state.db",
)
#: ``<!-- readme-test: OPTION[: REASON | ARGUMENT]; ... -->`` on the line before a block.
OPTIONS = {
    "skip": "not run; the reason (required) says why, and what tests it instead",
    "install": "run by tests/test_wheel.py in a fresh venv",
    "once": "backend-independent: run once (with the SQLite run)",
    "postgresql": "PostgreSQL only",
    "seeded": "the database is provisioned and holds one checkpoint and one run",
    "manifest": "a manifest.yaml for the backend is in the working directory",
    "files": "repository files or folders copied into the working directory",
    "xmin-source": "source_engine, state_url, storage, load_into_target, commit_target defined",
}
LANGUAGES = {"python", "sh", "yaml", "sql", ""}  # "" is output or a listing, never run
#: Languages shown for a server the suite does not run (T-SQL): such a block says why.
SKIP_ONLY = {"sql"}
BACKEND_NAMES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Block:
    """One fenced block of the README and its options."""

    line: int  # of the opening fence, 1-based
    language: str
    code: str
    options: dict[str, str] = field(default_factory=dict)
    section: str = ""  # the ``## `` heading it is under

    @property
    def id(self) -> str:
        return f"line{self.line}-{self.language}"


def _options(line: str) -> dict[str, str]:
    match = re.fullmatch(r"<!-- readme-test: (.*) -->", line.strip())
    if match is None:
        return {}
    if match.group(1).startswith("skip:"):
        return {"skip": match.group(1)[len("skip:") :].strip()}
    options = {}
    for part in match.group(1).split(";"):
        name, _, argument = part.strip().partition(" ")
        options[name] = argument.strip()
    return options


def readme_blocks() -> list[Block]:
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks, index, section = [], 0, ""
    while index < len(lines):
        if lines[index].startswith("## "):
            section = lines[index][3:].strip()
        opening = re.fullmatch(r"```(\S*)", lines[index].strip())
        if opening is None:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
        previous = lines[index - 1] if index else ""
        code = "\n".join(lines[index + 1 : end]) + "\n"
        blocks.append(Block(index + 1, opening.group(1), code, _options(previous), section))
        index = end + 1
    return blocks


BLOCKS = readme_blocks()
RUNNABLE = [
    b for b in BLOCKS if b.language in ("python", "sh") and not {"skip", "install"} & set(b.options)
]


def _cases() -> Iterator[object]:
    for block in RUNNABLE:
        for backend in BACKEND_NAMES:
            if "once" in block.options and backend != "sqlite":
                continue
            if "postgresql" in block.options and backend != "postgresql":
                continue
            yield pytest.param(block, backend, id=f"{block.id}-{backend}")


def test_every_example_runs_or_says_why() -> None:
    assert len(RUNNABLE) >= 6
    for block in BLOCKS:
        where = f"README.md:{block.line}"
        assert block.language in LANGUAGES, f"{where}: a ```{block.language} block is never run"
        assert set(block.options) <= set(OPTIONS), f"{where}: unknown option {block.options}"
        if "skip" in block.options:
            assert len(block.options["skip"]) > 10, f"{where}: a skipped block says why"
        if block.language in SKIP_ONLY:
            assert "skip" in block.options, f"{where}: a ```{block.language} block says why"
        if block.options and block.language not in ("python", "sh"):
            assert "skip" in block.options, f"{where}: options on a block that never runs"
    assert [b for b in BLOCKS if "install" in b.options], "the Install section is tested"


def test_readme_reads_well_as_a_long_description() -> None:
    """An index page shows the README without the repository: no relative links, and it
    starts with what the package is, not with a make target."""
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)]*)\)", text)
    assert [link for link in links if not link.startswith("https://")] == []
    first_paragraph = text.split("\n\n")[1]
    assert first_paragraph.startswith("dpone-state keeps")


@pytest.mark.parametrize(
    "block", [pytest.param(b, id=b.id) for b in BLOCKS if b.language == "yaml"]
)
def test_yaml_example_is_a_valid_state_block(block: Block) -> None:
    settings = load_state_settings(yaml.safe_load(block.code))
    assert settings.type in ("sqlite", "postgres", "mssql", "bigquery", "mysql")


# ------------------------------------------------------------------ running python and sh


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A database of its own on the suite's PostgreSQL server, dropped afterwards."""
    admin, _ = _engine_or_skip(BACKENDS["postgresql"], Path())
    name = f"readme_{uuid.uuid4().hex[:10]}"
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def example_database(backend: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """(URL as the example writes it, URL for this process) of the backend's test database."""
    if backend == "sqlite":
        yield "sqlite:///dpone_state.db", f"sqlite:///{workdir / 'dpone_state.db'}"
        return
    with fresh_postgres_database() as url:
        yield url, url


def _seed(url: str) -> None:
    migrate.upgrade(url)
    engine = create_state_engine(url)
    try:
        XMinStateStorage(engine).save_state("public", "orders", XMinState(8_589_934_600))
        day = datetime(2024, 5, 1, 2, tzinfo=timezone.utc)
        RunStateStorage(engine).save_run_state(
            RunState(
                dag_id="orders_daily",
                source_schema="public",
                source_table="orders",
                target_schema="dwh",
                target_table="orders",
                load_strategy="incremental_merge",
                execution_date=day,
                state=RunStateStatus.SUCCESS,
                started_at=day,
            )
        )
    finally:
        engine.dispose()


XMIN_PRELUDE = """\
import sqlalchemy as _sa

from dpone_state import XMinStateStorage as _XMinStateStorage
from dpone_state import migrate as _migrate

source_engine = _sa.create_engine({source_url!r})
with source_engine.begin() as _conn:
    _conn.execute(_sa.text("CREATE TABLE public.orders (id int PRIMARY KEY, region text)"))
    _conn.execute(_sa.text("INSERT INTO public.orders VALUES (1, 'eu'), (2, 'us'), (3, 'eu')"))
state_url = {state_url!r}
_migrate.upgrade(state_url)
storage = _XMinStateStorage(state_url)
loaded = []


def load_into_target(batch):
    loaded.extend(row["id"] for row in batch)


def commit_target():
    pass


"""
XMIN_EPILOGUE = """
if "run" in globals():  # an extraction ran: it read the EU rows, in full (no checkpoint yet)
    assert sorted(loaded) == [1, 3], loaded
    assert run.rows_read == 2 and run.window.kind.value == "full", run.window
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPONE_STATE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.parametrize(("block", "backend"), list(_cases()))
def test_readme_example_runs(block: Block, backend: str, tmp_path: Path) -> None:
    if "dpone_state.mssql" in block.code and not IN_CI:
        pytest.importorskip("pyodbc", reason="unixODBC missing: scripts/services/odbc.sh install")
    with example_database(backend, tmp_path) as (url, local_url):
        code = block.code
        for placeholder in PLACEHOLDERS:
            code = code.replace(placeholder, url)
        if "seeded" in block.options:
            _seed(local_url)
        if "manifest" in block.options:
            state = (
                {"type": "sqlite", "url": url}
                if backend == "sqlite"
                else {"type": "postgres", "connection_type": "url", "url": url}
            )
            (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"state": state}))
        for name in block.options.get("files", "").split():
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, tmp_path / name)
            else:
                shutil.copy(REPO / name, tmp_path / name)
        if "xmin-source" in block.options:
            with fresh_postgres_database() as source_url:
                prelude = XMIN_PRELUDE.format(source_url=source_url, state_url=url)
                _run(block, prelude + code + XMIN_EPILOGUE, tmp_path)
            return
        _run(block, code, tmp_path)


def _run(block: Block, code: str, workdir: Path) -> None:
    script = workdir / ("example.py" if block.language == "python" else "example.sh")
    script.write_text(code, encoding="utf-8")
    command = (
        [sys.executable, str(script)]
        if block.language == "python"
        else ["bash", "-e", "-o", "pipefail", str(script)]
    )
    done = subprocess.run(
        command,
        check=False,
        cwd=workdir,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (
        f"README.md:{block.line} ({block.language}) exited {done.returncode}\n"
        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )


def test_the_quickstarts_error_example_is_the_real_message() -> None:
    (example,) = [
        b for b in BLOCKS if b.section == "Quickstart" and b.code.startswith("state table")
    ]
    storage = XMinStateStorage(PLACEHOLDERS[0])  # no connection is made
    assert " ".join(example.code.split()) == str(storage._not_provisioned("it does not exist"))
