"""Move a state store between backends: export both tables, import them, or copy in one step.

An export holds every stored field of both tables (checkpoint revisions and the
``__dpone__loaded_at`` / ``__dpone__updated_at`` timestamps included) as JSON values, so
importing it into an empty store of any backend gives back the same rows. The run table's
``id`` is a number each database assigns (BigQuery has none), so it is not carried.

An import is planned first (what it would insert, update, leave alone or delete) and written
only when asked. Checkpoints are written with compare-and-set against the revision read when
planning: a checkpoint that a running runtime changed in between is reported as a conflict,
never overwritten. A checkpoint that replaces an existing one gets a revision above the
replaced one, so a writer holding the old revision cannot overwrite the import either.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Final, Literal

from sqlalchemy import Table, and_, bindparam, delete, select, update

from dpone_state.coltypes import UTCDateTime
from dpone_state.dialects import by_dialect
from dpone_state.engine import safe_url
from dpone_state.errors import InvalidExportError, StateNotProvisionedError
from dpone_state.storage import RunStateStorage, XMinStateStorage
from dpone_state.tables import LOADED_AT, UPDATED_AT
from dpone_state.upsert import INCOMING, Upsert, upsert_applied

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ImportReport",
    "StateExport",
    "TableChanges",
    "export_state",
    "import_state",
    "read_export",
    "write_export",
]

EXPORT_FORMAT: Final = "dpone-state-export"
EXPORT_VERSION: Final = 1
Kind = Literal["xmin", "runs"]
KINDS: Final[tuple[Kind, ...]] = ("xmin", "runs")

#: Exported names of columns whose table names are internal.
_RENAMED: Final = {LOADED_AT: "loaded_at", UPDATED_AT: "updated_at"}
_KEYS: Final[dict[Kind, tuple[str, ...]]] = {
    "xmin": ("source_schema", "source_table"),
    "runs": ("dag_id", "execution_date"),
}
#: Most run rows in one import statement.
_BULK_ROWS: Final = 500
#: Columns that belong to one database and are not carried.
_LOCAL: Final = frozenset({"id"})


@dataclass
class StateExport:
    """Both tables' rows (JSON-ready dicts) and where they came from."""

    header: dict[str, Any]
    xmin: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def rows(self, kind: Kind) -> list[dict[str, Any]]:
        return self.xmin if kind == "xmin" else self.runs


def _columns(table: Table) -> list[str]:
    return [c.name for c in table.columns if c.name not in _LOCAL]


def _exported_name(column: str) -> str:
    return _RENAMED.get(column, column)


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _stored_rows(storage: XMinStateStorage | RunStateStorage, kind: Kind) -> list[dict[str, Any]]:
    """Every row of the storage's table as exported dicts, in key order."""
    t = storage.table
    names = _columns(t)
    statement = select(*(t.c[n] for n in names)).order_by(*(t.c[k] for k in _KEYS[kind]))
    rows = []
    for row in storage.execute_read(statement, {}):
        record = {_exported_name(n): _to_json(v) for n, v in zip(names, row, strict=True)}
        if kind == "xmin" and record.get("revision") is None:  # adopted legacy rows
            record["revision"] = 0
        if kind == "runs" and record.get("state") is not None:
            record["state"] = str(record["state"])
        rows.append(record)
    return rows


def export_state(
    xmin: XMinStateStorage, runs: RunStateStorage, *, revision: str | None = None
) -> StateExport:
    """Read both tables whole; ``revision`` (the migration revision) goes into the header."""
    from dpone_state.models import utc_now  # noqa: PLC0415

    header = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": utc_now().isoformat(),
        "source": safe_url(xmin.engine.url),
        "backend": xmin.engine.dialect.name,
        "migration_revision": revision,
        "xmin_table": xmin.qualified_name,
        "run_table": runs.qualified_name,
    }
    return StateExport(header, _stored_rows(xmin, "xmin"), _stored_rows(runs, "runs"))


def write_export(
    export: StateExport, stream: IO[str], fmt: Literal["ndjson", "json"] = "ndjson"
) -> None:
    """NDJSON: the header line, then one ``{"table": …, "row": …}`` line per row; or one JSON
    document ``{"header": …, "xmin": […], "runs": […]}``."""
    if fmt == "json":
        json.dump({"header": export.header, "xmin": export.xmin, "runs": export.runs}, stream)
        stream.write("\n")
        return
    stream.write(json.dumps({"header": export.header}) + "\n")
    for kind in KINDS:
        for row in export.rows(kind):
            stream.write(json.dumps({"table": kind, "row": row}) + "\n")


def _check_header(header: Any) -> dict[str, Any]:
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise InvalidExportError(f"not a {EXPORT_FORMAT} file (its header is missing)")
    if header.get("version") != EXPORT_VERSION:
        raise InvalidExportError(
            f"export format version {header.get('version')!r}; this dpone-state reads "
            f"version {EXPORT_VERSION}"
        )
    return header


def read_export(stream: Iterable[str]) -> StateExport:
    """An export read back (NDJSON or JSON, recognised by its content)."""
    text = "".join(stream)
    stripped = text.lstrip()
    if not stripped:
        raise InvalidExportError("the export is empty")
    try:
        document = json.loads(stripped)
    except json.JSONDecodeError:
        document = None
    # The JSON form has the tables beside the header; NDJSON's first line has the header alone.
    if isinstance(document, dict) and "header" in document and set(document) != {"header"}:
        export = StateExport(_check_header(document["header"]))
        for kind in KINDS:
            rows = document.get(kind, [])
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise InvalidExportError(f"{kind!r} must be a list of objects")
            export.rows(kind).extend(rows)
        return export
    lines = iter(enumerate(stripped.splitlines(), 1))
    export = StateExport(_check_header(_json_line(*next(lines)).get("header")))
    for number, line in lines:
        if not line.strip():
            continue
        record = _json_line(number, line)
        table, row = record.get("table"), record.get("row")
        if table not in ("xmin", "runs") or not isinstance(row, dict):
            raise InvalidExportError(
                f"line {number}: expected {{'table': 'xmin'|'runs', 'row': {{…}}}}"
            )
        export.rows("xmin" if table == "xmin" else "runs").append(row)
    return export


def _json_line(number: int, line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise InvalidExportError(f"line {number} is not JSON: {error.msg}") from None
    if not isinstance(record, dict):
        raise InvalidExportError(f"line {number} is not a JSON object")
    return record


# --------------------------------------------------------------------------- import


@dataclass
class TableChanges:
    """What an import does (or did) to one table; keys are printable tuples."""

    insert: list[tuple[str, ...]] = field(default_factory=list)
    update: list[tuple[str, ...]] = field(default_factory=list)
    unchanged: list[tuple[str, ...]] = field(default_factory=list)
    delete: list[tuple[str, ...]] = field(default_factory=list)
    conflicts: list[tuple[str, ...]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in self.__dataclass_fields__}


@dataclass
class ImportReport:
    """The plan of an import, and after it ran, what was written."""

    applied: bool
    mode: Literal["merge", "replace"]
    #: False when a dry run found the destination's tables missing (planned as empty).
    provisioned: bool = True
    xmin: TableChanges = field(default_factory=TableChanges)
    runs: TableChanges = field(default_factory=TableChanges)

    @property
    def conflicts(self) -> int:
        return len(self.xmin.conflicts) + len(self.runs.conflicts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "mode": self.mode,
            "provisioned": self.provisioned,
            "xmin": self.xmin.counts(),
            "runs": self.runs.counts(),
            "conflicts": [
                {"table": kind, "key": [str(part) for part in key]}
                for kind in KINDS
                for key in getattr(self, kind).conflicts
            ],
        }


def _decode(table: Table, kind: Kind, row: Mapping[str, Any], number: int) -> dict[str, Any]:
    """An exported row as column values of ``table`` (datetimes parsed, every column present)."""
    names = _columns(table)
    by_export = {_exported_name(n): n for n in names}
    unknown = set(row) - set(by_export) - _LOCAL
    if unknown:
        raise InvalidExportError(
            f"{kind} row {number}: {table.name} has no column(s) {', '.join(sorted(unknown))} "
            "(upgrade the destination: dpone-state upgrade)"
        )
    values: dict[str, Any] = {}
    for exported, name in by_export.items():
        value = row.get(exported)
        column = table.c[name]
        if value is None and not column.nullable and name not in ("revision",):
            raise InvalidExportError(f"{kind} row {number}: {exported} is missing")
        if value is not None and isinstance(column.type, UTCDateTime):
            try:
                value = datetime.fromisoformat(str(value))
            except ValueError:
                raise InvalidExportError(
                    f"{kind} row {number}: {exported} {value!r} is not an ISO date-time"
                ) from None
        values[name] = value
    if kind == "xmin":
        values["revision"] = int(values.get("revision") or 0)
    return values


def _key(values: Mapping[str, Any], kind: Kind) -> tuple[Any, ...]:
    return tuple(values[k] for k in _KEYS[kind])


def _printable(key: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(part.isoformat() if isinstance(part, datetime) else str(part) for part in key)


def _current(
    storage: XMinStateStorage | RunStateStorage, kind: Kind
) -> dict[tuple[Any, ...], dict[str, Any]]:
    t = storage.table
    names = _columns(t)
    rows = storage.execute_read(select(*(t.c[n] for n in names)), {})
    current = {}
    for row in rows:
        values = dict(zip(names, row, strict=True))
        if kind == "xmin":
            values["revision"] = int(values.get("revision") or 0)
        if kind == "runs":
            values["state"] = str(values["state"])
        current[_key(values, kind)] = values
    return current


def import_state(
    export: StateExport,
    xmin: XMinStateStorage,
    runs: RunStateStorage,
    *,
    replace: bool = False,
    apply: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Plan the import of ``export`` into the two storages; write it when ``apply``.

    Merge (default): rows of the export are inserted or replace the stored row with the same
    key; other stored rows stay. ``replace``: stored rows absent from the export are deleted
    too. ``progress`` is called with the number of rows written after each write.
    """
    report = ImportReport(applied=apply, mode="replace" if replace else "merge")
    _import_table(export, "xmin", xmin, report, replace=replace, apply=apply, progress=progress)
    _import_table(export, "runs", runs, report, replace=replace, apply=apply, progress=progress)
    return report


def _import_table(
    export: StateExport,
    kind: Kind,
    storage: XMinStateStorage | RunStateStorage,
    report: ImportReport,
    *,
    replace: bool,
    apply: bool,
    progress: Callable[[int], None] | None,
) -> None:
    changes: TableChanges = getattr(report, kind)
    t = storage.table
    incoming = [_decode(t, kind, row, n) for n, row in enumerate(export.rows(kind), 1)]
    keys = [_key(values, kind) for values in incoming]
    if len(set(keys)) != len(keys):
        raise InvalidExportError(f"the export holds a {kind} key twice")
    try:
        current = _current(storage, kind)
    except StateNotProvisionedError:
        if apply:
            raise
        current = {}  # a dry run into a store not provisioned yet: everything is new
        report.provisioned = False
    writer = _Writer(storage, kind)
    runs: list[dict[str, Any]] = []  # written in multi-row statements (no compare-and-set)
    for values, key in zip(incoming, keys, strict=True):
        stored = current.get(key)
        if stored is not None and _same(stored, values):
            changes.unchanged.append(_printable(key))
            continue
        action = changes.insert if stored is None else changes.update
        if kind == "runs":
            action.append(_printable(key))
            runs.append(values)
            continue
        _change(action, changes, key, apply and not writer.write(values, stored), progress)
    if apply:
        for start in range(0, len(runs), writer.rows_per_statement):
            batch = runs[start : start + writer.rows_per_statement]
            writer.write_runs(batch)
            if progress is not None:
                progress(len(batch))
    if replace:
        wanted = set(keys)
        for key, stored in sorted(current.items(), key=lambda item: _printable(item[0])):
            if key not in wanted:
                conflict = apply and not writer.delete(stored)
                _change(changes.delete, changes, key, conflict, progress)


def _change(
    action: list[tuple[str, ...]],
    changes: TableChanges,
    key: tuple[Any, ...],
    conflict: bool,
    progress: Callable[[int], None] | None,
) -> None:
    (changes.conflicts if conflict else action).append(_printable(key))
    if progress is not None:
        progress(1)


def _same(stored: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    return all(stored.get(name) == value for name, value in values.items())


class _Writer:
    """The statements an import sends to one table, built once."""

    def __init__(self, storage: XMinStateStorage | RunStateStorage, kind: Kind) -> None:
        self.storage = storage
        self.kind = kind
        t = storage.table
        names = _columns(t)
        self.names = names
        params = {n: bindparam(f"i_{n}", type_=t.c[n].type) for n in names}
        key = and_(*(t.c[k] == params[k] for k in _KEYS[kind]))
        non_key = [n for n in names if n not in _KEYS[kind]]
        if kind == "xmin":
            expected = bindparam("i_expected", type_=t.c.revision.type)
            # Absent when planned: insert, and never overwrite a row that appeared since.
            self.insert: Any = Upsert(
                t, [params], key=_KEYS[kind], update={"revision": INCOMING}, where=t.c.revision < 0
            )
            self.update: Any = (
                update(t)
                .where(key, t.c.revision == expected)
                .values({n: params[n] for n in non_key})
            )
            self.delete_row: Any = delete(t).where(key, t.c.revision == expected)
        else:
            self.insert = self.update = None  # runs go in multi-row statements
            self.delete_row = delete(t).where(key)

        # Under the backend's limit of bound parameters a statement (SQL Server: 2100).
        limit = by_dialect(storage.engine.dialect.name).max_parameters
        per_statement = _BULK_ROWS if limit is None else (limit - 10) // len(names)
        self.rows_per_statement = max(1, min(_BULK_ROWS, per_statement))
        self._bulk: dict[int, Upsert] = {}

    def _params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {f"i_{n}": values[n] for n in self.names}

    def write_runs(self, batch: list[dict[str, Any]]) -> None:
        """Upsert run rows in one statement (built once per batch size)."""
        t = self.storage.table
        statement = self._bulk.get(len(batch))
        if statement is None:
            rows = [
                {n: bindparam(f"i_{n}_{i}", type_=t.c[n].type) for n in self.names}
                for i in range(len(batch))
            ]
            non_key = [n for n in self.names if n not in _KEYS["runs"]]
            statement = Upsert(t, rows, key=_KEYS["runs"], update=dict.fromkeys(non_key, INCOMING))
            self._bulk[len(batch)] = statement
        params = {f"i_{n}_{i}": row[n] for i, row in enumerate(batch) for n in self.names}
        self.storage.execute_write(statement, params)

    def write(self, values: dict[str, Any], stored: Mapping[str, Any] | None) -> bool:
        """Write one checkpoint; ``False`` when it changed since it was read."""
        write = self.storage.execute_write
        if stored is None:
            result = write(self.insert, self._params(values))
            return upsert_applied(result, self.storage.engine.dialect.name)
        # Replacing a checkpoint moves its revision past the stored one: a runtime holding
        # the stored revision then conflicts instead of overwriting the import.
        values = {**values, "revision": max(values["revision"], stored["revision"] + 1)}
        params = self._params(values) | {"i_expected": stored["revision"]}
        return int(write(self.update, params).rowcount) == 1

    def delete(self, stored: Mapping[str, Any]) -> bool:
        params = {f"i_{k}": stored[k] for k in _KEYS[self.kind]}
        if self.kind == "xmin":
            params["i_expected"] = stored["revision"]
        result = self.storage.execute_write(self.delete_row, params)
        return self.kind == "runs" or int(result.rowcount) == 1


def iter_keys(report: ImportReport) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """Every planned change as ``(table, action, key)`` (for listings)."""
    for kind in KINDS:
        changes: TableChanges = getattr(report, kind)
        for action in ("insert", "update", "delete", "conflicts"):
            for key in getattr(changes, action):
                yield kind, action, key
