"""How the storages send their one statement per call: compiled once, run on the pooled cursor.

SQLAlchemy's per-execute machinery (``Connection``, the execution context, ``CursorResult``)
costs more than a loopback round trip for the storages' one-row statements. ``StatementRunner``
keeps the same Core statements but compiles each one once per engine and runs it directly on a
pooled DBAPI connection, in autocommit: one statement at the server, nothing else.

It is used only where that is exactly what Core would send:

- drivers it knows (psycopg2 / psycopg, sqlite3, PyMySQL, pyodbc) and statements without
  per-execution expansion (``IN`` lists, Python-side defaults, RETURNING); a literal-execute
  value fixed in the statement (SQL Server's ``TOP n``) is rendered once, as Core renders it;
- engines without listeners (``before_cursor_execute``, ``handle_error``, …) and without
  ``echo``: where anything watches or changes execution, the storages use plain Core. The
  backend's own parameter declarations (SQL Server's ``do_setinputsizes``) are the exception:
  they depend on the statement alone, so its plan carries them (``BackendHooks.input_sizes``).

Errors are raised as Core raises them (``DBAPIError`` subclasses, a lost connection invalidated
together with the pool's older connections), so the storages' error handling is the same on
both paths.

Autocommit is switched per call where the driver does it without the server (psycopg, sqlite3).
PyMySQL's and pyodbc's switch is a round trip, so a connection used by a storage stays in
autocommit: ``dpone_state.backends.keep_autocommit`` (applied by ``create_state_engine`` on MySQL
and SQL Server) switches it back for any other user of the pool at checkout, and makes the
pool's reset on return free for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import BindTyping
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.sql.compiler import SQLCompiler

from dpone_state.backends import STORAGE_CHECKOUT, keeps_autocommit
from dpone_state.dialects import by_dialect
from dpone_state.engine import autocommit_switch, safe_url
from dpone_state.errors import StateError, StateUnavailableError, first_line
from dpone_state.failures import to_state_error
from dpone_state.keeper import Keeper, keeper_for

__all__ = ["StatementRunner", "WriteResult", "cannot_connect"]


class WriteResult(Protocol):
    """What a storage reads back from a write: the rows it matched and the driver's insert id."""

    @property
    def rowcount(self) -> int: ...

    @property
    def lastrowid(self) -> Any: ...


class _Written(NamedTuple):
    """A write's row count and insert id (a tuple: cheaper to define and to build than a
    dataclass)."""

    rowcount: int
    lastrowid: Any


def cannot_connect(engine: Engine, error: Exception) -> StateError:
    """The error of a storage call that found no connection to the state database: refused
    credentials or a missing database are ``StateAuthenticationError`` (configuration), the
    rest ``StateUnavailableError`` (nothing was sent; retryable)."""
    if isinstance(error, DBAPIError):
        return to_state_error(
            error,
            engine.dialect.name,
            where=safe_url(engine.url),
            table="the state table",
            connecting=True,
        )
    return StateUnavailableError(
        f"cannot connect to the state database {safe_url(engine.url)}: {first_line(error)}"
    )


#: Events that watch no statement (``dpone_state.keeper`` listens to the engine's disposal).
_UNWATCHING = frozenset({"engine_disposed"})


def _has_listeners(target: Any, replayed: frozenset[Callable[..., Any]] = frozenset()) -> bool:
    """Whether an engine or dialect has a listener on its execution now (``_has_events``
    never turns back off), other than the backend's ``replayed`` ones (reproduced by the
    plans)."""
    if not target._has_events:
        return False
    dispatch = target.dispatch
    return any(
        listener not in replayed
        for name in dispatch._event_names
        if name not in _UNWATCHING
        for listener in getattr(dispatch, name)
    )


class _Plan:
    """One statement compiled once for one engine, with its parameter and row processing."""

    __slots__ = ("input_sizes", "names", "order", "processors", "rendered", "result_types", "sql")

    def __init__(
        self,
        compiled: SQLCompiler,
        input_sizes: Callable[[Sequence[Any]], list[Any] | None] | None = None,
    ) -> None:
        self.sql: str = compiled.string
        positiontup: Sequence[str] | None = compiled.positiontup
        literal = compiled.literal_execute_params
        if literal:  # values fixed in the statement (``TOP n``): rendered once, as Core does
            expanded = compiled.construct_expanded_state(
                {bind.key: None for bind in compiled.bind_names if bind.required}
            )
            self.sql, positiontup = expanded.statement, expanded.positiontup
        #: Keys whose value is rendered into ``sql`` (a caller may not pass another).
        self.rendered = frozenset(bind.key for bind in literal)
        processors = compiled._bind_processors
        escaped: Mapping[str, str] = compiled.escaped_bind_names or {}
        by_name: dict[str, tuple[str, Any, Any, Callable[[Any], Any] | None]] = {}
        for bind, name in compiled.bind_names.items():
            if bind in literal:
                continue
            # (A tuple type's processors are a sequence: such statements are not planned.)
            process = cast("Callable[[Any], Any] | None", processors.get(name))
            by_name[escaped.get(name, name)] = (bind.key, _fixed(bind, process), bind, process)
        driver_names = (
            [escaped.get(name, name) for name in positiontup or ()]
            if compiled.positional
            else list(by_name)
        )
        #: Each placeholder in driver order: (the caller's key, the statement's own value
        #: processed once or ``_PER_CALL``, the placeholder, its processor).
        self.order: list[tuple[str, Any, Any, Callable[[Any], Any] | None]] = [
            by_name[name] for name in driver_names
        ]
        #: The placeholders' names for a driver with named parameters; ``None``: positional.
        self.names: list[str] | None = None if compiled.positional else driver_names
        #: ``cursor.setinputsizes``'s argument, where the driver declares parameters.
        self.input_sizes = (
            input_sizes([bind for _, _, bind, _ in self.order])
            if input_sizes is not None and compiled.positional
            else None
        )
        self.result_types = [column[3] for column in compiled._result_columns]
        #: Result processors, found from the first cursor description (as Core does).
        self.processors: list[tuple[int, Callable[[Any], Any]]] | None = None

    def parameters(self, params: Mapping[str, Any]) -> Any:
        """The DBAPI parameters for the caller's ``params`` (bind-processed, in driver order);
        a placeholder the caller leaves out takes its statement's value, processed once."""
        if self.rendered and not self.rendered.isdisjoint(params):
            raise StatementError(
                f"{sorted(self.rendered & params.keys())} are rendered in the compiled statement",
                self.sql,
                dict(params),
                None,
            )
        # The value each processor saw last: the rows of a bulk save share their timestamps
        # and booleans, processed once rather than once per row.
        last: dict[Any, tuple[Any, Any]] = {}
        values = []
        for key, fixed, bind, process in self.order:
            if key in params:
                value = params[key]
            elif fixed is not _PER_CALL:
                values.append(fixed)
                continue
            else:
                value = self._default(bind, params)
            if process is not None:
                seen = last.get(process)
                if seen is None or seen[0] is not value:
                    seen = last[process] = (value, process(value))
                value = seen[1]
            values.append(value)
        if self.names is None:
            return tuple(values)
        return dict(zip(self.names, values, strict=True))

    def _default(self, bind: Any, params: Mapping[str, Any]) -> Any:
        if bind.required:
            raise StatementError(
                f"A value is required for bind parameter {bind.key!r}", self.sql, dict(params), None
            )
        return bind.effective_value


#: A placeholder whose value is found per call (required, or computed by a callable).
_PER_CALL: Any = object()


def _fixed(bind: Any, process: Callable[[Any], Any] | None) -> Any:
    """A placeholder's value in the statement (``revision = 1``, ``LIMIT 20``), processed once."""
    if bind.required or bind.callable is not None:
        return _PER_CALL
    value = bind.value
    return value if process is None else process(value)


def _plannable(compiled: SQLCompiler) -> bool:
    """Whether a compiled statement runs as it is: nothing Core adds per execution (a
    literal-execute value is rendered once where the statement fixes it)."""
    literal = compiled.literal_execute_params
    return not (
        any(bind.required or bind.callable is not None for bind in literal)
        or compiled.post_compile_params - literal
        or compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.implicit_returning
        or compiled.returning
        or compiled.schema_translate_map
        or any(isinstance(p, tuple) for p in compiled._bind_processors.values())
    )


#: Plans kept per runner: the storages' statements, and a bound on ad-hoc ones.
_MAX_PLANS = 256


class StatementRunner:
    """Runs a storage's statements for one engine, each compiled once (``None`` plans: Core)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        row = by_dialect(engine.dialect.name)
        kept = row.kept_autocommit(engine.dialect.driver)
        self._sticky = kept is not None
        self._switch = autocommit_switch(engine) or (kept[0] if kept is not None else None)
        self._plans: dict[Any, _Plan | None] = {}
        hooks = row.hooks()
        self._replayed = hooks.replayed_listeners()
        declares = engine.dialect.bind_typing is BindTyping.SETINPUTSIZES
        self._input_sizes: Callable[[Sequence[Any]], list[Any] | None] | None = (
            (lambda binds: hooks.input_sizes(binds, engine.dialect)) if declares else None
        )
        self._keeper: Keeper | None = None
        self._keeper_pool: Any = None  # the pool ``_keeper`` was made for

    def usable(self) -> bool:
        """Whether calls may take the direct path now (checked per call: listeners come and go)."""
        engine = self.engine
        if self._switch is None or engine.echo or engine._execution_options:
            return False
        if self._sticky and not keeps_autocommit(engine):
            return False
        return not (_has_listeners(engine) or _has_listeners(engine.dialect, self._replayed))

    def plan(self, statement: Any) -> _Plan | None:
        """The compiled plan of ``statement``, or ``None`` when Core must run it."""
        try:
            return self._plans[statement]
        except KeyError:
            pass
        compiled = statement.compile(dialect=self.engine.dialect)
        plan = _Plan(compiled, self._input_sizes) if _plannable(compiled) else None
        if len(self._plans) >= _MAX_PLANS:
            self._plans.clear()
        self._plans[statement] = plan
        return plan

    def write(self, plan: _Plan, params: Mapping[str, Any]) -> WriteResult:
        """Run a write plan alone in autocommit: its row count and insert id."""
        cursor, fairy = self._execute(plan, params)
        try:
            written = _Written(
                cursor.rowcount, getattr(cursor, "lastrowid", None)
            )  # psycopg 3 has none
        except BaseException:
            self._release(cursor, fairy)
            raise
        self._release(cursor, fairy, keep=True)
        return written

    @property
    def transactional(self) -> bool:
        """Whether ``write_together`` can put several writes in one transaction for free."""
        return not self._sticky

    def write_together(self, writes: Sequence[tuple[_Plan, Mapping[str, Any]]]) -> None:
        """Run write plans in one transaction (one commit), on one pooled connection."""
        fairy = self._checkout()
        dbapi_connection: Any = fairy.dbapi_connection
        cursor = None
        plan: _Plan | None = None
        parameters: Any = None
        try:
            cursor = dbapi_connection.cursor()
            for plan, params in writes:
                parameters = plan.parameters(params)
                if plan.input_sizes is not None:
                    cursor.setinputsizes(plan.input_sizes)
                cursor.execute(plan.sql, parameters)
            dbapi_connection.commit()
        except BaseException as error:
            try:  # the pool's reset on return rolls the transaction back
                self._raise_wrapped(error, plan, parameters, cursor, fairy)
            finally:
                self._release(cursor, fairy)
            raise
        self._release(cursor, fairy, keep=True)

    def read(self, plan: _Plan, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Run a read plan: its rows (sequences by position), values processed as Core would."""
        cursor, fairy = self._execute(plan, params)
        try:
            try:
                rows = cursor.fetchall()
            except BaseException as error:
                self._raise_wrapped(error, plan, params, cursor, fairy)
                raise
            processors = plan.processors
            if processors is None:
                processors = plan.processors = self._result_processors(plan, cursor)
        except BaseException:
            self._release(cursor, fairy)
            raise
        self._release(cursor, fairy, keep=True)
        if not processors:
            return list(rows)
        processed: list[Sequence[Any]] = []
        for raw in rows:
            row = list(raw)
            for index, process in processors:
                row[index] = process(row[index])
            processed.append(row)
        return processed

    def _result_processors(
        self, plan: _Plan, cursor: Any
    ) -> list[tuple[int, Callable[[Any], Any]]]:
        dialect = self.engine.dialect
        found: list[tuple[int, Callable[[Any], Any]]] = []
        for index, (type_, description) in enumerate(
            zip(plan.result_types, cursor.description, strict=True)
        ):
            process = type_._cached_result_processor(dialect, description[1])
            if process is not None:
                found.append((index, process))
        return found

    def _execute(self, plan: _Plan, params: Mapping[str, Any]) -> tuple[Any, Any]:
        engine = self.engine
        try:
            parameters = plan.parameters(params)
        except StatementError:
            raise
        except Exception as error:
            raise StatementError(
                str(error), plan.sql, dict(params), error, hide_parameters=engine.hide_parameters
            ) from error
        fairy = self._checkout()
        dbapi_connection: Any = fairy.dbapi_connection
        cursor = None
        try:
            self._switch(dbapi_connection, True)  # type: ignore[misc]  # free if already on
            cursor = dbapi_connection.cursor()
            if plan.input_sizes is not None:
                cursor.setinputsizes(plan.input_sizes)  # declared to the driver: no round trip
            cursor.execute(plan.sql, parameters)
        except BaseException as error:
            try:
                self._raise_wrapped(error, plan, parameters, cursor, fairy)
            finally:
                self._release(cursor, fairy)
            raise
        return cursor, fairy

    def _checkout(self) -> Any:
        """A pooled connection for one call: the one this thread kept from its last call
        (``dpone_state.keeper``), else one checked out of the pool."""
        engine = self.engine
        pool = engine.pool
        if pool is not self._keeper_pool:  # first call, or the engine was disposed
            self._keeper, self._keeper_pool = keeper_for(engine), pool
        keeper = self._keeper
        if keeper is not None:
            fairy = keeper.checkout()
            if fairy is not None:
                return fairy
        token = STORAGE_CHECKOUT.set(True) if self._sticky else None
        try:
            return pool.connect()
        except DBAPIError as error:  # raised by a pool event (the idle ping)
            raise cannot_connect(engine, error) from error
        except engine.dialect.loaded_dbapi.Error as error:
            wrapped = DBAPIError.instance(
                None,
                None,
                error,
                engine.dialect.loaded_dbapi.Error,
                connection_invalidated=engine.dialect.is_disconnect(error, None, None),  # as Core
                dialect=engine.dialect,
            )
            raise cannot_connect(engine, wrapped) from wrapped
        finally:
            if token is not None:
                STORAGE_CHECKOUT.reset(token)

    def _raise_wrapped(
        self,
        error: BaseException,
        plan: _Plan | None,
        parameters: Any,
        cursor: Any,
        fairy: Any = None,
    ) -> None:
        """Invalidate what a failure broke and raise it as Core would (``DBAPIError``); other
        exceptions are left to propagate."""
        dialect = self.engine.dialect
        dbapi_error = dialect.loaded_dbapi.Error
        if not isinstance(error, Exception):  # interrupted mid-statement: never reuse it
            if fairy is not None and fairy.is_valid:
                fairy.invalidate(error)
            return
        if not isinstance(error, dbapi_error):
            return
        connection = fairy.dbapi_connection if fairy is not None else None
        disconnect = dialect.is_disconnect(error, connection, cursor)
        if disconnect and fairy is not None and fairy.is_valid:
            self.engine.pool._invalidate(fairy, error)  # this one and every older connection
        wrapped = DBAPIError.instance(
            plan.sql if plan is not None else None,
            parameters,
            error,
            dbapi_error,
            hide_parameters=self.engine.hide_parameters,
            connection_invalidated=disconnect,
            dialect=dialect,
        )
        raise wrapped from error

    def _release(self, cursor: Any, fairy: Any, *, keep: bool = False) -> None:
        """Close the cursor and hand the connection back: kept for this thread's next call
        after a success (``keep``), else to the pool (whose reset rolls back what is left)."""
        if fairy.dbapi_connection is None:  # invalidated: already back in the pool
            return
        try:
            if cursor is not None:
                cursor.close()
            if not self._sticky:
                self._switch(fairy.dbapi_connection, False)  # type: ignore[misc]
        except Exception as error:  # a connection the server closed: never reuse it
            fairy.invalidate(error)
            return
        keeper = self._keeper
        if keep and keeper is not None and keeper.pool is self.engine.pool:
            keeper.checkin(fairy)
        else:
            fairy.close()
