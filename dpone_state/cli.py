"""The ``dpone-state`` command: provision, inspect, move, repair and prune state from a shell.

Built on Click (the stack of Meltano's ``meltano state``) with Rich for tables and progress.
Only the console script imports this module: ``import dpone_state`` loads neither Click nor
Rich, and Alembic loads only in the commands that migrate.

Exit codes: 0 ok; 1 a problem was found (doctor, a checkpoint or run that does not exist, the
database unreachable or not provisioned, a lost compare-and-set, a conflict); 2 a usage or
configuration error (bad arguments, an unknown revision, an unusable URL or manifest, a refused
confirmation). Errors are one line on stderr (with ``--json`` also a JSON object on stdout),
with the URL's password masked; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import sys
import traceback
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from dpone_state.dialects import DEFAULT, DEFAULT_URL, OFFLINE_DIALECTS, find_dialect
from dpone_state.engine import safe_url
from dpone_state.errors import (
    BackendMismatchError,
    BackendNotInstalledError,
    DowngradeRefusedError,
    InvalidExportError,
    InvalidStateError,
    Problem,
    RevisionConflictError,
    StateConfigError,
    StateUnavailableError,
    UnsupportedBackendError,
    UsageError,
    VaultUnavailableError,
    first_line,
)
from dpone_state.models import MAX_BIGINT, RunState, RunStateStatus, XMinState, to_utc, utc_now
from dpone_state.storage import MAX_LIMIT, RunStateStorage, XMinStateStorage
from dpone_state.tables import DEFAULT_RUN_TABLE, DEFAULT_XMIN_TABLE

__all__ = [
    "EXIT_OK",
    "EXIT_PROBLEM",
    "EXIT_USAGE",
    "cli",
    "format_qualified",
    "main",
    "printable",
    "split_qualified",
]

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
PROG = "dpone-state"
ENV_PREFIX = "DPONE_STATE_"
#: Rows of each kind an import or copy lists by key (every conflict is listed).
PLAN_LINES = 20
#: Characters of an error message shown in a run listing.
ERROR_PREVIEW = 60

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- names and values


def split_qualified(text: str) -> tuple[str, str]:
    """``SCHEMA.TABLE`` -> ``(schema, table)``; a part in double quotes may hold dots and quotes.

    ``public.orders``, ``"my.schema".orders``; inside quotes ``""`` is one quote character.
    """
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            chars: list[str] = []
            j = i + 1
            while True:
                if j >= n:
                    raise UsageError(f"{text!r}: unterminated double quote")
                if text[j] == '"':
                    if j + 1 < n and text[j + 1] == '"':
                        chars.append('"')
                        j += 2
                        continue
                    j += 1
                    break
                chars.append(text[j])
                j += 1
            parts.append("".join(chars))
            i = j
        else:
            dot = text.find(".", i)
            end = n if dot == -1 else dot
            if '"' in text[i:end]:
                raise UsageError(f'{text!r}: quote a whole name part, e.g. "my.schema".orders')
            parts.append(text[i:end])
            i = end
        if i == n:
            break
        if text[i] != ".":
            raise UsageError(f"{text!r}: expected a dot after a quoted name")
        i += 1
    if len(parts) != 2 or not all(parts):
        raise UsageError(
            f"{text!r} is not SCHEMA.TABLE; quote a name that holds a dot "
            "('\"my.schema\".orders') or use --source-schema and --source-table"
        )
    return parts[0], parts[1]


def format_qualified(schema: str, table: str) -> str:
    """The inverse of ``split_qualified``: a part holding a dot, quote or space is quoted."""

    def part(name: str) -> str:
        if any(ch in name for ch in '." ') or not name:
            return '"' + name.replace('"', '""') + '"'
        return name

    return f"{part(schema)}.{part(table)}"


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 date or date-time; naive means UTC, ``Z`` is accepted."""
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{text!r} is not an ISO 8601 date-time (e.g. 2024-05-01T02:00:00Z; naive = UTC)"
        ) from None
    try:
        return to_utc("date", parsed)
    except InvalidStateError as error:
        raise UsageError(str(error)) from None


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with control and format characters escaped (``\\n``, ``\\x1b``, ``\\u202e``).

    A stored name is data: in a table it must not start a new row, move the cursor or
    reorder the line. JSON output needs no such care (its encoder escapes them).
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


class _DateTime(click.ParamType):  # type: ignore[type-arg]
    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            return parse_datetime(str(value))
        except UsageError as error:
            self.fail(str(error), param, ctx)


DATE = _DateTime()
NON_NEGATIVE = click.IntRange(0, MAX_BIGINT)


# --------------------------------------------------------------------------- options


@dataclass
class Options:
    """What the shared options say; filled in wherever they appear on the command line."""

    url: str | None = None
    config: str | None = None
    schema: str | None = None
    no_schema: bool = False
    xmin_table: str | None = None
    run_table: str | None = None
    version_table: str | None = None
    json: bool = False
    quiet: bool = False
    debug: bool = False
    engines: list[Engine] = field(default_factory=list)

    def env(self, name: str) -> str | None:
        value = os.environ.get(ENV_PREFIX + name.upper())
        return value or None

    def state_url(self) -> str:
        return self.url or self.env("url") or DEFAULT_URL

    def schema_option(self, *, env: bool = True) -> Any:
        """``DEFAULT``, ``None`` (no schema) or a name: the option, else (``env``)
        ``DPONE_STATE_SCHEMA``."""
        if self.no_schema and self.schema is not None:
            raise UsageError("use either --schema or --no-schema")
        if self.no_schema:
            return None
        schema = self.schema if self.schema is not None or not env else self.env("schema")
        return DEFAULT if schema is None else _schema_word(schema)

    def table(self, name: str, *, env: bool = True) -> str | None:
        """A table name option, else (``env``) its ``DPONE_STATE_*`` variable."""
        value: str | None = getattr(self, name)
        return value if value is not None or not env else self.env(name)


def _schema_word(schema: str) -> str | None:
    """``none`` means the connection's default schema (as ``-x schema=none`` for alembic)."""
    return None if schema.lower() == "none" else schema


def _options() -> Options:
    return click.get_current_context().find_object(Options) or Options()


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value is not False and param.name is not None:
        setattr(ctx.find_object(Options), param.name, value)
    return value


_SHARED_NAMES = (
    "url", "config", "schema", "no_schema", "xmin_table", "run_table", "version_table", "json",
    "quiet", "debug",
)  # fmt: skip


def _shared(function: F) -> F:
    """The options every command accepts before or after its name."""
    specs: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (("--url",), {"metavar": "URL", "help": "SQLAlchemy URL of the state database "
                      f"[env DPONE_STATE_URL; default {DEFAULT_URL}]"}),
        (("--config",), {"metavar": "MANIFEST", "help": "a manifest whose state: block says where"}),
        (("--schema",), {"metavar": "NAME", "help": "schema of both tables (default etl_state; "
                         "none on SQLite) [env DPONE_STATE_SCHEMA]"}),
        (("--no-schema",), {"is_flag": True, "help": "use the connection's default schema"}),
        (("--xmin-table",), {"metavar": "NAME", "help": f"default {DEFAULT_XMIN_TABLE} "
                             "[env DPONE_STATE_XMIN_TABLE]"}),
        (("--run-table",), {"metavar": "NAME", "help": f"default {DEFAULT_RUN_TABLE} "
                            "[env DPONE_STATE_RUN_TABLE]"}),
        (("--version-table",), {"metavar": "NAME", "help": "the migrations' version table, "
                                "one per store (default dpone_state_alembic_version) "
                                "[env DPONE_STATE_VERSION_TABLE]"}),
        (("--json",), {"is_flag": True, "help": "JSON on stdout (errors too)"}),
        (("--quiet", "-q"), {"is_flag": True, "help": "print nothing on success"}),
        (("--debug",), {"is_flag": True, "help": "show tracebacks of errors"}),
    ]  # fmt: skip
    for decls, attrs in specs:
        function = click.option(
            *decls, expose_value=False, callback=_remember, is_eager=True, **attrs
        )(function)
    return function


def _shared_last(command: click.Command) -> None:
    """The command's own parameters first, then the shared options in their order."""
    shared = {name: i for i, name in enumerate(_SHARED_NAMES)}
    own = [p for p in command.params if p.name not in shared]
    rest = sorted(
        (p for p in command.params if p.name in shared), key=lambda p: shared[p.name or ""]
    )
    command.params = own + rest


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _epilog(*examples: str) -> str:
    lines = "\n".join(f"  {example}" for example in examples)
    return f"\b\nExample{'s' if len(examples) > 1 else ''}:\n{lines}"


class _Group(click.Group):
    """Commands listed in the order they were added."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


def _group(parent: click.Group | None, name: str, help_: str, *examples: str) -> click.Group:
    def show_help() -> int:
        ctx = click.get_current_context()
        if ctx.invoked_subcommand is None:
            click.echo(ctx.get_help())
        return EXIT_OK

    callback = _shared(show_help)
    group = _Group(
        name,
        callback=callback,
        params=getattr(callback, "__click_params__", []),
        help=help_,
        epilog=_epilog(*examples),
        invoke_without_command=True,
        context_settings=CONTEXT,
    )
    _shared_last(group)
    if parent is not None:
        parent.add_command(group)
    return group


def _command(
    group: click.Group, name: str, help_: str, *examples: str, negative_args: bool = False
) -> Callable[[F], F]:
    """A command of ``group``; ``negative_args``: ``-1`` is an argument, not an option."""
    settings = CONTEXT | ({"ignore_unknown_options": True} if negative_args else {})

    def decorate(function: F) -> F:
        command = group.command(
            name, help=help_, epilog=_epilog(*examples), context_settings=settings
        )(_shared(function))
        _shared_last(command)
        return function

    return decorate


# --------------------------------------------------------------------------- the store (seam)


@dataclass
class Store:
    """Where a command works: an engine, the two storages, the migrations' version table."""

    engine: Engine
    xmin: XMinStateStorage
    runs: RunStateStorage
    #: ``--version-table`` / ``DPONE_STATE_VERSION_TABLE``; ``None``: the migrations' default.
    version_table_option: str | None = None

    @property
    def version_table(self) -> str:
        """The migrations' version table (Alembic loads only for the commands that ask)."""
        from dpone_state.migrate import VERSION_TABLE  # noqa: PLC0415

        return self.version_table_option or VERSION_TABLE

    @property
    def url(self) -> str:
        return safe_url(self.engine.url)

    @property
    def schema(self) -> str | None:
        """The one schema of both tables (the migrations keep them together)."""
        if self.xmin.schema != self.runs.schema:
            raise UsageError(
                f"the migrations keep both tables in one schema, but the XMin table is in "
                f"{self.xmin.schema!r} and the run table in {self.runs.schema!r}; pass --schema"
            )
        return self.xmin.schema

    def migration_names(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "xmin_table": self.xmin.table_name,
            "run_table": self.runs.table_name,
            "version_table": self.version_table,
        }


def parse_url(url: str | URL) -> URL:
    """A SQLAlchemy URL, or a usage error naming what is wrong (never the password)."""
    try:
        parsed = make_url(url)
        _ = parsed.port  # validated lazily by some SQLAlchemy versions
    except (ArgumentError, ValueError) as error:
        detail = "its port is not a number" if "int()" in str(error) else "it cannot be parsed"
        raise UsageError(
            f"the state URL is not a SQLAlchemy URL ({detail}): "
            "dialect+driver://user:password@host:port/database"
        ) from None
    return parsed


def _database_file(url: URL) -> Path | None:
    """The file a URL's database is (SQLite), or ``None`` (a server, or in memory)."""
    backend = find_dialect(url.get_backend_name())
    database = url.database
    if backend is None or not backend.database_is_file or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return Path(database)


def _refuse_missing(url: URL) -> None:
    """Read-only commands never create a database: an absent SQLite file is a problem.

    Checked before an engine exists (making one creates the file's folder).
    """
    path = _database_file(url)
    if path is not None and not path.exists():
        where = "; its folder does not exist either" if not path.parent.exists() else ""
        raise Problem(
            f"the state database {path} does not exist{where} (nothing was created); "
            "provision it with `dpone-state upgrade`"
        )


def open_store(
    options: Options,
    *,
    url: str | None = None,
    config: str | None = None,
    schema: str | None = None,
    create: bool = False,
) -> Store:
    """State from a manifest or a URL, with the table options applied, through the one door
    (``open_stores``). Only ``create`` (provisioning) may bring a new SQLite file into
    existence. The engine is disposed when ``main`` returns.
    """
    from dpone_state.config import load_state_settings, settings_from_url, with_tables  # noqa: PLC0415
    from dpone_state.opener import open_stores  # noqa: PLC0415

    config = config if config is not None or url is not None else options.config
    # A manifest says where its tables are; the variables fill in only for a URL.
    env = config is None
    tables: dict[str, Any] = {
        "schema": options.schema_option(env=env) if schema is None else _schema_word(schema),
        "xmin_table": options.table("xmin_table", env=env),
        "run_table": options.table("run_table", env=env),
    }
    if config is not None:
        if url is None and options.url is not None:
            raise UsageError("use either --url or --config, not both")
        manifest = Path(config)
        if not manifest.is_file():
            raise UsageError(f"manifest {manifest} does not exist")
        settings = with_tables(load_state_settings(manifest), **tables)
    else:
        settings = settings_from_url(parse_url(url or options.state_url()), **tables)
    if not create and settings.url is not None:
        _refuse_missing(settings.url)
    stores = open_stores(settings)
    options.engines.append(stores.engine)
    return Store(stores.engine, stores.xmin, stores.runs, options.table("version_table"))


# --------------------------------------------------------------------------- output


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def to_json(data: object) -> str:
    return json.dumps(data, default=_json_default, indent=2)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):  # JSON keeps the microseconds; `runs show` accepts this
        return value.isoformat(timespec="seconds")
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:.2f}"
    return printable(str(value))


def _console(stderr: bool = False) -> Any:
    from rich.console import Console  # noqa: PLC0415

    stream = sys.stderr if stderr else sys.stdout
    console = Console(file=stream, highlight=False, soft_wrap=False)
    if not console.is_terminal:  # a pipe or a file: never wrap or cut a row
        console = Console(file=stream, highlight=False, width=10_000, no_color=True)
    return console


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Aligned columns under a rule (numbers right-aligned), control characters escaped."""
    from rich import box  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for i, header in enumerate(headers):
        numeric = bool(rows) and all(
            row[i] is None or (isinstance(row[i], (int, float)) and not isinstance(row[i], bool))
            for row in rows
        )
        table.add_column(Text(header), justify="right" if numeric else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(_cell(value)) for value in row))
    console = _console()
    with console.capture() as captured:
        console.print(table)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()), color=True)


def format_record(record: dict[str, object]) -> str:
    """One record as ``key  value`` lines."""
    width = max(len(key) for key in record)
    return "\n".join(f"{key.ljust(width)}  {_cell(value)}" for key, value in record.items())


def say(data: object, text: str | Callable[[], None]) -> None:
    """JSON (``--json``), nothing (``--quiet``) or the human form: a line or a rendering."""
    options = _options()
    if options.json:
        click.echo(to_json(data))
    elif options.quiet:
        return
    elif callable(text):
        text()
    else:
        click.echo(text)


def say_records(records: list[dict[str, Any]], empty: str) -> None:
    """Records as ``say`` shows them: a table of their values under their keys, or ``empty``
    when there are none."""

    def human() -> None:
        if records:
            render_table(list(records[0]), [list(r.values()) for r in records])
        else:
            click.echo(empty)

    say(records, human)


def note(text: str) -> None:
    """A remark for a person, on stderr (never with ``--json`` or ``--quiet``)."""
    options = _options()
    if not options.json and not options.quiet:
        click.echo(text, err=True)


@contextmanager
def progress_bar(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; the callback advances it."""
    options = _options()
    console = _console(stderr=True)
    if options.json or options.quiet or not console.is_terminal or total <= 0:
        yield lambda count: None
        return
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda count: bar.advance(task, count)


def confirm(question: str, yes: bool) -> None:
    """Go on with ``--yes`` or a "y" typed at a terminal; otherwise a usage error (exit 2)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"no terminal to confirm in; pass --yes to {question}")
    if not click.confirm(f"{question[0].upper()}{question[1:]}?", err=True, default=False):
        raise UsageError("not confirmed; nothing changed")


def checkpoint_record(
    source_schema: str, source_table: str, state: XMinState, updated_at: datetime | None = None
) -> dict[str, object]:
    record: dict[str, object] = {
        "source_schema": source_schema,
        "source_table": source_table,
        "xmin_value": state.xmin_value,
        "revision": state.revision,
        "is_initial": state.is_initial,
        "wraparound_detected": state.wraparound_detected,
        "frozen_xid": state.frozen_xid,
        "loaded_at": state.timestamp,
    }
    if updated_at is not None:
        record["updated_at"] = updated_at
    return record


def run_record(run: RunState) -> dict[str, object]:
    return {name: getattr(run, name) for name in run.__dataclass_fields__}


# --------------------------------------------------------------------------- the commands


cli = _group(
    None,
    PROG,
    "Provision, inspect, move, repair and prune dpone runtime state (XMin checkpoints and "
    "run rows) on SQLite, PostgreSQL, SQL Server, MySQL/MariaDB or BigQuery.\n\n"
    "Exit codes: 0 ok, 1 a problem found (or a server unreachable), 2 usage or configuration.",
    "dpone-state --url postgresql+psycopg2://etl@db/meta upgrade",
    "dpone-state xmin list --json",
    "dpone-state copy --from bigquery://proj/etl_state --to postgresql+psycopg2://etl@db/meta --yes",
)
cli.params.append(
    click.Option(
        ["--version"],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=lambda ctx, param, value: _print_version(ctx) if value else None,
        help="show the version and exit",
    )
)


def _print_version(ctx: click.Context) -> None:
    from dpone_state import __version__  # noqa: PLC0415

    click.echo(f"{PROG} {__version__}")
    ctx.exit(EXIT_OK)


# ---- migrations

_REVISION_WORDS = re.compile(r"^(heads?|base|[+-]\d+|(head|base)[+-]\d+)$")


def _check_revision(revision: str) -> str:
    """A revision Alembic understands: a packaged id, head, base or a relative step."""
    from dpone_state import migrate  # noqa: PLC0415

    if _REVISION_WORDS.match(revision) or migrate.is_known_revision(revision):
        return revision
    known = ", ".join(r.revision for r in migrate.revisions())
    raise UsageError(f"unknown revision {revision!r}; known: {known}, head, base, -1, +1")


@contextmanager
def _alembic_usage() -> Iterator[None]:
    """A revision Alembic cannot resolve (``-5`` past base) is a usage error."""
    from alembic.util.exc import CommandError  # noqa: PLC0415

    try:
        yield
    except CommandError as error:
        raise UsageError(f"alembic: {str(error).strip().splitlines()[0]}") from None


@_command(
    cli,
    "upgrade",
    "Migrate the state tables up to REV (default head): provision, or adopt existing tables.",
    "dpone-state upgrade --url postgresql+psycopg2://etl@db/meta",
    "dpone-state upgrade --url bigquery://my-project/etl_state",
)
@click.argument("revision", default="head", metavar="[REV]")
def cmd_upgrade(revision: str) -> int:
    from dpone_state import migrate  # noqa: PLC0415

    _check_revision(revision)
    store = open_store(_options(), create=True)
    names = store.migration_names()
    before = migrate.current(
        store.engine, schema=names["schema"], version_table=store.version_table
    )
    with _alembic_usage():
        migrate.upgrade(store.engine, revision, **names)
    after = migrate.current(store.engine, schema=names["schema"], version_table=store.version_table)
    say(
        {"url": store.url, "from": before, "to": after},
        f"{store.url}: already at {after}"
        if before == after
        else f"{store.url}: upgraded from {before or 'nothing'} to {after}",
    )
    return EXIT_OK


@_command(
    cli,
    "downgrade",
    "Migrate the state tables down to REV (-1, an id, base; base drops them).",
    "dpone-state downgrade -1",
    "dpone-state downgrade base --drop-data",
    negative_args=True,
)
@click.argument("revision", metavar="REV")
@click.option("--drop-data", is_flag=True, help="confirm that going to base drops stored rows")
def cmd_downgrade(revision: str, drop_data: bool) -> int:
    from dpone_state import migrate  # noqa: PLC0415

    _check_revision(revision)
    store = open_store(_options())
    names = store.migration_names()
    before = migrate.current(
        store.engine, schema=names["schema"], version_table=store.version_table
    )
    try:
        with _alembic_usage():
            migrate.downgrade(store.engine, revision, drop_data=drop_data, **names)
    except DowngradeRefusedError as error:
        raise Problem(f"{error}; pass --drop-data to confirm") from None
    after = migrate.current(store.engine, schema=names["schema"], version_table=store.version_table)
    say(
        {"url": store.url, "from": before, "to": after},
        f"{store.url}: already at {after or 'base'}"
        if before == after
        else f"{store.url}: downgraded from {before or 'nothing'} to {after or 'base'}",
    )
    return EXIT_OK


@_command(
    cli,
    "current",
    "The revision the state database is at, and the head (read-only).",
    "dpone-state current --json",
)
def cmd_current() -> int:
    from dpone_state import migrate  # noqa: PLC0415

    store = open_store(_options())
    current = migrate.current(store.engine, schema=store.schema, version_table=store.version_table)
    head = migrate.head_revision()
    state = "not provisioned" if current is None else "at head" if current == head else "behind"
    say(
        {"url": store.url, "current": current, "head": head, "up_to_date": current == head},
        f"{store.url}: {current or '-'} (head {head}; {state})",
    )
    return EXIT_OK


@_command(cli, "history", "The packaged migration revisions, newest first.", "dpone-state history")
def cmd_history() -> int:
    from dpone_state import migrate  # noqa: PLC0415

    revisions = migrate.revisions()
    rows = [
        [r.revision, r.down_revision or "base", "head" if r.is_head else "", r.message]
        for r in revisions
    ]
    say(
        [revision.__dict__ for revision in revisions],
        lambda: render_table(["revision", "down", "", "message"], rows),
    )
    return EXIT_OK


@_command(
    cli,
    "sql",
    "Print the upgrade SQL script for a DBA (no connection is made).",
    "dpone-state sql --dialect mssql --schema etl_state > provision.sql",
)
@click.option("--dialect", type=click.Choice(OFFLINE_DIALECTS), help="default: the URL's dialect")
@click.option("--revision", default="head", metavar="REV", help="default head")
def cmd_sql(dialect: str | None, revision: str) -> int:
    from dpone_state import migrate  # noqa: PLC0415

    options = _options()
    dialect = dialect or parse_url(options.state_url()).get_backend_name()
    if dialect not in OFFLINE_DIALECTS:
        raise UsageError(
            f"no offline SQL for {dialect!r}; pass --dialect {{{','.join(OFFLINE_DIALECTS)}}}"
        )
    _check_revision(revision)
    schema = options.schema_option()
    with _alembic_usage():
        script = migrate.offline_sql(
            dialect,
            revision,
            schema=schema,
            xmin_table=options.table("xmin_table") or DEFAULT_XMIN_TABLE,
            run_table=options.table("run_table") or DEFAULT_RUN_TABLE,
            version_table=options.table("version_table") or migrate.VERSION_TABLE,
        )
    say(
        {"dialect": dialect, "revision": revision, "sql": script},
        lambda: click.echo(script, nl=False),
    )
    return EXIT_OK


@_command(
    cli,
    "doctor",
    "Check the connection, migration revision and table shapes (exit 1 on a problem).",
    "dpone-state doctor --url postgresql+psycopg2://etl@db/meta",
)
def cmd_doctor() -> int:
    from dpone_state.doctor import diagnose  # noqa: PLC0415

    store = open_store(_options())
    report = diagnose(
        store.engine,
        store.schema,
        store.xmin.table_name,
        store.runs.table_name,
        version_table=store.version_table,
    )

    def human() -> None:
        click.echo(f"database  {report.url}")
        click.echo(f"backend   {report.backend} {report.server_version or ''}".rstrip())
        click.echo(f"revision  {report.revision or '-'} (head {report.head or '-'})")
        for finding in report.findings:
            click.echo(
                f"[{finding.status:<7}] {printable(finding.check)}: {printable(finding.detail)}"
            )
            if finding.fix and finding.status != "ok":
                click.echo(f"          fix: {finding.fix}")
        click.echo("ok" if report.ok else "problems found")

    say(
        {
            "ok": report.ok,
            "url": report.url,
            "backend": report.backend,
            "server_version": report.server_version,
            "revision": report.revision,
            "head": report.head,
            "findings": [finding.__dict__ for finding in report.findings],
        },
        human,
    )
    return EXIT_OK if report.ok else EXIT_PROBLEM


# ---- xmin

xmin_group = _group(
    cli,
    "xmin",
    "XMin checkpoints, one per source table: list, show, set, reset, health.",
    "dpone-state xmin list 'public.*'",
    "dpone-state xmin show public.orders",
)


def _key_options(function: F) -> F:
    function = click.option("--source-table", metavar="NAME", help="instead of SCHEMA.TABLE")(
        function
    )
    return click.option("--source-schema", metavar="NAME", help="instead of SCHEMA.TABLE")(function)


def _key(
    target: str | None, source_schema: str | None, source_table: str | None
) -> tuple[str, str]:
    if source_schema is not None or source_table is not None:
        if target is not None:
            raise UsageError("give SCHEMA.TABLE or --source-schema/--source-table, not both")
        if source_schema is None or source_table is None:
            raise UsageError("--source-schema and --source-table go together")
        return source_schema, source_table
    if target is None:
        raise UsageError("which checkpoint? give SCHEMA.TABLE (or --source-schema/--source-table)")
    return split_qualified(target)


def _load(store: Store, source_schema: str, source_table: str) -> XMinState:
    state = store.xmin.load_state(source_schema, source_table)
    if state is None:
        name = format_qualified(source_schema, source_table)
        raise Problem(f"no checkpoint for {name} in {store.xmin.qualified_name}")
    return state


@_command(
    xmin_group,
    "list",
    "Every checkpoint, or those whose SCHEMA.TABLE matches PATTERN (* ? [..] wildcards).",
    "dpone-state xmin list",
    "dpone-state xmin list 'sales.*' --json",
)
@click.argument("pattern", required=False)
def cmd_xmin_list(pattern: str | None) -> int:
    store = open_store(_options())
    checkpoints = store.xmin.list_checkpoints()
    if pattern is not None:
        checkpoints = [
            c
            for c in checkpoints
            if fnmatch.fnmatchcase(f"{c.source_schema}.{c.source_table}", pattern)
            or fnmatch.fnmatchcase(format_qualified(c.source_schema, c.source_table), pattern)
        ]
    records = [
        checkpoint_record(c.source_schema, c.source_table, c.state, c.updated_at)
        for c in checkpoints
    ]

    matching = f" matching {printable(pattern)}" if pattern else ""
    say_records(records, f"no checkpoints{matching} in {store.xmin.qualified_name}")
    return EXIT_OK


@_command(
    xmin_group,
    "show",
    "One checkpoint (exit 1 if there is none).",
    "dpone-state xmin show public.orders",
    "dpone-state xmin show '\"my.schema\".orders' --json",
)
@click.argument("target", required=False, metavar="SCHEMA.TABLE")
@_key_options
def cmd_xmin_show(target: str | None, source_schema: str | None, source_table: str | None) -> int:
    source_schema, source_table = _key(target, source_schema, source_table)
    store = open_store(_options())
    record = checkpoint_record(
        source_schema, source_table, _load(store, source_schema, source_table)
    )
    say(record, format_record(record))
    return EXIT_OK


@_command(
    xmin_group,
    "set",
    "Set a checkpoint (compare-and-set against the revision read first). Moving an existing "
    "checkpoint forward skips rows, backward re-reads them: either needs --yes.",
    "dpone-state xmin set public.orders 8589934700 --yes",
)
@click.argument("arguments", nargs=-1, metavar="SCHEMA.TABLE VALUE")
@click.option(
    "--expected-revision",
    type=NON_NEGATIVE,
    metavar="N",
    help="write only if the stored revision is N (default: the revision just read)",
)
@click.option("--yes", "-y", is_flag=True, help="confirm moving an existing checkpoint")
@_key_options
def cmd_xmin_set(
    arguments: tuple[str, ...],
    expected_revision: int | None,
    yes: bool,
    source_schema: str | None,
    source_table: str | None,
) -> int:
    by_options = source_schema is not None or source_table is not None
    if len(arguments) != (1 if by_options else 2):
        raise UsageError(
            "expected VALUE after --source-schema/--source-table"
            if by_options
            else "expected SCHEMA.TABLE VALUE"
        )
    source_schema, source_table = _key(
        None if by_options else arguments[0], source_schema, source_table
    )
    try:
        value = NON_NEGATIVE.convert(arguments[-1], None, None)  # type: ignore[arg-type]
    except click.BadParameter as error:
        raise UsageError(f"VALUE: {error.message}") from None
    store = open_store(_options())
    previous = store.xmin.load_state(source_schema, source_table)
    name = format_qualified(source_schema, source_table)
    if previous is not None and previous.xmin_value != value:
        distance = value - previous.xmin_value
        if distance > 0:
            what = (
                f"move the checkpoint of {name} forward by {distance} transactions "
                f"({previous.xmin_value} -> {value}), so rows written in them are never read"
            )
        else:
            what = (
                f"move the checkpoint of {name} backward by {-distance} transactions "
                f"({previous.xmin_value} -> {value}), so rows written since are read again"
            )
        confirm(what, yes)
    expected = expected_revision
    if expected is None:
        expected = previous.revision if previous is not None else 0
    try:
        store.xmin.save_state(
            source_schema,
            source_table,
            XMinState(
                xmin_value=value,
                wraparound_detected=previous.wraparound_detected if previous else False,
                frozen_xid=previous.frozen_xid if previous else None,
            ),
            expected_revision=expected,
        )
    except RevisionConflictError:
        raise Problem(
            f"checkpoint {name} is not at revision {expected} (another writer changed it); "
            f"nothing written: check it with `dpone-state xmin show {name}` and set it again"
        ) from None
    saved = _load(store, source_schema, source_table)
    old = "nothing" if previous is None else f"{previous.xmin_value} (revision {previous.revision})"
    say(
        {
            "previous": None
            if previous is None
            else checkpoint_record(source_schema, source_table, previous),
            "saved": checkpoint_record(source_schema, source_table, saved),
            "moved_by": None if previous is None else value - previous.xmin_value,
        },
        f"{printable(name)}: {old} -> {saved.xmin_value} (revision {saved.revision})",
    )
    return EXIT_OK


@_command(
    xmin_group,
    "reset",
    "Delete a checkpoint: the next run is a full refresh (asks first).",
    "dpone-state xmin reset public.orders --yes",
)
@click.argument("target", required=False, metavar="SCHEMA.TABLE")
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
@_key_options
def cmd_xmin_reset(
    target: str | None, yes: bool, source_schema: str | None, source_table: str | None
) -> int:
    source_schema, source_table = _key(target, source_schema, source_table)
    store = open_store(_options())
    state = _load(store, source_schema, source_table)
    name = format_qualified(source_schema, source_table)
    confirm(
        f"delete the checkpoint of {printable(name)} (xmin {state.xmin_value}, revision "
        f"{state.revision}) so that its next run is a full refresh",
        yes,
    )
    deleted = store.xmin.delete_state(source_schema, source_table)
    say(
        {"deleted": deleted, "checkpoint": checkpoint_record(source_schema, source_table, state)},
        f"deleted the checkpoint of {printable(name)} (was xmin {state.xmin_value}); "
        "its next run is a full refresh",
    )
    return EXIT_OK


_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class _Duration(click.ParamType):  # type: ignore[type-arg]
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        match = _DURATION.match(str(value).strip())
        if match is None:
            self.fail(f"{value!r} is not a duration such as 90m, 36h or 2d", param, ctx)
        return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


_HEALTH_COLUMNS = (
    "checkpoint", "xmin_value", "anchor", "xids_behind", "age", "until_forced_freeze",
    "freeze_headroom", "verdict", "reason",
)  # fmt: skip


@_command(
    xmin_group,
    "health",
    "How far each checkpoint is from trouble, judged read-only against its PostgreSQL source: "
    "distance to the source's snapshot, age, transactions before a forced full refresh, the "
    "source's freeze headroom, identity and timeline changes. Exit 1 when a checkpoint is at "
    "risk (for cron and monitoring).",
    "dpone-state xmin health --source postgresql+psycopg2://etl@src/app",
    "dpone-state xmin health 'sales.*' --source $SOURCE_URL --fail-on full-refresh-due --json",
)
@click.argument("pattern", required=False)
@click.option("--source", "source_url", required=True, metavar="URL", help="the PostgreSQL source")
@click.option(
    "--fail-on",
    type=click.Choice(["warn", "full-refresh-due"]),
    default="warn",
    show_default=True,
    help="the verdict from which the command exits 1",
)
@click.option(
    "--max-xids-behind", type=NON_NEGATIVE, metavar="N", help="warn from N transactions behind"
)
@click.option("--max-age", type=_Duration(), metavar="DURATION", help="warn when older (e.g. 36h)")
@click.option(
    "--all-databases", is_flag=True, help="also checkpoints recorded for another source database"
)
def cmd_xmin_health(
    *,
    pattern: str | None,
    source_url: str,
    fail_on: str,
    max_xids_behind: int | None,
    max_age: timedelta | None,
    all_databases: bool,
) -> int:
    from dataclasses import replace  # noqa: PLC0415

    from dpone_state.engine import create_state_engine  # noqa: PLC0415
    from dpone_state.xmin_health import (  # noqa: PLC0415
        FULL_REFRESH_DUE,
        OK,
        WARN,
        HealthThresholds,
        xmin_health,
    )

    options = _options()
    source = parse_url(source_url)
    store = open_store(options)
    thresholds = HealthThresholds()
    if max_xids_behind is not None:
        thresholds = replace(thresholds, xids_behind=max_xids_behind)
    if max_age is not None:
        thresholds = replace(thresholds, age=max_age)
    engine = create_state_engine(source)
    options.engines.append(engine)
    checkpoints = xmin_health(
        engine, store.xmin, thresholds=thresholds, all_databases=all_databases
    )
    if pattern is not None:
        checkpoints = [
            h for h in checkpoints
            if fnmatch.fnmatchcase(f"{h.source_schema}.{h.source_table}", pattern)
        ]  # fmt: skip
    failing = {FULL_REFRESH_DUE} if fail_on == "full-refresh-due" else {FULL_REFRESH_DUE, WARN}
    at_risk = [h for h in checkpoints if h.verdict in failing]

    def human() -> None:
        if not checkpoints:
            click.echo(f"no checkpoints in {store.xmin.qualified_name} for {safe_url(source)}")
            return
        rows = [
            [
                format_qualified(h.source_schema, h.source_table)
                + (f" ({h.checkpoint_key})" if h.checkpoint_key else ""),
                h.xmin_value,
                h.anchor,
                h.xids_behind,
                str(h.age).split(".")[0],
                h.xids_until_forced_freeze,
                h.freeze_headroom,
                h.verdict,
                h.reasons[0] if h.reasons else "",
            ]
            for h in checkpoints
        ]
        render_table(_HEALTH_COLUMNS, rows)
        worst = sum(h.verdict == FULL_REFRESH_DUE for h in checkpoints)
        fine = sum(h.verdict == OK for h in checkpoints)
        click.echo(f"{fine} ok, {len(checkpoints) - fine - worst} warn, {worst} full refresh due")

    say(
        {
            "source": safe_url(source),
            "ok": not at_risk,
            "fail_on": fail_on,
            "checkpoints": [h.to_dict() for h in checkpoints],
        },
        human,
    )
    return EXIT_PROBLEM if at_risk else EXIT_OK


# ---- runs

runs_group = _group(
    cli,
    "runs",
    "Run rows, one per (dag_id, execution_date): list, show, dags, mark-failed, delete, prune.",
    "dpone-state runs list orders_daily --limit 5",
    "dpone-state runs list --state running",
)

_RUN_COLUMNS = (
    "dag_id", "execution_date", "state", "load_strategy", "started_at", "ended_at",
    "duration_min", "rows_read", "rows_written", "error_message",
)  # fmt: skip


def _run_row(run: RunState) -> list[object]:
    row: list[object] = [getattr(run, name) for name in _RUN_COLUMNS]
    message = run.error_message
    if message is not None:
        line = printable(message.strip().splitlines()[0] if message.strip() else message)
        row[-1] = line if len(line) <= ERROR_PREVIEW else line[: ERROR_PREVIEW - 1] + "…"
    return row


@_command(
    runs_group,
    "list",
    "Runs newest first: of DAG or of every DAG, filtered by state and date. The dates shown "
    "are what `runs show` accepts.",
    "dpone-state runs list orders_daily --limit 10",
    "dpone-state runs list --state failed --state running --since 2024-05-01",
)
@click.argument("dag_id", required=False, metavar="[DAG]")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in RunStateStatus]),
    help="only runs in this state (repeatable)",
)
@click.option("--since", type=DATE, help="only runs at or after DATE (ISO 8601, naive = UTC)")
@click.option(
    "--before", type=DATE, help="only runs before DATE (to page back: the oldest date listed)"
)
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=20, show_default=True)
def cmd_runs_list(
    dag_id: str | None,
    states: tuple[str, ...],
    since: datetime | None,
    before: datetime | None,
    limit: int,
) -> int:
    from dpone_state.operations import list_runs  # noqa: PLC0415

    store = open_store(_options())
    runs = list_runs(
        store.runs,
        dag_id,
        states=[RunStateStatus(s) for s in states],
        since=since,
        before=before,
        limit=limit,
    )

    def human() -> None:
        if not runs:
            of = f" of {printable(dag_id)}" if dag_id else ""
            click.echo(f"no runs{of} in {store.runs.qualified_name}")
        else:
            render_table(_RUN_COLUMNS, [_run_row(run) for run in runs])

    say([run_record(run) for run in runs], human)
    return EXIT_OK


def _find_run(store: Store, dag_id: str, execution_date: datetime) -> RunState:
    """The run at ``execution_date``, or the one run in that second (as a listing prints it)."""
    from dpone_state.operations import runs_in_second  # noqa: PLC0415

    run = store.runs.get_run_state(dag_id, execution_date)
    if run is not None:
        return run
    if execution_date.microsecond == 0:
        candidates = runs_in_second(store.runs, dag_id, execution_date)
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            dates = ", ".join(c.execution_date.isoformat() for c in candidates)
            raise UsageError(
                f"{len(candidates)} runs of {dag_id} in that second ({dates}); give one"
            )
    raise Problem(
        f"no run of {dag_id} at {execution_date.isoformat()} in {store.runs.qualified_name}"
    )


@_command(
    runs_group,
    "show",
    "One run (exit 1 if there is none); the second printed by `runs list` is enough.",
    "dpone-state runs show orders_daily 2024-05-01T02:00:00+00:00",
)
@click.argument("dag_id", metavar="DAG")
@click.argument("execution_date", type=DATE, metavar="EXECUTION_DATE")
def cmd_runs_show(dag_id: str, execution_date: datetime) -> int:
    store = open_store(_options())
    record = run_record(_find_run(store, dag_id, execution_date))
    say(record, format_record(record))
    return EXIT_OK


@_command(
    runs_group,
    "dags",
    "Every DAG with stored runs: how many, and its last run.",
    "dpone-state runs dags --json",
)
def cmd_runs_dags() -> int:
    from dpone_state.operations import dag_summaries  # noqa: PLC0415

    store = open_store(_options())
    summaries = dag_summaries(store.runs)
    records = [
        {
            "dag_id": s.dag_id,
            "runs": s.runs,
            "last_execution_date": s.last_run.execution_date,
            "last_state": s.last_run.state,
            "last_ended_at": s.last_run.ended_at,
        }
        for s in summaries
    ]

    say_records(records, f"no runs in {store.runs.qualified_name}")
    return EXIT_OK


@_command(
    runs_group,
    "mark-failed",
    "Mark a run stuck in `running` as failed, with the reason as its error message.",
    "dpone-state runs mark-failed orders_daily 2024-05-01T02:00:00Z --reason 'worker lost'",
)
@click.argument("dag_id", metavar="DAG")
@click.argument("execution_date", type=DATE, metavar="EXECUTION_DATE")
@click.option("--reason", required=True, help="stored as the run's error message")
def cmd_runs_mark_failed(dag_id: str, execution_date: datetime, reason: str) -> int:
    from dpone_state.operations import mark_failed  # noqa: PLC0415

    if not reason.strip():
        raise UsageError("--reason must say why")
    store = open_store(_options())
    run = _find_run(store, dag_id, execution_date)
    if run.state is not RunStateStatus.RUNNING:
        raise Problem(
            f"the run of {dag_id} at {run.execution_date.isoformat()} is {run.state.value}, "
            "not running; nothing changed"
        )
    updated = mark_failed(store.runs, run, reason)
    if updated is None:
        raise Problem(
            f"the run of {dag_id} at {run.execution_date.isoformat()} finished while being "
            "marked; nothing changed"
        )
    say(
        run_record(updated),
        f"marked the run of {printable(dag_id)} at {updated.execution_date.isoformat()} failed",
    )
    return EXIT_OK


@_command(
    runs_group,
    "delete",
    "Delete one run (asks first).",
    "dpone-state runs delete orders_daily 2024-05-01T02:00:00Z --yes",
)
@click.argument("dag_id", metavar="DAG")
@click.argument("execution_date", type=DATE, metavar="EXECUTION_DATE")
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
def cmd_runs_delete(dag_id: str, execution_date: datetime, yes: bool) -> int:
    from dpone_state.operations import delete_run  # noqa: PLC0415

    store = open_store(_options())
    run = _find_run(store, dag_id, execution_date)
    when = run.execution_date.isoformat()
    confirm(f"delete the run of {printable(dag_id)} at {when} ({run.state.value})", yes)
    deleted = delete_run(store.runs, run.dag_id, run.execution_date)
    say(
        {"deleted": deleted, "run": run_record(run)},
        f"deleted the run of {printable(dag_id)} at {when}",
    )
    return EXIT_OK


@_command(
    runs_group,
    "prune",
    "Delete runs with an execution_date older than N days (asks first).",
    "dpone-state runs prune --days 30 --dry-run",
    "dpone-state runs prune --days 90 --dag orders_daily --batch-size 5000 --yes",
)
@click.option("--days", type=NON_NEGATIVE, required=True, metavar="N", help="days to keep")
@click.option("--dag", "dag_id", metavar="DAG", help="only the runs of this DAG")
@click.option("--dry-run", is_flag=True, help="count, do not delete")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1_000_000),
    metavar="N",
    help="delete in transactions of at most N rows (no long locks; shows progress)",
)
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
def cmd_runs_prune(
    days: int, dag_id: str | None, dry_run: bool, batch_size: int | None, yes: bool
) -> int:
    from dpone_state.operations import count_runs_before, prune_runs  # noqa: PLC0415

    store = open_store(_options())
    try:
        cutoff = utc_now() - timedelta(days=days)
    except OverflowError:
        raise UsageError(f"--days {days} is too far back") from None
    of = f" of {printable(dag_id)}" if dag_id else ""
    count = count_runs_before(store.runs, cutoff, dag_id)
    base = {"cutoff": cutoff, "dag_id": dag_id}
    if dry_run:
        say(
            {"dry_run": True, **base, "would_delete": count},
            f"would delete {count} run(s){of} with execution_date before {cutoff.isoformat()}",
        )
        return EXIT_OK
    if count:
        confirm(f"delete {count} run(s){of} with execution_date before {cutoff.isoformat()}", yes)
    with progress_bar(count, "pruning runs") as advance:
        deleted = prune_runs(
            store.runs, cutoff, dag_id=dag_id, batch_size=batch_size, progress=advance
        )
    say(
        {"dry_run": False, **base, "deleted": deleted},
        f"deleted {deleted} run(s){of} with execution_date before {cutoff.isoformat()}",
    )
    return EXIT_OK


# ---- portability


@contextmanager
def _output(path: str) -> Iterator[Any]:
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(path, "w", encoding="utf-8") as stream:
        yield stream


def _store_at(where: str, schema: str | None, *, create: bool = False) -> Store:
    """A store named by a URL or a manifest path (``--from`` / ``--to``)."""
    options = _options()
    if where.endswith((".yaml", ".yml")) and Path(where).is_file():
        return open_store(options, config=where, schema=schema, create=create)
    return open_store(options, url=where, schema=schema, create=create)


def _revision(store: Store) -> str | None:
    from dpone_state import migrate  # noqa: PLC0415

    return migrate.current(store.engine, schema=store.schema, version_table=store.version_table)


@_command(
    cli,
    "export",
    "Write both tables (checkpoints with revisions, runs, timestamps) as NDJSON or JSON.",
    "dpone-state export > state.ndjson",
    "dpone-state export --format json --output state.json",
)
@click.option("--output", "-o", default="-", metavar="FILE", help="default: stdout")
@click.option(
    "--format", "fmt", type=click.Choice(["ndjson", "json"]), default="ndjson", show_default=True
)
def cmd_export(output: str, fmt: str) -> int:
    from dpone_state.portability import export_state, write_export  # noqa: PLC0415

    store = open_store(_options())
    export = export_state(store.xmin, store.runs, revision=_revision(store))
    with _output(output) as stream:
        write_export(export, stream, "json" if fmt == "json" else "ndjson")
    if output != "-":
        summary = {"output": output, "xmin": len(export.xmin), "runs": len(export.runs)}
        say(
            summary,
            f"wrote {len(export.xmin)} checkpoint(s) and {len(export.runs)} run(s) to {output}",
        )
    return EXIT_OK


def _plan_lines(report: Any) -> Iterator[str]:
    from dpone_state.portability import iter_keys  # noqa: PLC0415

    shown: dict[tuple[str, str], int] = {}
    for kind, action, key in iter_keys(report):
        count = shown[kind, action] = shown.get((kind, action), 0) + 1
        if count <= PLAN_LINES or action == "conflicts":
            name = format_qualified(*key) if kind == "xmin" else " ".join(key)
            yield f"  {action:<9} {kind:<4} {printable(name)}"
    for (kind, action), count in shown.items():
        if count > PLAN_LINES and action != "conflicts":
            yield f"  {action:<9} {kind:<4} … and {count - PLAN_LINES} more"


def _summary(report: Any) -> str:
    parts = []
    for kind, label in (("xmin", "checkpoints"), ("runs", "runs")):
        counts = getattr(report, kind).counts()
        shown = ", ".join(f"{n} {action}" for action, n in counts.items() if n)
        parts.append(f"{label}: {shown or 'nothing'}")
    return "; ".join(parts)


def _run_import(export: Any, store: Store, replace: bool, yes: bool) -> Any:
    from dpone_state.portability import import_state  # noqa: PLC0415

    plan = import_state(export, store.xmin, store.runs, replace=replace, apply=False)
    if not yes:
        return plan
    total = sum(len(getattr(plan, k).insert) + len(getattr(plan, k).update)
                + len(getattr(plan, k).delete) for k in ("xmin", "runs"))  # fmt: skip
    with progress_bar(total, "importing") as advance:
        return import_state(
            export, store.xmin, store.runs, replace=replace, apply=True, progress=advance
        )


def _mode_options(function: F) -> F:
    function = click.option("--yes", "-y", is_flag=True, help="write (default: a dry run)")(
        function
    )
    return click.option(
        "--merge/--replace",
        "merge",
        default=True,
        help="--merge (default) keeps stored rows absent from the input; --replace deletes them",
    )(function)


@_command(
    cli,
    "import",
    "Load an export: a dry run by default, --yes writes. Checkpoints are written with "
    "compare-and-set: one a runtime changed meanwhile is reported, never overwritten.",
    "dpone-state import state.ndjson",
    "dpone-state import state.ndjson --replace --yes",
)
@click.argument("source", metavar="FILE")
@_mode_options
def cmd_import(source: str, merge: bool, yes: bool) -> int:
    from dpone_state.portability import read_export  # noqa: PLC0415

    if source == "-":
        export = read_export(sys.stdin)
    else:
        path = Path(source)
        if not path.is_file():
            raise UsageError(f"{source} does not exist")
        with path.open(encoding="utf-8") as stream:
            export = read_export(stream)
    store = open_store(_options())
    report = _run_import(export, store, not merge, yes)
    _say_import(report, store)
    return EXIT_PROBLEM if report.conflicts else EXIT_OK


def _say_import(report: Any, store: Store, extra: dict[str, Any] | None = None) -> None:
    def human() -> None:
        verb = "imported into" if report.applied else "dry run for"
        click.echo(f"{verb} {store.url}: {_summary(report)}")
        for line in _plan_lines(report):
            click.echo(line)
        if report.conflicts:
            click.echo(
                f"{report.conflicts} checkpoint(s) changed while importing: left as they are; "
                "check them with `dpone-state xmin show` and run the import again"
            )
        if not report.provisioned:
            click.echo("the destination's tables do not exist yet (planned as empty)")
        if not report.applied:
            click.echo("nothing written: pass --yes to write")
        if extra and "verified" in extra:
            click.echo(extra["verified_text"])

    data = report.to_dict() | {"url": store.url}
    if extra:
        data |= {k: v for k, v in extra.items() if k != "verified_text"}
    say(data, human)


@_command(
    cli,
    "copy",
    "Copy a whole state store to another (any backend to any backend): export, provision the "
    "destination, import, verify. A dry run by default, --yes writes.",
    "dpone-state copy --from bigquery://my-project/etl_state "
    "--to postgresql+psycopg2://etl@db/meta --yes",
    "dpone-state copy --from sqlite:///dpone_state.db --to postgresql+psycopg2://etl@db/meta",
)
@click.option("--from", "source", required=True, metavar="URL|MANIFEST", help="copy from")
@click.option("--to", "destination", required=True, metavar="URL|MANIFEST", help="copy to")
@click.option("--from-schema", metavar="NAME", help="schema (dataset) of the source's tables")
@click.option("--to-schema", metavar="NAME", help="schema of the destination's tables")
@_mode_options
def cmd_copy(
    *,
    source: str,
    destination: str,
    from_schema: str | None,
    to_schema: str | None,
    merge: bool,
    yes: bool,
) -> int:
    from dpone_state import migrate  # noqa: PLC0415
    from dpone_state.portability import export_state  # noqa: PLC0415

    origin = _store_at(source, from_schema)
    export = export_state(origin.xmin, origin.runs, revision=_revision(origin))
    target = _store_at(destination, to_schema, create=yes)
    if target.engine.url == origin.engine.url and target.schema == origin.schema:
        raise UsageError("--from and --to are the same store")
    if yes:
        migrate.upgrade(target.engine, "head", **target.migration_names())
    report = _run_import(export, target, not merge, yes)
    extra: dict[str, Any] = {
        "from": origin.url,
        "exported": {"xmin": len(export.xmin), "runs": len(export.runs)},
    }
    if yes:
        check = export_state(target.xmin, target.runs)
        extra["verified"] = {
            kind: _verified(export.rows(kind), check.rows(kind)) for kind in ("xmin", "runs")
        }
        counts = extra["verified"]
        extra["verified_text"] = (
            f"verified: {counts['xmin']} of {len(export.xmin)} checkpoint(s) and "
            f"{counts['runs']} of {len(export.runs)} run(s) identical in the destination"
        )
    _say_import(report, target, extra)
    if report.conflicts:
        return EXIT_PROBLEM
    if yes and (extra["verified"]["xmin"], extra["verified"]["runs"]) != (
        len(export.xmin),
        len(export.runs),
    ):
        return EXIT_PROBLEM
    return EXIT_OK


def _verified(expected: list[dict[str, Any]], found: list[dict[str, Any]]) -> int:
    """How many exported rows the destination holds identically (the import may raise a
    replaced checkpoint's revision, which still counts as the same checkpoint)."""

    def comparable(row: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in row.items() if k != "revision"}, sort_keys=True)

    held = {comparable(row) for row in found}
    return sum(1 for row in expected if comparable(row) in held)


# ---- completion


@_command(
    cli,
    "completion",
    "Print the shell completion script for SHELL (bash, zsh or fish).",
    'eval "$(dpone-state completion bash)"   # in ~/.bashrc',
)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def cmd_completion(shell: str) -> int:
    from click.shell_completion import get_completion_class  # noqa: PLC0415

    completion = get_completion_class(shell)
    assert completion is not None
    script = completion(cli, {}, PROG, "_DPONE_STATE_COMPLETE").source()
    say({"shell": shell, "script": script}, script)
    return EXIT_OK


# --------------------------------------------------------------------------- errors and main


#: Errors of the invocation or its configuration (exit 2); any other error is a problem (1).
_USAGE_ERRORS: tuple[type[BaseException], ...] = (
    UsageError,
    InvalidStateError,
    StateConfigError,
    BackendNotInstalledError,
    UnsupportedBackendError,
    BackendMismatchError,
    InvalidExportError,
    ModuleNotFoundError,
)


def exit_code(error: BaseException) -> int:
    """2 for a usage or configuration error; 1 for a problem found at the database or in state.

    A configuration that is valid but names a server that does not answer is a problem (1),
    like a missing table or a lost compare-and-set: the command line was right.
    """
    if isinstance(error, (VaultUnavailableError, StateUnavailableError)):
        return EXIT_PROBLEM
    return EXIT_USAGE if isinstance(error, _USAGE_ERRORS) else EXIT_PROBLEM


def message(error: BaseException) -> str:
    """The error's first line. Messages are built with ``safe_url``: nothing is masked here."""
    if isinstance(error, ModuleNotFoundError):
        return (
            f"a driver is missing ({error.name}): install the backend's extra, "
            "e.g. pip install 'dpone-state[postgres]'"
        )
    if isinstance(error, SQLAlchemyError):
        return f"database error: {first_line(error)}"
    return first_line(error)


def _fail(options: Options, code: int, kind: str, text: str, where: str = PROG) -> int:
    line = printable(text)
    if options.json:
        click.echo(to_json({"error": {"type": kind, "message": line, "exit_code": code}}))
    click.echo(f"{where}: error: {line}", err=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 - one return per outcome
    """Run the command line; the exit code (0 ok, 1 problem, 2 usage/config)."""
    args = list(sys.argv[1:] if argv is None else argv)
    options = Options(json="--json" in args, quiet="--quiet" in args or "-q" in args)
    try:
        result = cli.main(args, prog_name=PROG, standalone_mode=False, obj=options)
    except click.exceptions.Exit as exit_:
        return int(exit_.exit_code)
    except click.exceptions.Abort:
        click.echo(f"{PROG}: interrupted", err=True)
        return 130
    except click.ClickException as error:
        ctx = getattr(error, "ctx", None)
        where = ctx.command_path if ctx is not None else PROG
        hint = f" (see {where} --help)" if isinstance(error, click.UsageError) else ""
        return _fail(
            options, EXIT_USAGE, type(error).__name__, error.format_message() + hint, where
        )
    except KeyboardInterrupt:
        click.echo(f"{PROG}: interrupted", err=True)
        return 130
    except BrokenPipeError:  # `dpone-state sql | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as error:
        if options.debug:
            sys.stderr.write(traceback.format_exc())
        return _fail(options, exit_code(error), type(error).__name__, message(error))
    finally:
        for engine in options.engines:
            engine.dispose()
    return int(result) if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
