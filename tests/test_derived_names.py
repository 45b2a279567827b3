"""Names dpone-state derives from a table's name (primary keys, indexes, SQL Server DEFAULT
constraints) fit every backend's real identifier limit, deterministically."""

from __future__ import annotations

import re

import pytest
from sqlalchemy.dialects import mssql, mysql, postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from dpone_state.ddl import capped_name, default_constraint_name
from dpone_state.tables import build_tables

#: Identifier limits: SQL Server 128 characters, MySQL 64, PostgreSQL 63 (bytes).
LIMITS = {"mssql": 128, "mysql": 64, "postgresql": 63}
DIALECTS = {"mssql": mssql.dialect(), "mysql": mysql.dialect(), "postgresql": postgresql.dialect()}
NAMED = re.compile(r"(?:CONSTRAINT|INDEX) (\S+)")


def _ddl(dialect_name: str, length: int) -> list[str]:
    dialect = DIALECTS[dialect_name]
    tables = build_tables("s", "x" * length, "r" * length, dialect_name=dialect_name)
    statements = []
    for table in (tables.xmin, tables.run):
        statements.append(str(CreateTable(table).compile(dialect=dialect)))
        statements += [str(CreateIndex(index).compile(dialect=dialect)) for index in table.indexes]
    return statements


@pytest.mark.parametrize(
    ("dialect_name", "length"),
    [(name, length) for name in sorted(LIMITS) for length in (20, 50, 60, 105, 120, 128)
     if length <= LIMITS[name]],  # a longer table name is itself refused
)  # fmt: skip
def test_derived_names_fit_the_backends_limit(dialect_name: str, length: int) -> None:
    statements = _ddl(dialect_name, length)
    names = [name for sql in statements for name in NAMED.findall(sql)]
    assert len(names) >= 3  # two primary keys and the retention index (+ DEFAULTs on mssql)
    assert all(len(name.encode()) <= LIMITS[dialect_name] for name in names), names
    assert statements == _ddl(dialect_name, length)  # deterministic
    assert len(set(names)) == len(names)  # still distinct


def test_sql_server_default_constraint_names_are_capped() -> None:
    table = "t" * 120
    name = default_constraint_name(table, "__dpone__updated_at")
    assert len(name) <= 128 and name.startswith("df_ttt")
    assert name != default_constraint_name(table, "__dpone__loaded_at")
    assert default_constraint_name("etl_xmin_state", "revision") == "df_etl_xmin_state_revision"
    assert capped_name("abc", 3) == "abc"
