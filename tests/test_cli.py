"""The ``dpone-state`` command end to end on SQLite and PostgreSQL.

Each backend gets a database provisioned by ``dpone-state upgrade`` (PostgreSQL: a schema of
its own). Every command runs at least once per backend as a subprocess (``db.sub``); the
variations of a command run through ``main()`` in-process (``db``) to keep the suite fast.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from dpone_state import RunState, RunStateStatus, RunStateStorage, XMinStateStorage
from dpone_state.cli import build_parser, format_qualified, main, split_qualified
from tests.backends import BACKENDS
from tests.conftest import _engine_or_skip

CLI_BACKENDS = ("sqlite", "postgresql")
UNREACHABLE = "postgresql+psycopg2://u:s3cr3t-pw@127.0.0.1:1/db"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPONE_STATE_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return env


def run_cli(*args: str, cwd: Path | None = None, stdin: Any = subprocess.DEVNULL) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "dpone_state.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        stdin=stdin,
        env=_env(),
        cwd=cwd,
        timeout=120,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def call_cli(*args: str) -> Result:
    """``main()`` in this process (argparse exits become exit codes)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


@dataclass
class CliDB:
    """A state database the CLI works on: the options that select it, and an engine to check."""

    backend: str
    engine: Engine
    options: list[str]
    schema: str | None
    cwd: Path

    def __call__(self, *args: str) -> Result:
        """In-process."""
        return call_cli(*self.options, *args)

    def sub(self, *args: str, **kw: Any) -> Result:
        """As a subprocess."""
        return run_cli(*self.options, *args, cwd=self.cwd, **kw)

    def runs(self) -> RunStateStorage:
        return RunStateStorage(self.engine, schema=self.schema)


@pytest.fixture(scope="module", params=CLI_BACKENDS)
def cli_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CliDB]:
    backend = BACKENDS[request.param]
    root = tmp_path_factory.mktemp(f"cli-{backend.name}")
    engine, url = _engine_or_skip(backend, root)
    schema = backend.new_schema_name()
    options = ["--url", url] + (["--schema", schema] if schema else [])
    db = CliDB(backend.name, engine, options, schema, root)
    try:
        upgraded = db.sub("upgrade", "--json")
        assert upgraded.code == 0, upgraded.err
        assert upgraded.json()["from"] is None
        assert upgraded.json()["to"]
        yield db
    finally:
        backend.drop_schema(engine, schema)
        engine.dispose()


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------ migrations and doctor


def test_provisioned_database_is_at_head_and_healthy(cli_db: CliDB) -> None:
    history = cli_db.sub("history", "--json")
    assert history.code == 0, history.err
    revisions = history.json()
    head = next(r["revision"] for r in revisions if r["is_head"])
    assert revisions[-1]["down_revision"] is None

    current = cli_db.sub("current", "--json")
    assert current.code == 0, current.err
    assert current.json()["current"] == current.json()["head"] == head
    assert current.json()["up_to_date"] is True

    doctor = cli_db.sub("doctor", "--json")
    assert doctor.code == 0, doctor.out + doctor.err
    report = doctor.json()
    assert report["ok"] is True
    assert report["backend"] == cli_db.backend
    assert report["server_version"]
    assert report["revision"] == head
    checks = {finding["check"]: finding["status"] for finding in report["findings"]}
    assert all(status == "ok" for status in checks.values()), report["findings"]
    assert any(check.startswith("table ") and "etl_run_state" in check for check in checks)

    human = cli_db("doctor")
    assert human.code == 0
    assert f"revision  {head} (head {head})" in human.out


def test_database_behind_head_is_reported_by_doctor_until_upgraded(cli_db: CliDB) -> None:
    revisions = cli_db("history", "--json").json()
    head, older = revisions[0]["revision"], revisions[-1]["revision"]  # 0001: no revision column
    down = cli_db.sub("downgrade", older, "--json")
    assert down.code == 0, down.err
    assert down.json() | {"url": None} == {"url": None, "from": head, "to": older}
    try:
        current = cli_db("current", "--json").json()
        assert (current["current"], current["up_to_date"]) == (older, False)

        doctor = cli_db.sub("doctor")
        assert doctor.code == 1, doctor.out
        assert f"behind head {head}" in doctor.out
        assert "dpone-state upgrade" in doctor.out
        assert doctor.out.rstrip().endswith("problems found")
        report = cli_db("doctor", "--json")
        assert report.code == 1
        problems = [f for f in report.json()["findings"] if f["status"] == "problem"]
        # Behind head: the revision, and the pieces the newer revision adds, are reported.
        assert {f["check"] for f in problems} >= {"revision"}
        missing = [f["detail"] for f in problems if "missing columns" in f["detail"]]
        assert any("last_load_id" in d for d in missing), missing
        assert all("dpone-state upgrade" in f["fix"] for f in problems)
    finally:
        up = cli_db("upgrade")
        assert up.code == 0, up.err
    assert f"upgraded from {older} to {head}" in up.out
    assert cli_db("doctor").code == 0


def test_doctor_on_tables_made_without_the_migrations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    XMinStateStorage(url).create_tables()
    RunStateStorage(url).create_tables()
    doctor = call_cli("--url", url, "doctor", "--json")
    assert doctor.code == 1
    (problem,) = [f for f in doctor.json()["findings"] if f["status"] == "problem"]
    assert problem["check"] == "revision"
    assert "not provisioned by the migrations" in problem["detail"]
    assert "dpone-state upgrade" in problem["fix"]
    assert call_cli("--url", url, "upgrade").code == 0  # adopts the tables
    assert call_cli("--url", url, "doctor").code == 0


def test_sql_prints_the_offline_script_without_connecting() -> None:
    for dialect, marker in (("postgresql", "CREATE TABLE"), ("mssql", "NVARCHAR")):
        result = call_cli("--url", UNREACHABLE, "sql", "--dialect", dialect, "--schema", "ops")
        assert result.code == 0, result.err
        assert marker in result.out
        assert "ops.etl_xmin_state" in result.out
    for dialect in ("mysql", "sqlite"):
        assert "CREATE TABLE" in call_cli("sql", "--dialect", dialect).out
    # Without --dialect, the dialect of the configured URL (still no connection).
    default = run_cli("--url", UNREACHABLE, "sql")
    assert default.code == 0, default.err
    assert "CREATE TABLE" in default.out
    assert "s3cr3t" not in default.out + default.err


# ------------------------------------------------------------------ xmin


def test_xmin_set_show_list_reset(cli_db: CliDB) -> None:
    key = "public.cli_orders"
    first = cli_db.sub("xmin", "set", key, "1000", "--json")
    assert first.code == 0, first.err
    assert first.json()["previous"] is None
    assert first.json()["saved"]["xmin_value"] == 1000

    second = cli_db("xmin", "set", key, "2500", "--json")
    assert second.code == 0, second.err
    assert second.json()["previous"]["revision"] == 1
    assert (second.json()["saved"]["xmin_value"], second.json()["saved"]["revision"]) == (2500, 2)

    stale = cli_db("xmin", "set", key, "9999", "--expected-revision", "1")
    assert stale.code == 1
    assert "not at revision 1" in _one_line(stale.err)

    shown = cli_db.sub("xmin", "show", key, "--json")
    assert shown.code == 0, shown.err
    checkpoint = shown.json()
    assert (checkpoint["xmin_value"], checkpoint["revision"]) == (2500, 2)
    assert datetime.fromisoformat(checkpoint["loaded_at"]).utcoffset() == timedelta(0)

    listed = cli_db.sub("xmin", "list", "--json")
    assert listed.code == 0, listed.err
    assert [(c["source_schema"], c["source_table"], c["xmin_value"]) for c in listed.json()] == [
        ("public", "cli_orders", 2500)
    ]
    human = cli_db("xmin", "list")
    header, rule, row = human.out.splitlines()
    assert header.split()[:3] == ["source_schema", "source_table", "xmin_value"]
    assert len(rule) >= len(row.rstrip()) - 40  # aligned columns under a rule
    assert row.split()[:4] == ["public", "cli_orders", "2500", "2"]

    refused = cli_db.sub("xmin", "reset", key)  # no terminal, no --yes
    assert refused.code == 2
    assert "--yes" in _one_line(refused.err)
    assert cli_db("xmin", "show", key).code == 0

    reset = cli_db.sub("xmin", "reset", key, "--yes", "--json")
    assert reset.code == 0, reset.err
    assert reset.json()["deleted"] is True
    missing = cli_db("xmin", "show", key)
    assert missing.code == 1
    assert "no checkpoint for public.cli_orders" in _one_line(missing.err)
    assert cli_db("xmin", "reset", key, "--yes").code == 1


def test_xmin_names_with_dots_and_quotes(cli_db: CliDB) -> None:
    quoted = '"my.schema"."say ""hi"""'
    assert cli_db("xmin", "set", quoted, "7").code == 0
    by_options = cli_db(
        "xmin", "show", "--source-schema", "my.schema", "--source-table", 'say "hi"', "--json"
    )
    assert by_options.code == 0, by_options.err
    assert (by_options.json()["source_schema"], by_options.json()["source_table"]) == (
        "my.schema",
        'say "hi"',
    )
    assert cli_db("xmin", "reset", quoted, "-y").code == 0


def test_xmin_reset_asks_on_a_terminal(tmp_path: Path) -> None:
    url = ["--url", f"sqlite:///{tmp_path / 'tty.db'}"]
    assert call_cli(*url, "upgrade").code == 0
    assert call_cli(*url, "xmin", "set", "s.t", "5").code == 0
    for answer, code in ((b"n\n", 2), (b"y\n", 0)):
        leader, follower = pty.openpty()
        try:
            os.write(leader, answer)
            result = run_cli(*url, "xmin", "reset", "s.t", stdin=follower)
        finally:
            os.close(follower)
            os.close(leader)
        assert result.code == code, result.err
        assert "Delete the checkpoint of s.t" in result.err
    assert call_cli(*url, "xmin", "show", "s.t").code == 1


# ------------------------------------------------------------------ runs


def _run(dag: str, when: datetime, state: RunStateStatus = RunStateStatus.SUCCESS) -> RunState:
    return RunState(
        dag_id=dag,
        source_schema="public",
        source_table="orders",
        target_schema="dwh",
        target_table="orders",
        load_strategy="incremental_merge",
        execution_date=when,
        state=state,
        started_at=when,
        rows_read=10,
    )


def test_runs_list_show_prune(cli_db: CliDB) -> None:
    dag = f"cli_dag_{cli_db.backend}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    old = now - timedelta(days=100)
    storage = cli_db.runs()
    for when in (old, now - timedelta(days=1), now):
        storage.save_run_state(_run(dag, when))

    listed = cli_db.sub("runs", "list", dag, "--limit", "2", "--json")
    assert listed.code == 0, listed.err
    dates = [datetime.fromisoformat(r["execution_date"]) for r in listed.json()]
    assert dates == [now, now - timedelta(days=1)]
    assert listed.json()[0]["state"] == "success"
    human = cli_db("runs", "list", dag)
    assert human.out.splitlines()[0].split()[:2] == ["execution_date", "state"]
    assert len(human.out.splitlines()) == 2 + 3

    naive = old.replace(tzinfo=None).isoformat()  # naive = UTC
    shown = cli_db.sub("runs", "show", dag, naive, "--json")
    assert shown.code == 0, shown.err
    assert datetime.fromisoformat(shown.json()["execution_date"]) == old
    assert shown.json()["rows_read"] == 10
    missing = cli_db("runs", "show", dag, "2001-01-01T00:00:00Z")
    assert missing.code == 1
    assert "no run of" in _one_line(missing.err)

    dry = cli_db.sub("runs", "prune", "--days", "30", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert dry.json()["would_delete"] == 1
    assert len(storage.get_run_states_by_dag(dag)) == 3  # nothing deleted
    pruned = cli_db("runs", "prune", "--days", "30", "--json")
    assert pruned.code == 0, pruned.err
    assert pruned.json()["deleted"] == 1
    assert [r.execution_date for r in storage.get_run_states_by_dag(dag)] == [
        now,
        now - timedelta(days=1),
    ]
    assert cli_db("runs", "list", "no_such_dag", "--json").json() == []


# ------------------------------------------------------------------ errors and configuration


@pytest.mark.parametrize(
    "args",
    [
        ["xmin", "bogus"],
        ["runs", "list"],
        ["runs", "prune", "--days", "-1"],
        ["runs", "show", "dag", "not-a-date"],
        ["xmin", "show", "a.b.c"],
        ["xmin", "set", "public.orders", "-5"],
        ["--url", "not a url", "xmin", "list"],
        ["runs", "prune"],
        ["runs", "list", "dag", "--limit", "0"],
        ["xmin", "set", "public.orders"],
        ["xmin", "show", "--source-schema", "public"],
        ["--schema", "s", "--no-schema", "xmin", "list"],
        ["sql", "--dialect", "oracle"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = call_cli(*args)
    assert result.code == 2, (result.out, result.err)
    assert "Traceback" not in result.err
    assert result.err.strip().splitlines()[-1].startswith("dpone-state")
    assert not (tmp_path / "dpone_state.db").exists()


def test_bad_arguments_as_a_subprocess(tmp_path: Path) -> None:
    for args in (["runs", "show", "dag", "yesterday"], ["xmin", "show", "a.b.c"]):
        result = run_cli(*args, cwd=tmp_path)
        assert result.code == 2, (result.out, result.err)
        assert "Traceback" not in result.err
        assert result.err.strip().splitlines()[-1].startswith("dpone-state")


def test_unreachable_database_is_one_line_without_the_password() -> None:
    listed = run_cli("--url", UNREACHABLE, "xmin", "list")
    assert listed.code == 1
    line = _one_line(listed.err)
    assert "cannot connect" in line
    assert "u:***@127.0.0.1:1" in line
    assert "s3cr3t" not in listed.out + listed.err

    doctor = run_cli("--url", UNREACHABLE, "doctor", "--json")
    assert doctor.code == 1
    assert doctor.json()["ok"] is False
    assert doctor.json()["findings"][0]["check"] == "connect"
    assert "s3cr3t" not in doctor.out + doctor.err

    debug = call_cli("--url", UNREACHABLE, "runs", "list", "dag", "--debug")
    assert debug.code == 1
    assert "Traceback" in debug.err
    assert "s3cr3t" not in debug.err


def test_url_from_the_environment_and_config_from_a_manifest(tmp_path: Path) -> None:
    env_db = tmp_path / "env.db"
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(f"state:\n  type: sqlite\n  url: sqlite:///{tmp_path / 'm.db'}\n")
    done = subprocess.run(
        [sys.executable, "-m", "dpone_state.cli", "upgrade"],
        check=False,
        capture_output=True,
        text=True,
        env=_env() | {"DPONE_STATE_URL": f"sqlite:///{env_db}"},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert env_db.exists()

    assert run_cli("--config", str(manifest), "upgrade").code == 0
    assert call_cli("--config", str(manifest), "xmin", "set", "a.b", "3").code == 0
    shown = run_cli("--config", str(manifest), "xmin", "show", "a.b", "--json")
    assert shown.json()["xmin_value"] == 3
    assert (tmp_path / "m.db").exists()

    bad = tmp_path / "bad.yaml"
    bad.write_text("state:\n  type: oracle\n")
    refused = call_cli("--config", str(bad), "xmin", "list")
    assert refused.code == 2
    assert "oracle" in _one_line(refused.err)
    both = call_cli("--config", str(manifest), "--url", "sqlite://", "xmin", "list")
    assert both.code == 2


# ------------------------------------------------------------------ in-process pieces


def test_every_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    commands = [
        ["upgrade"], ["downgrade"], ["current"], ["history"], ["sql"], ["doctor"],
        ["xmin"], ["xmin", "list"], ["xmin", "show"], ["xmin", "set"], ["xmin", "reset"],
        ["runs"], ["runs", "list"], ["runs", "show"], ["runs", "prune"],
    ]  # fmt: skip
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([*command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "example:" in text and "dpone-state " + " ".join(command) in text, command


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("public.orders", ("public", "orders")),
        ('"my.schema".orders', ("my.schema", "orders")),
        ('public."a.b"', ("public", "a.b")),
        ('"x""y"."z"', ('x"y', "z")),
    ],
)
def test_qualified_names_round_trip(text: str, expected: tuple[str, str]) -> None:
    assert split_qualified(text) == expected
    assert split_qualified(format_qualified(*expected)) == expected


@pytest.mark.parametrize("text", ["orders", "a.b.c", ".x", "x.", '"open.x', 'a"b.c', '"a"b.c'])
def test_qualified_names_refused(text: str) -> None:
    from dpone_state.cli import UsageError  # noqa: PLC0415

    with pytest.raises(UsageError):
        split_qualified(text)
