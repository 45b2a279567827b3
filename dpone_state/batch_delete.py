"""One DELETE of at most ``n`` rows, compiled per dialect: a batch of a prune in one statement.

``DeleteBatch`` wraps a Core ``delete(table).where(…)`` and a row count; each dialect that can
limit a DELETE says it its own way (``sqlalchemy.ext.compiler``):

- SQL Server: ``DELETE TOP (n) FROM … WHERE …`` (which rows is the server's choice)
- SQLite: ``DELETE FROM t WHERE rowid IN (SELECT rowid FROM t WHERE … ORDER BY … LIMIT n)``: the
  subquery walks the ``ORDER BY`` index (the retention index) and stops after ``n``; the DELETE
  finds each row by its rowid
- MySQL / MariaDB: ``DELETE FROM t WHERE … ORDER BY … LIMIT n``

Other dialects refuse to compile it; the registry row's ``prune_batches`` says which backends
delete their batches this way (``dialects.Backend``). Registered here, when the construct is
defined, so an Engine made outside ``create_state_engine`` compiles it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Integer, delete, literal_column, select
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement, ColumnElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Delete

__all__ = ["DeleteBatch"]


class DeleteBatch(Executable, ClauseElement):
    """``delete`` limited to ``rows`` rows per statement, ``order_by`` first where it can say so."""

    inherit_cache = False

    def __init__(
        self, delete: Delete, rows: int, order_by: Sequence[ColumnElement[Any]] = ()
    ) -> None:
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise ValueError("a batch DELETE needs a row count >= 1")
        self.delete = delete
        self.rows = rows
        self.order_by = tuple(order_by)

    def limit(self) -> ColumnElement[Any]:
        """The row count as an integer literal (a checked int), not a parameter."""
        return literal_column(str(self.rows), Integer)


@compiles(DeleteBatch)
def _compile_unsupported(element: DeleteBatch, compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError(
        f"no one-statement batch DELETE for dialect {compiler.dialect.name!r}; "
        "its registry row prunes batches another way"
    )


def _delete_from(statement: Delete, compiler: SQLCompiler, **kw: Any) -> str:
    """``statement`` compiled, checked to start as the rewrites above expect."""
    text = str(compiler.process(statement, **kw))
    if not text.startswith("DELETE FROM "):
        raise CompileError(f"unexpected DELETE form: {text[:40]!r}")
    return text


@compiles(DeleteBatch, "mssql")
def _compile_mssql(element: DeleteBatch, compiler: SQLCompiler, **kw: Any) -> str:
    """``DELETE TOP (n)`` takes no ORDER BY; which rows go first does not matter to a prune."""
    text = _delete_from(element.delete, compiler, **kw)
    return f"DELETE TOP ({element.rows}) FROM {text[len('DELETE FROM ') :]}"


@compiles(DeleteBatch, "sqlite")
def _compile_sqlite(element: DeleteBatch, compiler: SQLCompiler, **kw: Any) -> str:
    """SQLite's own ``DELETE … LIMIT`` is a build option many builds leave out: pick by rowid."""
    table = element.delete.table
    rowid: ColumnElement[int] = literal_column("rowid", Integer)
    chosen = select(rowid).select_from(table)
    if element.delete.whereclause is not None:
        chosen = chosen.where(element.delete.whereclause)
    chosen = (
        chosen.order_by(*element.order_by)
        .limit(element.limit())
        .offset(literal_column("0", Integer))  # else SQLite's compiler adds ``OFFSET ?`` (0)
        .correlate(None)  # the same table as the DELETE's: a subquery of its own
    )
    return _delete_from(delete(table).where(rowid.in_(chosen)), compiler, **kw)


@compiles(DeleteBatch, "mysql")
@compiles(DeleteBatch, "mariadb")
def _compile_mysql(element: DeleteBatch, compiler: SQLCompiler, **kw: Any) -> str:
    """A single-table DELETE takes ``ORDER BY`` and ``LIMIT`` natively."""
    text = _delete_from(element.delete, compiler, **kw)
    order = ", ".join(str(compiler.process(column, **kw)) for column in element.order_by)
    return f"{text}{f' ORDER BY {order}' if order else ''} LIMIT {element.rows}"
