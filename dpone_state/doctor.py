"""Health check of a state database: reachable, migrated to head, tables shaped as expected.

Each finding says what is wrong and what to do about it; ``dpone-state doctor`` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import MetaData, Table, func, inspect, select, text
from sqlalchemy.engine import Connection, Engine, Inspector
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from dpone_state import migrate
from dpone_state.ddl import capped_name
from dpone_state.dialects import by_dialect, safe_url
from dpone_state.errors import first_line
from dpone_state.tables import BIGQUERY_LOCK_TABLE, build_tables, lock_table

__all__ = ["Finding", "Report", "diagnose"]

Status = Literal["ok", "warning", "problem"]

UPGRADE_FIX = "run `dpone-state upgrade` (with the same --url/--config and table options)"


@dataclass(frozen=True)
class Finding:
    """One check's outcome; ``fix`` says what to do when it is not ok."""

    check: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class Report:
    """What ``diagnose`` found; ``ok`` when no finding is a problem."""

    url: str
    backend: str
    server_version: str | None = None
    revision: str | None = None
    head: str | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(finding.status != "problem" for finding in self.findings)

    def add(self, check: str, status: Status, detail: str, fix: str = "") -> None:
        self.findings.append(Finding(check, status, detail, fix))


def diagnose(
    engine: Engine,
    schema: str | None,
    xmin_table: str,
    run_table: str,
    *,
    version_table: str | None = None,
) -> Report:
    """Connect, then check the migration revision and both tables' shapes against tables.py.

    ``version_table`` is the migrations' version table (default ``migrate.VERSION_TABLE``).
    """
    report = Report(
        url=safe_url(engine.url), backend=engine.dialect.name, head=migrate.head_revision()
    )
    try:
        conn = engine.connect()
    except DBAPIError as error:
        report.add(
            "connect",
            "problem",
            f"cannot connect to {report.url}: {first_line(error)}",
            "check that the server runs and the URL's host, port, database and credentials",
        )
        return report
    with conn:
        info = engine.dialect.server_version_info
        report.server_version = ".".join(str(part) for part in info) if info else None
        report.add("connect", "ok", f"connected to {report.url}")
        _check_revision(report, conn, schema, version_table or migrate.VERSION_TABLE)
        expected = build_tables(schema, xmin_table, run_table, dialect_name=engine.dialect.name)
        inspector = inspect(conn)
        if schema is not None and by_dialect(engine.dialect.name).has_schemas:
            if not inspector.has_schema(schema):
                report.add("schema", "problem", f"schema {schema} does not exist", UPGRADE_FIX)
                return report
            report.add("schema", "ok", f"schema {schema} exists")
        for table in (expected.xmin, expected.run):
            if engine.dialect.name == "bigquery":
                _check_bigquery_table(report, conn, inspector, table)
            else:
                _check_table(report, conn, inspector, table)
    return report


def _check_revision(
    report: Report, conn: Connection, schema: str | None, version_table: str
) -> None:
    try:
        report.revision = migrate.current(conn.engine, schema=schema, version_table=version_table)
    except SQLAlchemyError as error:
        report.add(
            "revision", "problem", f"cannot read the migration revision: {first_line(error)}"
        )
        return
    if report.revision is None:
        report.add(
            "revision",
            "problem",
            f"not provisioned by the migrations (head is {report.head})",
            f"{UPGRADE_FIX}; it adopts existing tables without touching their rows",
        )
    elif report.revision == report.head:
        report.add("revision", "ok", f"at head {report.head}")
    elif migrate.is_known_revision(report.revision):
        report.add(
            "revision",
            "problem",
            f"at {report.revision}, behind head {report.head}",
            UPGRADE_FIX,
        )
    else:
        report.add(
            "revision",
            "problem",
            f"at {report.revision}, a revision this dpone-state does not know",
            "upgrade the dpone-state package to the version that migrated this database",
        )


def _check_table(report: Report, conn: Connection, inspector: Inspector, table: Table) -> None:
    name = f"{table.schema}.{table.name}" if table.schema else table.name
    check = f"table {name}"
    if not inspector.has_table(table.name, schema=table.schema):
        report.add(check, "problem", "does not exist", UPGRADE_FIX)
        return
    columns: dict[str, dict[str, Any]] = {
        column["name"]: dict(column)
        for column in inspector.get_columns(table.name, schema=table.schema)
    }
    problems: list[str] = []
    warnings: list[str] = []
    missing = [column.name for column in table.columns if column.name not in columns]
    if missing:
        problems.append(f"missing columns {', '.join(missing)}")
    extra = sorted(set(columns) - set(table.c.keys()))
    if extra:
        warnings.append(f"extra columns {', '.join(extra)} (ignored by dpone-state)")
    for column in table.columns:
        found = columns.get(column.name)
        if found is not None and bool(found["nullable"]) != bool(column.nullable):
            wanted = "NULL" if column.nullable else "NOT NULL"
            problems.append(f"column {column.name} should be {wanted}")
    expected_key = [column.name for column in table.primary_key.columns]
    key = inspector.get_pk_constraint(table.name, schema=table.schema)
    if list(key.get("constrained_columns") or []) != expected_key:
        problems.append(
            f"primary key is ({', '.join(key.get('constrained_columns') or [])}), "
            f"expected ({', '.join(expected_key)})"
        )
    elif key.get("name") and key["name"] not in _expected_key_names(table, conn):
        warnings.append(f"primary key is named {key['name']}, expected {table.primary_key.name}")
    indexed = [
        list(index["column_names"]) for index in inspector.get_indexes(table.name, table.schema)
    ]
    for index in table.indexes:
        wanted_columns = [column.name for column in index.columns]
        if wanted_columns not in indexed:
            problems.append(
                f"index on ({', '.join(wanted_columns)}) is missing (retention uses it)"
            )
    warnings += mssql_column_warnings(conn.dialect.name, table, columns)
    if problems:
        report.add(check, "problem", "; ".join(problems + warnings), UPGRADE_FIX)
        return
    rows = conn.execute(select(func.count()).select_from(table)).scalar_one()
    detail = f"{len(columns)} columns, key ({', '.join(expected_key)}), {rows} rows"
    if warnings:
        report.add(check, "warning", f"{detail}; {'; '.join(warnings)}")
    else:
        report.add(check, "ok", detail)


def _expected_key_names(table: Table, conn: Connection) -> set[str]:
    """The primary key's name as tables.py derives it, and as this dialect caps it (SQLAlchemy's
    rule, or the server's own truncation of a legacy name: PostgreSQL keeps 63 bytes)."""
    name = str(table.primary_key.name)
    limit = conn.dialect.max_identifier_length
    return {name, capped_name(name, limit), name.encode()[:limit].decode(errors="ignore")}


#: What doctor says about a SQL Server key column that does not compare exactly.
COLLATION_FIX = (
    "README, SQL Server: 'Key collation' gives the opt-in migration of the key columns to "
    "Latin1_General_100_BIN2"
)


def mssql_column_warnings(
    dialect_name: str, table: Table, columns: dict[str, dict[str, Any]]
) -> list[str]:
    """SQL Server: key columns that compare case-insensitively (a legacy collation: two keys
    that differ by case are one row), and ``datetime`` timestamps (rounded to 1/300 s)."""
    warnings: list[str] = []
    if dialect_name != "mssql":
        return warnings
    for column in table.primary_key.columns:
        reflected = columns.get(column.name)
        collation = getattr(reflected["type"], "collation", None) if reflected else None
        if collation is not None and not str(collation).upper().endswith(("_BIN2", "_BIN")):
            warnings.append(
                f"key column {column.name} uses collation {collation}: keys differing only by "
                f"case are the same row ({COLLATION_FIX})"
            )
    for name, found in columns.items():
        if name in table.c and type(found["type"]).__name__ == "DATETIME":
            warnings.append(
                f"column {name} is datetime (rounded to 1/300 s), not datetime2: timestamps "
                "do not round-trip exactly"
            )
    return warnings


def _check_bigquery_table(
    report: Report, conn: Connection, inspector: Inspector, table: Table
) -> None:
    """BigQuery: no enforced keys and no indexes (not problems there); the columns a query sees,
    keys held by more than one row (concurrent first writes before the lock), the lock row."""
    name = f"{table.schema}.{table.name}" if table.schema else table.name
    check = f"table {name}"
    if not inspector.has_table(table.name, schema=table.schema):
        report.add(check, "problem", "does not exist", UPGRADE_FIX)
        return
    # The columns a query sees (the emulator's metadata misses columns added by ALTER TABLE).
    found = set(conn.execute(select(text("*")).select_from(table).limit(0)).keys())
    missing = [column.name for column in table.columns if column.name not in found]
    if missing:
        report.add(check, "problem", f"missing columns {', '.join(missing)}", UPGRADE_FIX)
        return
    key = list(table.primary_key.columns)
    duplicated = conn.execute(
        select(*key, func.count().label("n")).group_by(*key).having(func.count() > 1).limit(5)
    ).all()
    rows = conn.execute(select(func.count()).select_from(table)).scalar_one()
    detail = (
        f"{len(found)} columns, key ({', '.join(c.name for c in key)}) not enforced by "
        f"BigQuery, clustered by it on new tables, {rows} rows"
    )
    if duplicated:
        shown = ", ".join(repr(tuple(row)[:-1]) for row in duplicated)
        report.add(
            check,
            "problem",
            f"{detail}; keys held by more than one row: {shown}",
            "keep one row per key (README, BigQuery: duplicate keys) and run dpone-state "
            "upgrade so that first writes take the lock row",
        )
        return
    if "revision" in table.c and not _bigquery_lock_row(conn, table):
        report.add(
            check,
            "problem",
            f"{detail}; its lock row in {BIGQUERY_LOCK_TABLE} is missing (first writes fail)",
            UPGRADE_FIX,
        )
        return
    report.add(check, "ok", detail)


def _bigquery_lock_row(conn: Connection, table: Table) -> bool:
    lock = lock_table(MetaData(), table.schema)
    if not inspect(conn).has_table(lock.name, schema=lock.schema):
        return False
    found = conn.execute(select(func.count()).where(lock.c.name == table.name)).scalar_one()
    return bool(found)
