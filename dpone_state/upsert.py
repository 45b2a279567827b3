"""One upsert construct, compiled per dialect: INSERT a row or UPDATE the row with its key.

``Upsert`` is a Core ``Insert`` that carries what to do on a key collision; each dialect
compiles it to its own atomic statement (``sqlalchemy.ext.compiler``):

- PostgreSQL, SQLite: ``INSERT … ON CONFLICT (key) DO UPDATE SET … [WHERE guard]``
- MySQL / MariaDB: ``INSERT … ON DUPLICATE KEY UPDATE …`` (the guard is folded into each
  assignment, see ``_compile_mysql``)
- SQL Server: ``MERGE … WITH (HOLDLOCK) …;`` (``compile_merge`` with ``MSSQL_MERGE``)
- BigQuery: ``MERGE`` — the same ``compile_merge`` with its own ``MergeSyntax``.

The compilations are registered here, when ``Upsert`` is defined, so an Engine made outside
``create_state_engine`` (no backend module imported) still compiles it.

An optional ``where`` guard (compare-and-set) makes the UPDATE conditional; whether the
statement wrote anything is read back with ``upsert_applied(result, dialect_name)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import (
    Column,
    Table,
    and_,
    bindparam,
    case,
    column,
    func,
    literal,
    select,
    update,
)
from sqlalchemy import table as table_clause
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement, ColumnElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.util import ClauseAdapter
from sqlalchemy.sql.visitors import InternalTraversal, iterate

from dpone_state.execution import WriteResult

__all__ = [
    "BIGQUERY_CONFLICT_MARKER",
    "BIGQUERY_MERGE",
    "BIGQUERY_NO_LOCK_MARKER",
    "INCOMING",
    "MSSQL_MERGE",
    "Incoming",
    "IncomingWhen",
    "LockedScript",
    "MergeSyntax",
    "Upsert",
    "compile_merge",
    "script_string",
    "upsert_applied",
]


class Incoming:
    """Marker for "the value this statement is inserting" in an UPDATE assignment."""

    _instance: Incoming | None = None

    def __new__(cls) -> Incoming:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "INCOMING"


INCOMING: Final = Incoming()


class IncomingWhen:
    """Marker for "the incoming value where ``condition`` (over the current row) holds, else
    the current value" in an UPDATE assignment."""

    def __init__(self, condition: ColumnElement[bool]) -> None:
        self.condition = condition

    def __repr__(self) -> str:
        return f"IncomingWhen({self.condition})"


UpdateValue = ColumnElement[Any] | Incoming | IncomingWhen


def _assignment(
    table: Table, name: str, value: UpdateValue, incoming: Callable[[str], ColumnElement[Any]]
) -> ColumnElement[Any]:
    """The expression an UPDATE assigns to ``name``; ``incoming(name)`` is the incoming value."""
    if isinstance(value, Incoming):
        return incoming(name)
    if isinstance(value, IncomingWhen):
        return case((value.condition, incoming(name)), else_=table.c[name])
    return value


#: ``LAST_INSERT_ID(expr)`` sets the OK packet's insert id; a guarded MySQL upsert whose guard
#: failed reports this value, which no table of ours (none has AUTO_INCREMENT) can produce.
MYSQL_GUARD_FAILED_MARKER: Final = 0x7D0E_5747_E000_0001


class Upsert(Insert):
    """INSERT ``rows`` into ``table``; on a ``key`` collision apply ``update`` instead.

    ``update`` maps column names to an expression (over the table's current row and bound
    parameters) or ``INCOMING``; ``where`` (over the current row) guards the UPDATE: when it is
    false nothing is written.
    """

    inherit_cache = True
    #: The compiled-cache key is the construct's structure (as SQLAlchemy's own DML constructs
    #: do it): the table, the rows' columns and placeholders, the key, every assignment and the
    #: guard. Two upserts that compile alike share one cache entry; a guarded and an unguarded
    #: one never do.
    _traverse_internals = [  # noqa: RUF012 - SQLAlchemy reads it as a class attribute
        *Insert._traverse_internals,
        ("_upsert_columns", InternalTraversal.dp_string_list),
        ("_upsert_values", InternalTraversal.dp_clauseelement_list),
        ("upsert_key", InternalTraversal.dp_string_list),
        ("_upsert_order", InternalTraversal.dp_string_list),
        ("_upsert_incoming", InternalTraversal.dp_string_list),
        ("_upsert_set", InternalTraversal.dp_string_clauseelement_dict),
        ("_upsert_incoming_when", InternalTraversal.dp_string_clauseelement_dict),
        ("upsert_where", InternalTraversal.dp_clauseelement),
    ]

    def __init__(
        self,
        table: Table,
        rows: Sequence[Mapping[str, Any]],
        *,
        key: Sequence[str],
        update: Mapping[str, UpdateValue],
        where: ColumnElement[bool] | None = None,
    ) -> None:
        super().__init__(table)
        if not rows:
            raise ValueError("an upsert needs at least one row")
        unknown = {name for row in rows for name in row} - set(table.c.keys())
        unknown |= (set(key) | set(update)) - set(table.c.keys())
        if unknown:
            raise ValueError(f"{table.name} has no column(s) {sorted(unknown)}")
        columns = list(rows[0])
        if any(list(row) != columns for row in rows[1:]):
            raise ValueError("every row of an upsert must name the same columns, in order")
        # Plain values become bound parameters typed like their column (never literals).
        self.upsert_table = table
        self.upsert_rows = [
            {
                name: value
                if isinstance(value, ClauseElement)
                else literal(value, type_=table.c[name].type)
                for name, value in row.items()
            }
            for row in rows
        ]
        self.upsert_key = list(key)
        self.upsert_update = dict(update)
        self.upsert_where = where
        self._upsert_columns = columns
        self._upsert_values = [row[name] for row in self.upsert_rows for name in columns]
        self._upsert_order = list(update)
        self._upsert_incoming = [n for n, v in update.items() if isinstance(v, Incoming)]
        self._upsert_set = {
            n: v for n, v in update.items() if not isinstance(v, (Incoming, IncomingWhen))
        }
        self._upsert_incoming_when = {
            n: v.condition for n, v in update.items() if isinstance(v, IncomingWhen)
        }

    def _insert_values(self) -> list[dict[str, Any]] | dict[str, Any]:
        rows = self.upsert_rows
        return rows[0] if len(rows) == 1 else rows


@compiles(Upsert)
def _compile_unsupported(element: Upsert, compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError(
        f"dpone-state has no upsert for the {compiler.dialect.name!r} dialect; supported: "
        "sqlite, postgresql, mysql, mariadb, mssql, bigquery"
    )


@compiles(Upsert, "postgresql")
@compiles(Upsert, "sqlite")
def _compile_on_conflict(element: Upsert, compiler: SQLCompiler, **kw: Any) -> str:
    """``INSERT … ON CONFLICT (key) DO UPDATE SET … WHERE guard`` (atomic on both)."""
    # The dialect packages load on first compile, not at import (~70 ms of import time).
    from sqlalchemy.dialects import postgresql, sqlite  # noqa: PLC0415

    make = postgresql.insert if compiler.dialect.name == "postgresql" else sqlite.insert
    stmt = make(element.upsert_table).values(element._insert_values())
    table = element.upsert_table
    assignments = {
        name: _assignment(table, name, value, stmt.excluded.__getitem__)
        for name, value in element.upsert_update.items()
    }
    stmt = stmt.on_conflict_do_update(
        index_elements=element.upsert_key, set_=assignments, where=element.upsert_where
    )
    return compiler.process(stmt, **kw)


def _columns_read_by(clause: ColumnElement[Any] | None, table: Table) -> set[str]:
    if clause is None:
        return set()
    return {
        node.key for node in iterate(clause) if isinstance(node, Column) and node.table is table
    }


@compiles(Upsert, "mysql")
@compiles(Upsert, "mariadb")
def _compile_mysql(element: Upsert, compiler: SQLCompiler, **kw: Any) -> str:
    """``INSERT … ON DUPLICATE KEY UPDATE col = IF(guard, new, col), …``.

    MySQL has no WHERE on this clause, so the guard wraps each assignment. Assignments run left
    to right and see earlier ones, so the columns the guard reads are assigned last. When the
    guard fails, the last assignment calls ``LAST_INSERT_ID(marker)``: with the FOUND_ROWS flag
    SQLAlchemy sets, a failed guard and an insert both report one row, and the marker in the
    result's ``lastrowid`` is what tells them apart.
    """
    from sqlalchemy.dialects import mysql  # noqa: PLC0415 - loaded on first compile

    table = element.upsert_table
    stmt = mysql.insert(table).values(element._insert_values())
    guard = element.upsert_where
    read_by_guard = _columns_read_by(guard, table)
    ordered = sorted(element.upsert_update.items(), key=lambda item: item[0] in read_by_guard)
    assignments: list[tuple[str, Any]] = []
    for index, (name, value) in enumerate(ordered):
        new: Any = _assignment(table, name, value, stmt.inserted.__getitem__)
        if guard is not None:
            current: Any = table.c[name]
            if index == len(ordered) - 1:
                current = func.IF(
                    func.LAST_INSERT_ID(literal(MYSQL_GUARD_FAILED_MARKER)), current, current
                )
            new = func.IF(guard, new, current)
        assignments.append((name, new))
    return compiler.process(stmt.on_duplicate_key_update(assignments), **kw)


@dataclass(frozen=True)
class MergeSyntax:
    """What differs between dialects in the ``MERGE`` that ``compile_merge`` renders."""

    #: Table hint after the target table, e.g. ``WITH (HOLDLOCK)`` on SQL Server.
    target_hint: str = ""
    #: Statement terminator (T-SQL requires ``;`` after a MERGE).
    terminator: str = ""
    #: The source rows: ``(VALUES (…), (…)) AS incoming (cols)``, or ``SELECT … UNION ALL``
    #: for dialects without a VALUES table constructor (BigQuery).
    source_rows: Literal["values", "select"] = "values"
    #: Alias of the target table and of the source rows in the statement.
    target_alias: str = "target"
    source_alias: str = "incoming"


#: SQL Server: ``HOLDLOCK`` (= SERIALIZABLE on the target for this statement) makes the match
#: and the insert one atomic step: the key (or the key range where it would go) stays
#: update-locked from the match to the commit, so a concurrent MERGE of the same key waits and
#: then sees the row, instead of inserting it a second time (primary-key violation).
MSSQL_MERGE: Final = MergeSyntax(target_hint="WITH (HOLDLOCK)", terminator=";")


def compile_merge(element: Upsert, compiler: SQLCompiler, syntax: MergeSyntax, **kw: Any) -> str:
    """``MERGE INTO table AS target USING <rows> AS incoming ON <key> WHEN MATCHED [AND guard]
    THEN UPDATE SET … WHEN NOT MATCHED THEN INSERT …``, every value a bound parameter.

    Columns of the table inside ``update`` expressions and the guard are rewritten to the
    target alias; ``INCOMING`` becomes the source row's column.
    """
    table = element.upsert_table
    rows = element.upsert_rows
    columns = list(rows[0])
    if any(list(row) != columns for row in rows[1:]):
        raise CompileError("every row of a MERGE upsert must name the same columns, in order")
    incoming = {
        name
        for name, new in element.upsert_update.items()
        if isinstance(new, (Incoming, IncomingWhen))
    }
    missing = (set(element.upsert_key) | incoming) - set(columns)
    if missing:
        raise CompileError(f"key / INCOMING column(s) {sorted(missing)} are not in the rows")
    quote = compiler.preparer.quote
    target = table.alias(syntax.target_alias)
    source = table_clause(
        syntax.source_alias, *(column(name, table.c[name].type) for name in columns)
    )
    to_target = ClauseAdapter(target)

    def value(name: str, data: Any) -> str:
        # A placeholder (``bindparam``) built by the storage is bound as it is; a plain value
        # gets a bound parameter typed like its column (never a literal, NULL included).
        if not isinstance(data, ClauseElement):
            data = bindparam(name, data, type_=table.c[name].type, unique=True)
        return compiler.process(data, **kw)

    if syntax.source_rows == "values":
        tuples = ", ".join(
            "(" + ", ".join(value(name, row[name]) for name in columns) + ")" for row in rows
        )
        names = ", ".join(quote(name) for name in columns)
        using = f"(VALUES {tuples}) AS {quote(syntax.source_alias)} ({names})"
    else:
        selects = " UNION ALL ".join(
            "SELECT " + ", ".join(f"{value(name, row[name])} AS {quote(name)}" for name in columns)
            for row in rows
        )
        using = f"({selects}) AS {quote(syntax.source_alias)}"
    on = and_(*(target.c[name] == source.c[name] for name in element.upsert_key))
    hint = f" {syntax.target_hint}" if syntax.target_hint else ""
    parts = [
        f"MERGE INTO {compiler.preparer.format_table(table)}{hint} AS {quote(syntax.target_alias)}",
        f"USING {using}",
        f"ON {compiler.process(on, **kw)}",
    ]
    if element.upsert_update:
        matched = "WHEN MATCHED"
        if element.upsert_where is not None:
            guard = to_target.traverse(element.upsert_where)
            matched += f" AND {compiler.process(guard, **kw)}"
        assignments = ", ".join(
            f"{quote(name)} = "
            + compiler.process(
                to_target.traverse(_assignment(table, name, new, source.c.__getitem__)), **kw
            )
            for name, new in element.upsert_update.items()
        )
        parts.append(f"{matched} THEN UPDATE SET {assignments}")
    inserted = ", ".join(quote(name) for name in columns)
    sourced = ", ".join(compiler.process(source.c[name], **kw) for name in columns)
    parts.append(f"WHEN NOT MATCHED THEN INSERT ({inserted}) VALUES ({sourced})")
    return "\n".join(parts) + syntax.terminator


@compiles(Upsert, "mssql")
def _compile_mssql(element: Upsert, compiler: SQLCompiler, **kw: Any) -> str:
    """``MERGE INTO … WITH (HOLDLOCK) AS target USING (VALUES …) AS incoming … ;``"""
    return compile_merge(element, compiler, MSSQL_MERGE, **kw)


#: BigQuery: no VALUES table constructor, so the source rows are ``SELECT … UNION ALL``; each
#: MERGE is one atomic DML job (BigQuery serialises conflicting DML on a table).
BIGQUERY_MERGE: Final = MergeSyntax(source_rows="select")


@compiles(Upsert, "bigquery")
def _compile_bigquery(element: Upsert, compiler: SQLCompiler, **kw: Any) -> str:
    """``MERGE INTO … AS target USING (SELECT … UNION ALL SELECT …) AS incoming …``"""
    return compile_merge(element, compiler, BIGQUERY_MERGE, **kw)


def upsert_applied(result: WriteResult, dialect_name: str) -> bool:
    """Whether a guarded ``Upsert`` wrote (inserted or updated) its row, from the write's
    result on a ``dialect_name`` engine."""
    if result.rowcount <= 0:
        return False
    if dialect_name in ("mysql", "mariadb"):
        return bool(result.lastrowid != MYSQL_GUARD_FAILED_MARKER)
    return True


#: Message of the error a locked first write raises when the stored revision is not 0.
BIGQUERY_CONFLICT_MARKER: Final = "dpone-state: revision conflict"
#: Message of the error a locked write raises when its lock row is missing (not provisioned).
BIGQUERY_NO_LOCK_MARKER: Final = "dpone-state: lock row missing"


#: Characters a script literal carries as they are; every other one is ``CHR(code point)``.
_PLAIN_CHARACTERS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,:;/()[]{}<>=+*#@!?&|^~$"
)


def script_string(value: str) -> ColumnElement[str]:
    """A string for a ``LockedScript``, spelled without any escape: runs of plain characters as
    quoted literals, every other character (quotes, backslash, ``%``, control characters,
    non-ASCII) as ``CHR(code point)``, joined by ``CONCAT``. Nothing in ``value`` can end the
    literal, and nothing depends on how a parser reads escapes (the emulator and BigQuery
    differ there)."""
    parts: list[ColumnElement[str]] = []
    run = ""
    for character in value:
        if character in _PLAIN_CHARACTERS:
            run += character
            continue
        if run:
            parts.append(literal(run))
            run = ""
        parts.append(func.CHR(literal(ord(character))))
    if run or not parts:
        parts.append(literal(run))
    return parts[0] if len(parts) == 1 else func.CONCAT(*parts)


class LockedScript(Executable, ClauseElement):
    """BigQuery: ``statements`` in one multi-statement transaction that first updates a lock row.

    BigQuery runs DML under snapshot isolation and detects conflicts only between statements that
    *mutate* rows of the same table; a MERGE that only inserts mutates nothing that exists, so two
    concurrent first writes of one key would both insert. Updating the row ``name`` of the lock
    table first makes every such transaction a mutation of that row: of two concurrent ones,
    one is aborted ("could not serialize access … due to concurrent update", retried by the
    storage) and runs again on a snapshot that holds the other's row. ``checks`` run after the
    lock, inside the transaction; each ``SELECT ERROR(…)`` aborts the transaction when it
    returns a row.

    Values are rendered as literals: the emulator the suite runs on passes no query parameters
    to scripts. Build the statements per call, with values, never from placeholders, and every
    string as ``script_string``.
    """

    inherit_cache = False

    def __init__(
        self,
        lock: Table,
        name: str,
        statements: Sequence[ClauseElement],
        checks: Sequence[ClauseElement] = (),
    ) -> None:
        self.lock = lock
        self.name = name
        self.statements = list(statements)
        self.checks = list(checks)


@compiles(LockedScript)
def _compile_locked_unsupported(element: LockedScript, compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError("LockedScript is a BigQuery multi-statement transaction")


@compiles(LockedScript, "bigquery")
def _compile_locked_bigquery(element: LockedScript, compiler: SQLCompiler, **kw: Any) -> str:
    """``BEGIN TRANSACTION; UPDATE lock …; [checks;] statements; COMMIT TRANSACTION;``"""
    lock = element.lock
    name = script_string(element.name)
    missing = (
        select(func.ERROR(literal(BIGQUERY_NO_LOCK_MARKER)))
        .select_from(
            select(func.count().label("n")).where(lock.c.name == name).subquery("lock_rows")
        )
        .where(column("n") == 0)
    )
    touch = update(lock).where(lock.c.name == name).values(holds=lock.c.holds + 1)
    dialect = compiler.dialect

    def inline(statement: ClauseElement) -> str:
        # Each statement gets a compiler of its own (one compiler compiles one statement).
        compiled = statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        return str(compiled)

    parts = [
        "BEGIN TRANSACTION",
        inline(touch),
        inline(missing),
        *(inline(check) for check in element.checks),
        *(inline(statement) for statement in element.statements),
        "COMMIT TRANSACTION",
    ]
    return ";\n".join(part.strip().rstrip(";") for part in parts) + ";"
