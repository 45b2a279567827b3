"""The schema/table name check shared by the storages and the manifest ``state:`` block, and the
check of every name a backend would derive from them against that backend's real limits."""

from __future__ import annotations

from typing import Final, Literal

from sqlalchemy import Table

from dpone_state.errors import InvalidIdentifierError

__all__ = ["IDENTIFIER_MAX", "NAME_LIMITS", "check_backend_names", "check_identifier"]

#: Longest schema or table name accepted (SQL Server's and BigQuery's limits are larger).
IDENTIFIER_MAX = 128

#: The longest identifier each backend keeps as written, and in what it counts. PostgreSQL
#: silently truncates longer names to 63 bytes (two long names could then address one table);
#: MySQL/MariaDB refuse names over 64 characters; SQL Server's ``sysname`` holds 128.
NAME_LIMITS: Final[dict[str, tuple[int, Literal["bytes", "characters"]]]] = {
    "postgresql": (63, "bytes"),
    "mysql": (64, "characters"),
    "mariadb": (64, "characters"),
    "mssql": (128, "characters"),
    "bigquery": (1024, "bytes"),
}
#: Backends whose identifiers hold only characters of the Basic Multilingual Plane.
_BMP_ONLY: Final = frozenset({"mysql", "mariadb"})


def check_identifier(field: str, value: object) -> str:
    """``value`` if it can be used as a schema or table name, else ``InvalidIdentifierError``."""
    if not isinstance(value, str) or not value or value != value.strip():
        raise InvalidIdentifierError(
            field, f"{value!r} is not a usable name: use a non-empty string without edge spaces"
        )
    if "\x00" in value or len(value) > IDENTIFIER_MAX:
        raise InvalidIdentifierError(
            field, f"must be at most {IDENTIFIER_MAX} characters and contain no NUL"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidIdentifierError(field, "is not valid Unicode (lone surrogate)") from None
    return value


def _derived_names(table: Table, dialect_name: str) -> list[tuple[str, str]]:
    """(what, name) of the table and every name its DDL creates on ``dialect_name``."""
    names = [("table", table.name)]
    names += [("constraint", str(c.name)) for c in table.constraints if c.name]
    names += [("index", str(i.name)) for i in table.indexes if i.name]
    if dialect_name == "mssql":
        from dpone_state.ddl import default_constraint_name  # noqa: PLC0415

        names += [
            ("DEFAULT constraint", default_constraint_name(table.name, c.name))
            for c in table.columns
            if c.server_default is not None and c.identity is None
        ]
    return names


def check_backend_names(dialect_name: str, schema: str | None, table: Table) -> None:
    """Refuse a schema or table whose name, or a name derived from it (primary key, index,
    SQL Server DEFAULT constraint), the backend would truncate or refuse."""
    limit = NAME_LIMITS.get(dialect_name)
    field = "table"
    for what, name in [("schema", schema or ""), *_derived_names(table, dialect_name)]:
        if not name:
            continue
        field = "schema" if what == "schema" else "table"
        if dialect_name in _BMP_ONLY and any(ord(ch) > 0xFFFF for ch in name):
            raise InvalidIdentifierError(
                field,
                f"{what} name {name!r}: {dialect_name} identifiers hold only characters of the "
                "Basic Multilingual Plane (no emoji or other characters above U+FFFF)",
            )
        if limit is None:
            continue
        size = len(name.encode("utf-8")) if limit[1] == "bytes" else len(name)
        if size > limit[0]:
            raise InvalidIdentifierError(
                field,
                f"{what} name {name!r} is {size} {limit[1]} long; {dialect_name} keeps at most "
                f"{limit[0]}: use a shorter {field} name",
            )
