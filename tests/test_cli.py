"""The ``dpone-state`` command end to end on SQLite and PostgreSQL.

Each backend gets a database provisioned by ``dpone-state upgrade`` (PostgreSQL: a schema of
its own). Every command runs at least once per backend as a subprocess (``db.sub``); the
variations of a command run through ``main()`` in-process under Click's ``CliRunner``
isolation (``db``) to keep the suite fast. JSON output is parsed back.
"""

from __future__ import annotations

import contextlib
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

import click
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from dpone_state import RunState, RunStateStatus, RunStateStorage, XMinState, XMinStateStorage
from dpone_state.cli import cli, format_qualified, main, printable, split_qualified
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


def call_cli(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """``main()`` in this process, its streams captured by Click's ``CliRunner``."""
    clean: dict[str, str | None] = dict.fromkeys(
        (k for k in os.environ if k.startswith("DPONE_STATE_")), None
    )
    with CliRunner().isolation(env=clean | (env or {})) as (out, err, _):
        code = main(list(args))
    return Result(code, out.getvalue().decode(), err.getvalue().decode())


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
    as_json = call_cli("sql", "--dialect", "postgresql", "--json").json()
    assert as_json["dialect"] == "postgresql" and "CREATE TABLE" in as_json["sql"]
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

    # Moving an existing checkpoint needs --yes, and says by how much and what it means.
    refused = cli_db.sub("xmin", "set", key, "2500", "--json")
    assert refused.code == 2
    assert "forward by 1500 transactions (1000 -> 2500)" in _one_line(refused.err)
    assert "never read" in refused.err
    assert refused.json()["error"]["exit_code"] == 2
    second = cli_db("xmin", "set", key, "2500", "--yes", "--json")
    assert second.code == 0, second.err
    assert second.json()["moved_by"] == 1500
    assert second.json()["previous"]["revision"] == 1
    assert (second.json()["saved"]["xmin_value"], second.json()["saved"]["revision"]) == (2500, 2)

    back = cli_db("xmin", "set", key, "100")
    assert back.code == 2
    assert "backward by 2400 transactions (2500 -> 100)" in _one_line(back.err)
    assert "read again" in back.err
    stale = cli_db("xmin", "set", key, "9999", "--expected-revision", "1", "--yes")
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
    assert human.out.splitlines()[0].split()[:4] == [
        "dag_id", "execution_date", "state", "load_strategy"
    ]  # fmt: skip
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
    refused = cli_db("runs", "prune", "--days", "30")  # no terminal, no --yes
    assert refused.code == 2
    assert "pass --yes to delete 1 run(s)" in _one_line(refused.err)
    pruned = cli_db("runs", "prune", "--days", "30", "--yes", "--json")
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
        ["upgrade", "no_such_revision"],
        ["downgrade", "abc123"],
        ["--url", "postgresql+psycopg2://u:pw@db:abc/meta", "xmin", "list"],
        ["runs", "list", "--state", "lost"],
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
    # The table variables fill in for a URL only: a manifest names its own tables.
    beside = call_cli(
        "--config", str(manifest), "xmin", "show", "a.b", env={"DPONE_STATE_XMIN_TABLE": "other"}
    )
    assert beside.code == 0, beside.err
    assert (tmp_path / "m.db").exists()

    bad = tmp_path / "bad.yaml"
    bad.write_text("state:\n  type: oracle\n")
    refused = call_cli("--config", str(bad), "xmin", "list")
    assert refused.code == 2
    assert "oracle" in _one_line(refused.err)
    both = call_cli("--config", str(manifest), "--url", "sqlite://", "xmin", "list")
    assert both.code == 2


# ------------------------------------------------------------------ in-process pieces


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
    return found


def test_every_command_has_help_with_an_example() -> None:
    commands = _commands(cli)
    assert len(commands) >= 23, commands
    for command in [(), *commands]:
        result = call_cli(*command, "--help")
        assert result.code == 0, (command, result.err)
        text = result.out
        assert "Example" in text and " ".join(("dpone-state", *command)) in text, command
        assert "--json" in text and "--quiet" in text, command


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


# ------------------------------------------------------------------ the command line itself


def test_bare_call_lists_commands_version_and_completion() -> None:
    bare = run_cli()
    assert bare.code == 0, bare.err
    for command in ("upgrade", "doctor", "xmin", "runs", "export", "import", "copy"):
        assert f"\n  {command} " in bare.out, command
    assert call_cli("xmin").out.count("\n  ") >= 4  # a group alone lists its commands

    from dpone_state import __version__  # noqa: PLC0415

    version = run_cli("--version")
    assert (version.code, version.out.strip()) == (0, f"dpone-state {__version__}")

    script = call_cli("completion", "bash")
    assert script.code == 0
    assert "_DPONE_STATE_COMPLETE" in script.out and "complete " in script.out
    # The script's protocol: completions of a partial command line.
    done = subprocess.run(
        [sys.executable, "-m", "dpone_state.cli"],
        check=False,
        capture_output=True,
        text=True,
        env=_env() | {"_DPONE_STATE_COMPLETE": "bash_complete", "COMP_WORDS": "dpone-state ru",
                      "COMP_CWORD": "1"},
        timeout=60,
    )  # fmt: skip
    assert "plain,runs" in done.stdout.split(), done.stdout + done.stderr


def test_json_errors_and_quiet(tmp_path: Path) -> None:
    url = ["--url", f"sqlite:///{tmp_path / 'q.db'}"]
    # Usage errors found by the parser and errors found by a command: a JSON object on stdout.
    for args, code in (
        (["runs", "list", "--limit", "0", "--json"], 2),
        (["--json", "xmin", "show", "a.b.c"], 2),
        ([*url, "xmin", "show", "a.b", "--json"], 1),  # the database does not exist
    ):
        result = run_cli(*args)
        assert result.code == code, result
        error = result.json()["error"]
        assert error["exit_code"] == code
        assert error["message"] and error["type"]
        assert _one_line(result.err).startswith("dpone-state")
    assert call_cli(*url, "upgrade", "--quiet").out == ""
    assert call_cli(*url, "xmin", "set", "a.b", "1", "-q").out == ""
    assert call_cli(*url, "xmin", "list", "-q").out == ""
    quiet_error = call_cli(*url, "xmin", "show", "x.y", "-q")
    assert (quiet_error.code, quiet_error.out) == (1, "")
    assert "no checkpoint for x.y" in quiet_error.err


@pytest.mark.parametrize("password", ["a", "state", "s3cr3t-pw"])
def test_the_password_field_is_masked_and_the_message_kept(password: str) -> None:
    # Masking the password as a substring of the text garbled the message and spelled the
    # password out in its gaps ("c***nnot connect to the st***te d***t***b***se").
    url = f"postgresql+psycopg2://etl:{password}@127.0.0.1:1/meta"
    result = run_cli("--url", url, "xmin", "list")
    assert result.code == 1
    line = _one_line(result.err)
    assert (
        "cannot connect to the state database postgresql+psycopg2://etl:***@127.0.0.1:1/meta"
        in line
    )
    assert "***" not in line.replace("etl:***@", "")
    assert "etl:state@" not in line and "st***te" not in line
    if password == "s3cr3t-pw":
        assert password not in result.out + result.err


def test_a_non_numeric_port_is_a_usage_error(tmp_path: Path) -> None:
    bad = "postgresql+psycopg2://etl:pw@db.example:fivefourthreetwo/meta"
    for args in (["--url", bad, "xmin", "list"], ["--url", bad, "doctor"], ["--url", bad, "sql"]):
        result = run_cli(*args, cwd=tmp_path)
        assert result.code == 2, result
        assert "port is not a number" in _one_line(result.err)
        assert "pw" not in result.err
    in_env = _env() | {"DPONE_STATE_URL": bad}
    for args, code in ((["history"], 0), (["current"], 2), (["runs", "dags"], 2)):
        done = subprocess.run(
            [sys.executable, "-m", "dpone_state.cli", *args],
            check=False, capture_output=True, text=True, env=in_env, cwd=tmp_path, timeout=60,
        )  # fmt: skip
        assert done.returncode == code, (args, done.stderr)
        assert "Traceback" not in done.stderr
        if code:
            assert "port is not a number" in _one_line(done.stderr)


def test_control_characters_in_stored_names_are_escaped(cli_db: CliDB) -> None:
    storage = XMinStateStorage(cli_db.engine, schema=cli_db.schema)
    forged = "evil\npublic  forged  1"
    erasing = "term\x1b[2K\rwiped"
    storage.save_state("ctl", forged, XMinState(xmin_value=5))
    storage.save_state("ctl", erasing, XMinState(xmin_value=6))
    try:
        listed = cli_db.sub("xmin", "list", "ctl.*")
        assert listed.code == 0, listed.err
        lines = listed.out.splitlines()
        assert len(lines) == 2 + 2, listed.out  # header, rule, one line per checkpoint
        assert "\x1b" not in listed.out and "\r" not in listed.out
        assert "evil\\npublic  forged  1" in listed.out
        assert "term\\x1b[2K\\rwiped" in listed.out
        shown = cli_db("xmin", "show", "--source-schema", "ctl", "--source-table", erasing)
        assert "term\\x1b[2K\\rwiped" in shown.out and "\x1b" not in shown.out
        as_json = cli_db("xmin", "list", "ctl.*", "--json").json()
        assert {c["source_table"] for c in as_json} == {forged, erasing}  # exact in JSON
        missing = cli_db("xmin", "show", "--source-schema", "ctl", "--source-table", "a\x1bb")
        assert missing.code == 1 and "\x1b" not in missing.err
    finally:
        storage.delete_state("ctl", forged)
        storage.delete_state("ctl", erasing)


def test_printable() -> None:
    assert printable("plain name") == "plain name"
    assert printable("a\nb\tc\x1b\x7f\u202e\u2028") == "a\\nb\\tc\\x1b\\x7f\\u202e\\u2028"
    assert printable("naïve ü 名前") == "naïve ü 名前"


READ_ONLY = [
    ["current"],
    ["doctor"],
    ["downgrade", "-1"],
    ["xmin", "list"],
    ["xmin", "show", "a.b"],
    ["xmin", "set", "a.b", "5"],
    ["xmin", "reset", "a.b", "--yes"],
    ["runs", "list"],
    ["runs", "show", "dag", "2024-01-01"],
    ["runs", "dags"],
    ["runs", "prune", "--days", "3", "--dry-run"],
    ["export"],
]


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
@pytest.mark.parametrize("where", ["missing.db", "no/such/dir/state.db"])
def test_commands_other_than_upgrade_never_create_a_database(
    args: list[str], where: str, tmp_path: Path
) -> None:
    path = tmp_path / where
    result = call_cli("--url", f"sqlite:///{path}", *args)
    assert result.code == 1, result
    line = _one_line(result.err)
    assert f"the state database {path} does not exist" in line
    assert "dpone-state upgrade" in line
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_read_only_as_a_subprocess_from_the_environment(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dpone_state.cli", "xmin", "list", "--json"],
        check=False, capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env=_env(),  # the default: ./dpone_state.db
    )  # fmt: skip
    assert done.returncode == 1
    assert "dpone_state.db does not exist" in json.loads(done.stdout)["error"]["message"]
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ runs: repair and prune


def test_runs_filters_show_by_printed_second_dags(cli_db: CliDB) -> None:
    storage = cli_db.runs()
    base = datetime(2024, 5, 1, 2, 0, 0, 123456, tzinfo=timezone.utc)
    dags = [f"flt_a_{cli_db.backend}", f"flt_b_{cli_db.backend}"]
    failed = _run(dags[0], base, RunStateStatus.FAILED)
    failed = RunState(
        **{**failed.__dict__, "error_message": "boom: " + "x" * 200 + "\nsecond line"}
    )
    storage.save_run_state(failed)
    storage.save_run_state(_run(dags[0], base + timedelta(days=1)))
    storage.save_run_state(_run(dags[1], base + timedelta(days=2), RunStateStatus.RUNNING))

    every = cli_db.sub("runs", "list", "--json", "--since", "2024-05-01", "--before", "2024-05-04")
    assert every.code == 0, every.err
    ours = [r for r in every.json() if r["dag_id"] in dags]
    assert [(r["dag_id"], r["state"]) for r in ours] == [
        (dags[1], "running"), (dags[0], "success"), (dags[0], "failed")
    ]  # fmt: skip
    only_failed = cli_db("runs", "list", dags[0], "--state", "failed", "--json").json()
    assert [r["state"] for r in only_failed] == ["failed"]
    assert only_failed[0]["error_message"] == failed.error_message
    since = cli_db("runs", "list", dags[0], "--since", "2024-05-02T00:00:00Z", "--json").json()
    assert [r["state"] for r in since] == ["success"]

    human = cli_db("runs", "list", dags[0], "--state", "failed")
    header, _, row = human.out.splitlines()
    assert "error_message" in header
    assert "boom: xxx" in row and "second line" not in row and row.endswith("…")
    printed = row.split()[1]
    assert printed == "2024-05-01T02:00:00+00:00"  # seconds only, as a person reads it
    shown = cli_db.sub("runs", "show", dags[0], printed, "--json")
    assert shown.code == 0, shown.err
    assert datetime.fromisoformat(shown.json()["execution_date"]) == base

    listed_dags = cli_db.sub("runs", "dags", "--json")
    assert listed_dags.code == 0, listed_dags.err
    summary = {d["dag_id"]: d for d in listed_dags.json() if d["dag_id"] in dags}
    assert summary[dags[0]]["runs"] == 2
    assert summary[dags[0]]["last_state"] == "success"
    assert datetime.fromisoformat(summary[dags[1]]["last_execution_date"]) == base + timedelta(
        days=2
    )
    assert "last_state" in cli_db("runs", "dags").out.splitlines()[0]


def test_runs_mark_failed_and_delete(cli_db: CliDB) -> None:
    storage = cli_db.runs()
    dag = f"stuck_{cli_db.backend}"
    when = datetime(2024, 6, 1, 3, 0, tzinfo=timezone.utc)
    storage.save_run_state(_run(dag, when, RunStateStatus.RUNNING))
    no_reason = cli_db("runs", "mark-failed", dag, "2024-06-01T03:00:00Z")
    assert no_reason.code == 2 and "--reason" in no_reason.err

    marked = cli_db.sub(
        "runs", "mark-failed", dag, "2024-06-01T03:00:00Z", "--reason", "worker lost", "--json"
    )
    assert marked.code == 0, marked.err
    assert (marked.json()["state"], marked.json()["error_message"]) == ("failed", "worker lost")
    run = storage.get_run_state(dag, when)
    assert run is not None and run.state is RunStateStatus.FAILED and run.ended_at is not None
    again = cli_db("runs", "mark-failed", dag, "2024-06-01T03:00:00Z", "--reason", "x")
    assert again.code == 1
    assert "is failed, not running; nothing changed" in _one_line(again.err)

    refused = cli_db.sub("runs", "delete", dag, "2024-06-01T03:00:00Z")
    assert refused.code == 2 and "--yes" in _one_line(refused.err)
    deleted = cli_db.sub("runs", "delete", dag, "2024-06-01T03:00:00Z", "--yes", "--json")
    assert deleted.code == 0, deleted.err
    assert deleted.json()["deleted"] is True
    assert storage.get_run_state(dag, when) is None
    assert cli_db("runs", "delete", dag, "2024-06-01T03:00:00Z", "--yes").code == 1


def test_runs_prune_by_dag_in_batches(cli_db: CliDB) -> None:
    storage = cli_db.runs()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    keep, prune = f"keep_{cli_db.backend}", f"prune_{cli_db.backend}"
    for day in range(40, 47):
        storage.save_run_state(_run(prune, now - timedelta(days=day)))
        storage.save_run_state(_run(keep, now - timedelta(days=day)))
    dry = cli_db("runs", "prune", "--days", "30", "--dag", prune, "--dry-run", "--json")
    assert dry.json()["would_delete"] == 7
    pruned = cli_db.sub(
        "runs", "prune", "--days", "30", "--dag", prune, "--batch-size", "3", "--yes", "--json"
    )
    assert pruned.code == 0, pruned.err
    assert (pruned.json()["deleted"], pruned.json()["dag_id"]) == (7, prune)
    assert storage.get_run_states_by_dag(prune) == []
    assert len(storage.get_run_states_by_dag(keep)) == 7
    assert cli_db("runs", "prune", "--days", "30", "--dag", keep, "--yes").code == 0
    assert storage.get_run_states_by_dag(keep) == []


def test_prune_shows_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    url = ["--url", f"sqlite:///{tmp_path / 'bar.db'}"]
    assert call_cli(*url, "upgrade").code == 0
    storage = RunStateStorage(url[1])
    old = datetime.now(timezone.utc) - timedelta(days=100)
    for minute in range(30):
        storage.save_run_state(_run("bar", old + timedelta(minutes=minute)))
    storage.engine.dispose()
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dpone_state.cli", *url, "runs", "prune", "--days", "30",
             "--batch-size", "5", "--yes"],
            check=False, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower,
            env=_env() | {"TERM": "xterm", "COLUMNS": "100"}, timeout=60,
        )  # fmt: skip
        os.close(follower)
        screen = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(leader, 65536):
                screen += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0
    assert b"pruning runs" in screen
    assert b"/30" in screen  # "5/30", "10/30", ...
    assert b"deleted 30 run(s)" in done.stdout


# ------------------------------------------------------------------ configuration


def test_two_stores_in_one_schema_with_their_own_version_tables(cli_db: CliDB) -> None:
    stores = {
        name: [f"--xmin-table={name}_xmin", f"--run-table={name}_runs",
               f"--version-table={name}_version"]
        for name in ("blue", "green")
    }  # fmt: skip
    for options in stores.values():
        up = cli_db.sub(*options, "upgrade", "--json")
        assert up.code == 0, up.err
        assert up.json()["from"] is None
    head = cli_db("history", "--json").json()[0]["revision"]
    down = cli_db(*stores["blue"], "downgrade", "-1")
    assert down.code == 0, down.err
    assert cli_db(*stores["blue"], "current", "--json").json()["up_to_date"] is False
    assert cli_db(*stores["green"], "current", "--json").json()["current"] == head
    assert cli_db(*stores["green"], "doctor").code == 0
    assert cli_db(*stores["blue"], "doctor").code == 1
    for options in stores.values():
        assert cli_db(*options, "upgrade").code == 0
        assert cli_db(*options, "downgrade", "base", "--drop-data").code == 0


def test_the_environment_means_the_same_to_the_command_and_alembic(
    cli_db: CliDB, tmp_path: Path
) -> None:
    url = cli_db.options[1]
    env = _env() | {
        "DPONE_STATE_URL": url,
        "DPONE_STATE_SCHEMA": cli_db.schema or "none",
        "DPONE_STATE_XMIN_TABLE": "env_xmin",
        "DPONE_STATE_RUN_TABLE": "env_runs",
        "DPONE_STATE_VERSION_TABLE": "env_version",
    }
    repo = Path(__file__).resolve().parents[1]

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), check=False, capture_output=True, text=True, env=env, cwd=repo,
            timeout=120,
        )  # fmt: skip

    up = command(sys.executable, "-m", "dpone_state.cli", "upgrade", "--json")
    assert up.returncode == 0, up.stderr
    alembic = command(sys.executable, "-m", "alembic", "current")
    assert alembic.returncode == 0, alembic.stderr
    assert json.loads(up.stdout)["to"] in alembic.stdout
    check = call_cli(
        *cli_db.options, "--xmin-table", "env_xmin", "--run-table", "env_runs",
        "--version-table", "env_version", "doctor",
    )  # fmt: skip
    assert check.code == 0, check.out
    down = command(sys.executable, "-m", "alembic", "downgrade", "base")
    assert down.returncode == 0, down.stderr
    gone = command(sys.executable, "-m", "dpone_state.cli", "current", "--json")
    assert json.loads(gone.stdout)["current"] is None


def test_the_migrate_api_reads_the_same_variables(
    cli_db: CliDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dpone_state import migrate  # noqa: PLC0415

    env = {
        "DPONE_STATE_SCHEMA": cli_db.schema or "none",
        "DPONE_STATE_XMIN_TABLE": "api_xmin",
        "DPONE_STATE_RUN_TABLE": "api_runs",
        "DPONE_STATE_VERSION_TABLE": "api_version",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    migrate.upgrade(cli_db.engine)  # names from the environment, as alembic and the command
    head = migrate.current(cli_db.engine)
    assert head is not None
    seen = call_cli(*cli_db.options[:2], "current", "--json", env=dict(env))
    assert seen.json()["current"] == head, seen
    assert call_cli(*cli_db.options[:2], "doctor", env=dict(env)).code == 0
    migrate.downgrade(cli_db.engine, "base")
    assert migrate.current(cli_db.engine) is None
    assert (
        call_cli(*cli_db.options[:2], "current", "--json", env=dict(env)).json()["current"] is None
    )


# ------------------------------------------------------------------ xmin health


@pytest.fixture
def pg_source() -> Iterator[tuple[str, Engine, str]]:
    """A PostgreSQL source (the suite's server) with a table in a schema of its own."""
    backend = BACKENDS["postgresql"]
    engine, url = _engine_or_skip(backend, Path("."))
    schema = backend.new_schema_name()
    assert schema is not None
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        conn.exec_driver_sql(f'CREATE TABLE "{schema}".orders (id int)')
        conn.exec_driver_sql(f'INSERT INTO "{schema}".orders VALUES (1)')
    try:
        yield url, engine, schema
    finally:
        backend.drop_schema(engine, schema)
        engine.dispose()


def test_xmin_health_for_cron(cli_db: CliDB, pg_source: tuple[str, Engine, str]) -> None:
    url, engine, schema = pg_source
    with engine.begin() as conn:
        # The source's snapshot xmin (other sessions' open transactions hold it back).
        now = int(
            conn.exec_driver_sql("SELECT txid_snapshot_xmin(txid_current_snapshot())").scalar_one()
        )
    storage = XMinStateStorage(cli_db.engine, schema=cli_db.schema)
    storage.save_state(schema, "orders", XMinState(xmin_value=now))
    try:
        healthy = cli_db.sub("xmin", "health", f"{schema}.*", "--source", url, "--json")
        assert healthy.code == 0, healthy.out + healthy.err
        report = healthy.json()
        assert report["ok"] is True
        (checkpoint,) = report["checkpoints"]
        assert (checkpoint["source_table"], checkpoint["verdict"]) == ("orders", "ok")
        assert checkpoint["anchor"] >= now and checkpoint["xids_behind"] >= 0
        human = cli_db("xmin", "health", f"{schema}.*", "--source", url)
        assert human.code == 0
        assert "verdict" in human.out.splitlines()[0]
        assert human.out.rstrip().endswith("1 ok, 0 warn, 0 full refresh due")

        # A threshold crossed: warn (exit 1), unless only a due full refresh should fail.
        strict = ["xmin", "health", f"{schema}.*", "--source", url, "--max-xids-behind", "0"]
        assert cli_db(*strict).code == 1
        assert cli_db(*strict, "--fail-on", "full-refresh-due").code == 0

        # A checkpoint ahead of the source (a restore, another cluster): full refresh due.
        storage.save_state(schema, "orders", XMinState(xmin_value=now + 10_000_000))
        due = cli_db.sub("xmin", "health", f"{schema}.*", "--source", url, "--json")
        assert due.code == 1, due.err
        assert due.json()["ok"] is False
        assert due.json()["checkpoints"][0]["verdict"] == "full refresh due"
        assert due.json()["checkpoints"][0]["full_refresh_reason"]
        other = cli_db("xmin", "health", "no_such.*", "--source", url, "--json")
        assert (other.code, other.json()["checkpoints"]) == (0, [])
    finally:
        storage.delete_state(schema, "orders")


def test_xmin_health_refuses_what_is_not_a_postgres_source(tmp_path: Path) -> None:
    url = ["--url", f"sqlite:///{tmp_path / 'h.db'}"]
    assert call_cli(*url, "upgrade").code == 0
    not_postgres = call_cli(*url, "xmin", "health", "--source", f"sqlite:///{tmp_path / 'h.db'}")
    assert not_postgres.code == 2
    assert "PostgreSQL source" in _one_line(not_postgres.err)
    down = call_cli(*url, "xmin", "health", "--source", UNREACHABLE)
    assert down.code == 1
    assert "s3cr3t" not in down.err
    assert call_cli(*url, "xmin", "health").code == 2  # --source is required
    bad_age = call_cli(*url, "xmin", "health", "--source", UNREACHABLE, "--max-age", "soon")
    assert bad_age.code == 2 and "duration" in bad_age.err
