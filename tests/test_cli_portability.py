"""Moving a state store between backends: ``export``, ``import`` and ``copy``.

Every field of both tables (checkpoint revisions and timestamps included) survives a trip
through SQLite, PostgreSQL, MariaDB and the BigQuery emulator; BigQuery -> PostgreSQL and
SQLite -> PostgreSQL run end to end as subprocesses; an import never overwrites a checkpoint a
runtime changed while it ran.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from dpone_state import (
    RevisionConflictError,
    RunState,
    RunStateStatus,
    RunStateStorage,
    XMinState,
    XMinStateStorage,
)
from dpone_state.portability import export_state, import_state
from tests.backends import BACKENDS, recorded
from tests.conftest import _engine_or_skip
from tests.test_cli import Result, call_cli, run_cli

#: Every backend of the suite; SQL Server joins the trip where a server is configured.
ALL = ("sqlite", "postgresql", "mariadb", "mssql", "bigquery")


@dataclass
class Store:
    """A store of one backend, empty when made, and the options that address it."""

    backend: str
    engine: Engine
    url: str
    schema: str | None

    @property
    def options(self) -> list[str]:
        return ["--url", self.url] + (["--schema", self.schema] if self.schema else [])

    def xmin(self) -> XMinStateStorage:
        return XMinStateStorage(self.engine, schema=self.schema)

    def runs(self) -> RunStateStorage:
        return RunStateStorage(self.engine, schema=self.schema)

    def cli(self, *args: str) -> Result:
        return call_cli(*self.options, *args)

    def export(self) -> dict[str, Any]:
        result = self.cli("export", "--format", "json")
        assert result.code == 0, result.err
        document: dict[str, Any] = json.loads(result.out)
        return document


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[Callable[..., Store]]:
    made: list[tuple[Store, bool]] = []

    def make(backend_name: str, *, provision: bool = True, name: str = "state.db") -> Store:
        backend = BACKENDS[backend_name]
        root = tmp_path / f"{backend_name}-{len(made)}"
        root.mkdir()
        engine, url = _engine_or_skip(backend, root)
        if backend_name == "sqlite":
            url = f"sqlite:///{root / name}"
            engine.dispose()
            engine = BACKENDS["sqlite"].make_engine(url)
        store = Store(backend_name, engine, url, backend.new_schema_name())
        made.append((store, True))
        if provision:
            if backend_name == "bigquery":  # provisioned by create_tables on the emulator
                store.xmin().create_tables()
                store.runs().create_tables()
            else:
                up = store.cli("upgrade")
                assert up.code == 0, up.err
        return store

    yield make
    for store, _ in made:
        BACKENDS[store.backend].drop_schema(store.engine, store.schema)
        store.engine.dispose()


T0 = datetime(2024, 5, 1, 2, 3, 4, 567891, tzinfo=timezone.utc)


def fill(store: Store) -> None:
    """Checkpoints and runs that use every column, odd names and values at their edges."""
    xmin = store.xmin()
    for value in (100, 5_000, 8_589_934_700):  # three saves: revision 3
        xmin.save_state(
            "public",
            "orders",
            XMinState(xmin_value=value, frozen_xid=4_294_967_000, wraparound_detected=True),
        )
    xmin.save_state(
        "my.schema",
        'say "hi" \u2013 données',
        XMinState(
            xmin_value=0,
            is_initial=True,
            extraction_identity='{"db": "app", "table": ["my.schema", "say"], "key": null}',
            source_fingerprint='{"oid": 16384, "children": []}',
        ),
    )
    xmin.save_states({("bulk", f"t{i}"): XMinState(xmin_value=i, timestamp=T0) for i in range(3)})
    runs = store.runs()
    runs.save_run_state(
        RunState(
            dag_id="orders_daily",
            source_schema="public",
            source_table="orders",
            target_schema="dwh",
            target_table="orders",
            load_strategy="incremental_merge",
            execution_date=T0,
            state=RunStateStatus.FAILED,
            started_at=T0 + timedelta(microseconds=1),
            ended_at=T0 + timedelta(minutes=3, microseconds=999_999),
            duration_min=3.0166666666666666,
            error_message="psycopg2.OperationalError: boom\n  at line 2 \u2013 ünïcode 🚀",
            rows_read=2**40,
            rows_written=0,
            rows_updated=7,
            rows_deleted=None,
            process_name="worker-1",
        )
    )
    runs.save_run_state(
        RunState(
            dag_id="orders_daily",
            source_schema="public",
            source_table="orders",
            target_schema="dwh",
            target_table="orders",
            load_strategy="full_refresh",
            execution_date=T0 + timedelta(days=1),
            state=RunStateStatus.RUNNING,
            started_at=T0 + timedelta(days=1),
        )
    )


def rows(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The rows of an export in one order (collations order keys differently per backend)."""

    def key(kind: str) -> Callable[[dict[str, Any]], tuple[str, ...]]:
        names = (
            ("source_schema", "source_table") if kind == "xmin" else ("dag_id", "execution_date")
        )
        return lambda row: tuple(row[n] for n in names)

    return {kind: sorted(document[kind], key=key(kind)) for kind in ("xmin", "runs")}


# ------------------------------------------------------------------ round trips


def test_every_field_survives_a_trip_through_every_backend(
    make_store: Callable[..., Store], tmp_path: Path
) -> None:
    first = make_store("sqlite")
    fill(first)
    original = first.export()
    assert original["header"]["migration_revision"]
    expected = rows(original)
    assert len(expected["xmin"]) == 5 and len(expected["runs"]) == 2
    assert expected["xmin"][-1]["revision"] == 3  # public.orders after three saves
    assert any(row["extraction_identity"] and row["source_fingerprint"] for row in expected["xmin"])
    previous = first
    for backend in (*ALL[1:], "sqlite"):
        if backend == "mssql" and BACKENDS["mssql"].url is None:
            continue  # no SQL Server on this machine (README: Running the tests on SQL Server)
        store = make_store(backend)
        path = tmp_path / f"from-{previous.backend}.ndjson"
        exported = previous.cli("export", "--output", str(path))
        assert exported.code == 0, exported.err
        imported = store.cli("import", str(path), "--yes", "--json")
        assert imported.code == 0, (backend, imported.out, imported.err)
        assert imported.json()["xmin"]["insert"] == 5
        assert imported.json()["runs"]["insert"] == 2
        assert rows(store.export()) == expected, f"{previous.backend} -> {backend}"
        again = store.cli("import", str(path), "--json")  # the same again: nothing to do
        assert (again.json()["xmin"]["unchanged"], again.json()["runs"]["unchanged"]) == (5, 2)
        previous = store


def test_copy_from_bigquery_to_postgresql_end_to_end(make_store: Callable[..., Store]) -> None:
    bigquery = make_store("bigquery")
    fill(bigquery)
    postgres = make_store("postgresql", provision=False)  # copy provisions it
    copy = [
        "copy", "--from", bigquery.url, "--from-schema", str(bigquery.schema),
        "--to", postgres.url, "--to-schema", str(postgres.schema),
    ]  # fmt: skip
    dry = run_cli(*copy)
    assert dry.code == 0, dry.err
    assert "dry run for" in dry.out and "nothing written: pass --yes" in dry.out
    assert "checkpoints: 5 insert; runs: 2 insert" in dry.out
    done = run_cli(*copy, "--yes")
    assert done.code == 0, done.out + done.err
    assert "verified: 5 of 5 checkpoint(s) and 2 of 2 run(s) identical" in done.out
    assert rows(postgres.export()) == rows(bigquery.export())
    # The runtime goes on from the copied checkpoint with compare-and-set.
    moved = postgres.xmin().load_state("public", "orders")
    assert moved is not None and (moved.xmin_value, moved.revision) == (8_589_934_700, 3)
    postgres.xmin().save_state("public", "orders", XMinState(9_000_000_000), expected_revision=3)


def test_copy_from_sqlite_to_postgresql_end_to_end(make_store: Callable[..., Store]) -> None:
    sqlite = make_store("sqlite")
    fill(sqlite)
    postgres = make_store("postgresql", provision=False)
    done = run_cli(
        "copy", "--from", sqlite.url, "--to", postgres.url, "--to-schema", str(postgres.schema),
        "--yes", "--json",
    )  # fmt: skip
    assert done.code == 0, done.out + done.err
    report = done.json()
    assert report["verified"] == {"xmin": 5, "runs": 2}
    assert report["exported"] == {"xmin": 5, "runs": 2}
    assert report["applied"] is True
    assert "***" not in report["url"] or "@" in report["url"]
    assert rows(postgres.export()) == rows(sqlite.export())
    assert postgres.cli("doctor").code == 0  # provisioned by the migrations, at head


# ------------------------------------------------------------------ merge, replace, dry run


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_import_is_a_dry_run_unless_yes_and_merges_or_replaces(
    backend: str, make_store: Callable[..., Store], tmp_path: Path
) -> None:
    source = make_store("sqlite", name="source.db")
    fill(source)
    path = tmp_path / "state.json"
    assert source.cli("export", "--format", "json", "-o", str(path)).code == 0
    store = make_store(backend)
    store.xmin().save_state("local", "only", XMinState(xmin_value=1))
    store.xmin().save_state("public", "orders", XMinState(xmin_value=1))
    store.xmin().save_state("public", "orders", XMinState(xmin_value=2))  # revision 2

    dry = store.cli("import", str(path))
    assert dry.code == 0, dry.err
    assert "checkpoints: 4 insert, 1 update" in dry.out
    assert "  update    xmin public.orders" in dry.out
    assert "nothing written" in dry.out
    assert store.xmin().load_state("bulk", "t0") is None

    merged = store.cli("import", str(path), "--merge", "--yes", "--json")
    assert merged.code == 0, merged.err
    assert merged.json()["xmin"] | {} == {
        "insert": 4, "update": 1, "unchanged": 0, "delete": 0, "conflicts": 0
    }  # fmt: skip
    assert store.xmin().load_state("local", "only") is not None  # merge keeps it
    orders = store.xmin().load_state("public", "orders")
    # The file's revision (3) is above the replaced one (2): kept as it is.
    assert orders is not None and (orders.xmin_value, orders.revision) == (8_589_934_700, 3)

    replaced = store.cli("import", str(path), "--replace", "--yes", "--json")
    assert replaced.code == 0, replaced.err
    assert replaced.json()["xmin"]["delete"] == 1
    assert replaced.json()["xmin"]["unchanged"] == 5
    assert store.xmin().load_state("local", "only") is None
    assert rows(store.export()) == rows(source.export())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_import_never_overwrites_a_checkpoint_a_runtime_changed(
    backend: str, make_store: Callable[..., Store]
) -> None:
    source = make_store("sqlite", name="source.db")
    source.xmin().save_state("s", "a", XMinState(xmin_value=10))
    source.xmin().save_state("s", "b", XMinState(xmin_value=20))
    export = export_state(source.xmin(), source.runs())
    store = make_store(backend)
    xmin = store.xmin()
    for _ in range(5):
        xmin.save_state("s", "b", XMinState(xmin_value=7))  # revision 5

    def runtime_saves_meanwhile(_: int) -> None:  # between the plan and the second write
        if xmin.load_state("s", "b") is not None and xmin.load_state("s", "b").revision == 5:  # type: ignore[union-attr]
            xmin.save_state("s", "b", XMinState(xmin_value=99), expected_revision=5)

    report = import_state(export, xmin, store.runs(), apply=True, progress=runtime_saves_meanwhile)
    assert report.xmin.conflicts == [("s", "b")]
    assert report.xmin.insert == [("s", "a")]
    kept = xmin.load_state("s", "b")
    assert kept is not None and (kept.xmin_value, kept.revision) == (99, 6)

    # Replacing a checkpoint moves its revision past the replaced one: a runtime still holding
    # the old revision conflicts instead of overwriting the import.
    report = import_state(export, xmin, store.runs(), apply=True)
    assert report.xmin.update == [("s", "b")] and report.conflicts == 0
    replaced = xmin.load_state("s", "b")
    assert replaced is not None and (replaced.xmin_value, replaced.revision) == (20, 7)
    with pytest.raises(RevisionConflictError):
        xmin.save_state("s", "b", XMinState(xmin_value=100), expected_revision=6)


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_many_runs_go_in_multi_row_statements(
    backend: str, make_store: Callable[..., Store], tmp_path: Path
) -> None:
    source = make_store("sqlite", name="source.db")
    storage = source.runs()
    for i in range(333):
        storage.save_run_state(
            RunState(
                dag_id=f"dag_{i % 7}", source_schema="s", source_table="t", target_schema="d",
                target_table="t", load_strategy="full_refresh",
                execution_date=T0 + timedelta(minutes=i), state=RunStateStatus.SUCCESS,
                started_at=T0, rows_read=i,
            )
        )  # fmt: skip
    export = export_state(source.xmin(), storage)
    store = make_store(backend)
    written: list[int] = []
    with recorded(store.engine) as statements:
        report = import_state(
            export, store.xmin(), store.runs(), apply=True, progress=written.append
        )
    assert len(report.runs.insert) == 333 and sum(written) == 333
    inserts = [s for s in statements if "etl_run_state" in s and "INSERT" in s.upper()]
    assert 1 <= len(inserts) <= 2, len(inserts)  # up to 500 rows a statement, not 333
    assert rows(store.export()) == rows(source.export())
    # A person's listing names 20 rows of each kind and counts the rest.
    dump = tmp_path / "many.ndjson"
    assert source.cli("export", "-o", str(dump)).code == 0
    plan = make_store("sqlite", name="fresh.db").cli("import", str(dump))
    assert plan.code == 0, plan.err
    assert sum(line.startswith("  insert    runs dag_") for line in plan.out.splitlines()) == 20
    assert "  insert    runs … and 313 more" in plan.out


# ------------------------------------------------------------------ formats and bad input


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_export_to_stdout_ndjson_and_json(
    backend: str, make_store: Callable[..., Store], tmp_path: Path
) -> None:
    store = make_store(backend)
    fill(store)
    ndjson = run_cli(*store.options, "export")
    assert ndjson.code == 0, ndjson.err
    lines = [json.loads(line) for line in ndjson.out.splitlines()]
    header = lines[0]["header"]
    assert header["format"] == "dpone-state-export" and header["version"] == 1
    assert header["backend"] == backend and header["migration_revision"]
    assert (
        "@" not in header["source"]
        or ":***@" in header["source"]
        or "postgres@" in header["source"]
    )
    assert {line["table"] for line in lines[1:]} == {"xmin", "runs"}
    run = next(line["row"] for line in lines[1:] if line["table"] == "runs")
    assert set(run) >= {"dag_id", "execution_date", "loaded_at", "updated_at", "error_message"}
    assert "id" not in run
    document = json.loads(run_cli(*store.options, "export", "--format", "json").out)
    by_table: dict[str, list[dict[str, Any]]] = {"xmin": [], "runs": []}
    for line in lines[1:]:
        by_table[line["table"]].append(line["row"])
    assert rows(document) == rows(by_table)
    # Piped: export | import -
    path = tmp_path / "piped.ndjson"
    path.write_text(ndjson.out)
    other = make_store(backend, name="other.db")
    with path.open() as stdin:
        piped = run_cli(*other.options, "import", "-", "--yes", stdin=stdin)
    assert piped.code == 0, piped.err
    assert rows(other.export()) == rows(document)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("not json\n", "not JSON"),
        ('{"header": {"format": "other"}}\n{"table": "xmin", "row": {}}\n', "not a dpone-state"),
        ('{"header": {"format": "dpone-state-export", "version": 9}}\n', "version 9"),
        (
            '{"header": {"format": "dpone-state-export", "version": 1}}\n'
            '{"table": "xmin", "row": {"source_schema": "a", "source_table": "b", '
            '"xmin_value": 1, "colour": "red"}}\n',
            "no column(s) colour",
        ),
        (
            '{"header": {"format": "dpone-state-export", "version": 1}}\n'
            '{"table": "elsewhere", "row": {}}\n',
            "line 2",
        ),
    ],
)
def test_a_bad_export_is_a_usage_error(
    content: str, message: str, make_store: Callable[..., Store], tmp_path: Path
) -> None:
    store = make_store("sqlite")
    path = tmp_path / "bad.ndjson"
    path.write_text(content)
    result = store.cli("import", str(path), "--yes", "--json")
    assert result.code == 2, result
    assert message in result.json()["error"]["message"]
    assert store.cli("xmin", "list", "--json").json() == []


# ------------------------------------------------------------------ BigQuery through the command


def test_upgrade_current_doctor_on_bigquery(make_store: Callable[..., Store]) -> None:
    store = make_store("bigquery", provision=False)
    up = run_cli(*store.options, "upgrade", "--json")
    assert up.code == 0, up.err
    head = up.json()["to"]
    assert up.json()["from"] is None and head
    current = run_cli(*store.options, "current", "--json")
    assert current.code == 0, current.err
    assert current.json()["current"] == current.json()["head"] == head
    doctor = run_cli(*store.options, "doctor", "--json")
    assert doctor.code == 0, doctor.out + doctor.err
    assert doctor.json()["backend"] == "bigquery"
    fill(store)  # the runtime's calls work on the provisioned tables
    assert (
        run_cli(*store.options, "xmin", "show", "public.orders", "--json").json()["revision"] == 3
    )
