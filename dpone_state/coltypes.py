"""Column types and the UTC clock, each one definition with its per-dialect variants.

Every dialect difference in column types lives here, expressed through ``with_variant`` or a
``TypeDecorator``'s ``load_dialect_impl`` (types) or ``sqlalchemy.ext.compiler`` (the UTC-now
default), never as a second table. SQL Server's and MySQL's own types (DATETIME2, DATETIME(6),
MEDIUMTEXT) are imported when a statement is first compiled for them: importing those dialect
packages costs ~80 ms, which every other backend's users would pay at import.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    FLOAT,
    NVARCHAR,
    TIMESTAMP,
    VARCHAR,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "MYSQL_TABLE_OPTIONS",
    "UTCDateTime",
    "big_integer",
    "boolean",
    "double",
    "long_text",
    "name_text",
    "revision_or_zero",
    "sql_utc_now",
]

#: Table options on MySQL/MariaDB: InnoDB, full Unicode, exact (binary) key comparison.
MYSQL_TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}

#: SQL Server compares NVARCHAR case-insensitively by default; keys must be exact.
MSSQL_EXACT_COLLATION = "Latin1_General_100_BIN2"


def name_text(length: int, *, key: bool = False) -> TypeEngine[str]:
    """A bounded name: TEXT where length is free, NVARCHAR / VARCHAR(n) where keys need it."""
    return (
        Text()
        .with_variant(NVARCHAR(length, collation=MSSQL_EXACT_COLLATION if key else None), "mssql")
        .with_variant(VARCHAR(length), "mysql", "mariadb")
        .with_variant(String(), "bigquery")
    )


class _LongText(TypeDecorator[str]):
    """Unbounded text; MySQL's MEDIUMTEXT is loaded with its dialect, not at import."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """The column type per dialect (not adapted: DDL renders it as it is)."""
        if dialect.name == "mssql":
            return NVARCHAR(None)
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import MEDIUMTEXT  # noqa: PLC0415 - lazy, see module

            return MEDIUMTEXT()
        if dialect.name == "bigquery":
            return String()
        return Text()


def long_text() -> TypeEngine[str]:
    """Unbounded text (error messages): NVARCHAR(max) on SQL Server, MEDIUMTEXT on MySQL."""
    return _LongText()


def big_integer() -> TypeEngine[int]:
    """A signed 64-bit integer (BIGINT / INT64)."""
    return BigInteger()


def boolean() -> TypeEngine[bool]:
    """A boolean (BIT on SQL Server, BOOL on BigQuery); no CHECK constraint is created."""
    return Boolean(create_constraint=False)


def double() -> TypeEngine[float]:
    """A double-precision float (``float`` on SQL Server, FLOAT64 on BigQuery)."""
    return Double().with_variant(FLOAT(), "mssql")


#: SQLAlchemy's default SQLite DATETIME text (what ``datetime.isoformat(" ", "microseconds")``
#: writes for the years every backend stores).
_SQLITE_DATETIME_FORMAT = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)


def _sqlite_datetime_text(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(" ", "microseconds")


class UTCDateTime(TypeDecorator[datetime]):
    """A UTC timestamp: naive input is taken as UTC, aware input is converted, output is aware.

    Stored in the legacy column types: ``timestamp`` (PostgreSQL), ``DATETIME2`` (SQL Server),
    ``DATETIME(6)`` (MySQL), ``TIMESTAMP`` (BigQuery), ISO text (SQLite).
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """The column type per dialect; SQL Server's and MySQL's are imported on first use."""
        if dialect.name == "mssql":
            from sqlalchemy.dialects.mssql import DATETIME2  # noqa: PLC0415 - lazy, see module

            return DATETIME2()  # type: ignore[no-untyped-call]
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import DATETIME  # noqa: PLC0415 - lazy, see module

            return DATETIME(fsp=6)
        if dialect.name == "bigquery":
            return TIMESTAMP(timezone=True)
        return DateTime(timezone=False)

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        moment: datetime = value
        if moment.utcoffset() is not None:
            moment = moment.astimezone(timezone.utc)
        return moment.replace(tzinfo=None)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """``process_bind_param`` and the impl's processor in one function (bulk saves bind
        two timestamps per checkpoint)."""
        impl_processor = self.impl_instance.bind_processor(dialect)
        if getattr(self.impl_instance, "_storage_format", None) == _SQLITE_DATETIME_FORMAT:
            impl_processor = _sqlite_datetime_text  # the same text, formatted in C
        utc = timezone.utc

        def process(value: Any) -> Any:
            if value.__class__ is datetime and value.tzinfo is utc:  # what utc_now() returns
                value = value.replace(tzinfo=None)
            elif value.__class__ is datetime and value.utcoffset() is not None:
                value = value.astimezone(utc).replace(tzinfo=None)
            else:
                value = self.process_bind_param(value, dialect)  # None, naive, errors
            return value if impl_processor is None else impl_processor(value)

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        """``process_result_value`` after the impl's own processor, in one function: it runs
        once per timestamp of every row read (a page of runs has three per row)."""
        impl_processor = self.impl_instance.result_processor(dialect, coltype)
        utc = timezone.utc

        def process(value: Any) -> datetime | None:
            if impl_processor is not None:
                value = impl_processor(value)
            if value is None:
                return None
            if value.__class__ is not datetime:
                return self.process_result_value(value, dialect)  # subclasses, errors
            if value.tzinfo is None:
                return value.replace(tzinfo=utc)
            return value.astimezone(utc)

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"the database returned {type(value).__name__} for a timestamp")
        stored: datetime = value
        if stored.utcoffset() is None:
            return stored.replace(tzinfo=timezone.utc)
        return stored.astimezone(timezone.utc)


class sql_utc_now(FunctionElement[datetime]):
    """The database's current UTC time, for server defaults (each dialect spells it its own way)."""

    type = UTCDateTime()
    name = "sql_utc_now"
    inherit_cache = True


@compiles(sql_utc_now)
def _utc_now_default(element: sql_utc_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(sql_utc_now, "postgresql")
def _utc_now_postgresql(element: sql_utc_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "(now() AT TIME ZONE 'utc')"


@compiles(sql_utc_now, "mssql")
def _utc_now_mssql(element: sql_utc_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "SYSUTCDATETIME()"


@compiles(sql_utc_now, "mysql")
@compiles(sql_utc_now, "mariadb")
def _utc_now_mysql(element: sql_utc_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "(UTC_TIMESTAMP(6))"


@compiles(sql_utc_now, "bigquery")
def _utc_now_bigquery(element: sql_utc_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP()"


class revision_or_zero(FunctionElement[int]):
    """A stored revision where NULL means 0.

    BigQuery cannot add a REQUIRED column to an existing table, so an adopted legacy table's
    ``revision`` is NULLABLE there (rows written before the upgrade hold NULL until the
    backfill): it reads ``COALESCE(revision, 0)``. Elsewhere the column is NOT NULL and the
    expression is the column itself.
    """

    type = BigInteger()
    name = "revision_or_zero"
    inherit_cache = True


@compiles(revision_or_zero)
def _revision_or_zero(element: revision_or_zero, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(next(iter(element.clauses)), **kw))


@compiles(revision_or_zero, "bigquery")
def _revision_or_zero_bigquery(element: revision_or_zero, compiler: SQLCompiler, **kw: Any) -> str:
    return f"COALESCE({compiler.process(next(iter(element.clauses)), **kw)}, 0)"
