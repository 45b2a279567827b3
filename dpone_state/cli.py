"""The ``dpone-state`` command: provision, inspect, repair and prune state from a shell.

Alembic is imported only by the commands that use it (it costs ~0.3 s of start-up).

Exit codes: 0 ok; 1 a problem was found (doctor, a checkpoint or run that does not exist, the
database unreachable or not provisioned, a lost compare-and-set); 2 a usage or configuration
error (bad arguments, an unusable URL or manifest, a refused confirmation). Errors are one line
on stderr, never with a password; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from dpone_state.config import load_state_settings, settings_from_url, with_tables
from dpone_state.dialects import DEFAULT, DEFAULT_URL, OFFLINE_DIALECTS
from dpone_state.engine import default_url
from dpone_state.errors import (
    BackendMismatchError,
    BackendNotInstalledError,
    DowngradeRefusedError,
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
from dpone_state.models import MAX_BIGINT, RunState, XMinState, prune_cutoff, to_utc
from dpone_state.opener import StateStores, open_stores
from dpone_state.storage import MAX_LIMIT
from dpone_state.tables import DEFAULT_RUN_TABLE, DEFAULT_XMIN_TABLE

__all__ = ["EXIT_OK", "EXIT_PROBLEM", "EXIT_USAGE", "main", "split_qualified"]

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
PROG = "dpone-state"


# --------------------------------------------------------------------------- arguments


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
    return to_utc("execution_date", parsed)


def _datetime_arg(text: str) -> datetime:
    try:
        return parse_datetime(text)
    except (UsageError, InvalidStateError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= MAX_BIGINT:
        raise argparse.ArgumentTypeError(f"{value} is outside 0 .. 2**63-1")
    return value


def _limit(text: str) -> int:
    value = _non_negative(text)
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be in 1 .. {MAX_LIMIT}")
    return value


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def _common_options() -> argparse.ArgumentParser:
    """Options accepted before or after the subcommand (defaults applied after parsing)."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    where = common.add_argument_group(
        f"state database (default: $DPONE_STATE_URL, else {DEFAULT_URL})"
    )
    where.add_argument("--url", metavar="URL", help="SQLAlchemy URL of the state database")
    where.add_argument(
        "--config", metavar="MANIFEST.yaml", help="a manifest whose state: block says where"
    )
    where.add_argument(
        "--schema", metavar="NAME", help="schema of both tables (default etl_state; none on SQLite)"
    )
    where.add_argument(
        "--no-schema", action="store_true", help="use the connection's default schema"
    )
    where.add_argument("--xmin-table", metavar="NAME", help=f"default {DEFAULT_XMIN_TABLE}")
    where.add_argument("--run-table", metavar="NAME", help=f"default {DEFAULT_RUN_TABLE}")
    out = common.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    out.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return common


_DEFAULTS: dict[str, Any] = {
    "url": None,
    "config": None,
    "schema": None,
    "no_schema": False,
    "xmin_table": None,
    "run_table": None,
    "json": False,
    "debug": False,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source-schema", metavar="NAME", help="instead of SCHEMA.TABLE")
    parser.add_argument("--source-table", metavar="NAME", help="instead of SCHEMA.TABLE")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; every command's ``--help`` ends with an example."""
    common = _common_options()
    parser = _Parser(
        prog=PROG,
        parents=[common],
        formatter_class=_Formatter,
        description="Provision, inspect, repair and prune dpone runtime state.",
        epilog=(
            "examples:\n"
            "  dpone-state --url postgresql+psycopg2://etl@db/meta upgrade\n"
            "  dpone-state xmin list --json\n"
            "  dpone-state runs list orders_daily --limit 5\n"
            "  dpone-state doctor\n\n"
            "exit codes: 0 ok, 1 a problem found, 2 usage or configuration error"
        ),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        group: Any, name: str, help_: str, example: str, handler: Callable[..., int]
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(
            name,
            parents=[common],
            help=help_,
            description=help_,
            epilog=f"example:\n  {example}",
            formatter_class=_Formatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    sub = add(
        commands,
        "upgrade",
        "migrate the state tables up to REV (default head)",
        "dpone-state upgrade --url postgresql+psycopg2://etl@db/meta",
        cmd_upgrade,
    )
    sub.add_argument("revision", nargs="?", default="head", metavar="REV")
    sub = add(
        commands,
        "downgrade",
        "migrate the state tables down to REV (-1, an id, base)",
        "dpone-state downgrade -1",
        cmd_downgrade,
    )
    sub.add_argument("revision", metavar="REV")
    sub.add_argument(
        "--drop-data", action="store_true", help="confirm that going to base drops stored rows"
    )
    add(
        commands,
        "current",
        "the revision the database is at, and the head",
        "dpone-state current --json",
        cmd_current,
    )
    add(
        commands,
        "history",
        "the packaged migration revisions, newest first",
        "dpone-state history",
        cmd_history,
    )
    sub = add(
        commands,
        "sql",
        "print the upgrade SQL script for a DBA (no connection made)",
        "dpone-state sql --dialect mssql --schema etl_state > provision.sql",
        cmd_sql,
    )
    sub.add_argument(
        "--dialect", choices=OFFLINE_DIALECTS, help="default: the configured URL's dialect"
    )
    sub.add_argument("--revision", default="head", metavar="REV", help="default head")

    xmin = commands.add_parser(
        "xmin",
        help="XMin checkpoints: list, show, set, reset",
        formatter_class=_Formatter,
        description="XMin checkpoints, one per source table.",
        epilog="example:\n  dpone-state xmin show public.orders",
    )
    xmin_commands = xmin.add_subparsers(dest="xmin_command", metavar="COMMAND", required=True)
    add(xmin_commands, "list", "every checkpoint", "dpone-state xmin list --json", cmd_xmin_list)
    sub = add(
        xmin_commands,
        "show",
        "one checkpoint (exit 1 if there is none)",
        "dpone-state xmin show '\"my.schema\".orders'",
        cmd_xmin_show,
    )
    sub.add_argument("target", nargs="?", metavar="SCHEMA.TABLE")
    _key_options(sub)
    sub = add(
        xmin_commands,
        "set",
        "set a checkpoint (compare-and-set against the revision read first)",
        "dpone-state xmin set public.orders 8589934700",
        cmd_xmin_set,
    )
    sub.add_argument("arguments", nargs="+", metavar="SCHEMA.TABLE VALUE")
    sub.add_argument(
        "--expected-revision",
        type=_non_negative,
        metavar="N",
        help="write only if the stored revision is N (default: the revision just read)",
    )
    _key_options(sub)
    sub = add(
        xmin_commands,
        "reset",
        "delete a checkpoint: the next run is a full refresh (asks first)",
        "dpone-state xmin reset public.orders --yes",
        cmd_xmin_reset,
    )
    sub.add_argument("target", nargs="?", metavar="SCHEMA.TABLE")
    sub.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    _key_options(sub)

    runs = commands.add_parser(
        "runs",
        help="run-state rows: list, show, prune",
        formatter_class=_Formatter,
        description="Run-state rows, one per (dag_id, execution_date).",
        epilog="example:\n  dpone-state runs list orders_daily --limit 5",
    )
    runs_commands = runs.add_subparsers(dest="runs_command", metavar="COMMAND", required=True)
    sub = add(
        runs_commands,
        "list",
        "the runs of a DAG, newest first",
        "dpone-state runs list orders_daily --limit 10 --json",
        cmd_runs_list,
    )
    sub.add_argument("dag_id", metavar="DAG")
    sub.add_argument("--limit", type=_limit, default=20, metavar="N", help="default 20")
    sub.add_argument(
        "--before", type=_datetime_arg, metavar="DATE", help="only runs before DATE (page back)"
    )
    sub = add(
        runs_commands,
        "show",
        "one run (exit 1 if there is none)",
        "dpone-state runs show orders_daily 2024-05-01T02:00:00Z",
        cmd_runs_show,
    )
    sub.add_argument("dag_id", metavar="DAG")
    sub.add_argument(
        "execution_date",
        type=_datetime_arg,
        metavar="EXECUTION_DATE",
        help="ISO 8601; naive means UTC",
    )
    sub = add(
        runs_commands,
        "prune",
        "delete runs with an execution_date older than N days",
        "dpone-state runs prune --days 30 --dry-run",
        cmd_runs_prune,
    )
    sub.add_argument("--days", type=_non_negative, required=True, metavar="N")
    sub.add_argument("--dry-run", action="store_true", help="count, do not delete")

    add(
        commands,
        "doctor",
        "check the connection, migration revision and table shapes (exit 1 on a problem)",
        "dpone-state doctor --url postgresql+psycopg2://etl@db/meta",
        cmd_doctor,
    )
    return parser


# --------------------------------------------------------------------------- the target


#: Where a command works: the engine, both storages, the masked URL and the one schema.
Target = StateStores


def _schema_option(args: argparse.Namespace) -> Any:
    if args.no_schema and args.schema is not None:
        raise UsageError("use either --schema or --no-schema")
    if args.no_schema:
        return None
    return args.schema if args.schema is not None else DEFAULT


def _url_option(args: argparse.Namespace) -> str:
    url = args.url or default_url()
    try:
        make_url(url)
    except ArgumentError:
        raise UsageError(
            "the state URL is not a SQLAlchemy URL (dialect+driver://user:password@host/db)"
        ) from None
    return str(url)


def open_target(args: argparse.Namespace) -> Target:
    """State from ``--config`` or the URL, with the table options applied, through the one
    door (``open_stores``). The engine is disposed when ``main`` returns."""
    schema = _schema_option(args)
    if args.config is not None:
        if args.url is not None:
            raise UsageError("use either --url or --config, not both")
        manifest = Path(args.config)
        if not manifest.is_file():
            raise UsageError(f"manifest {manifest} does not exist")
        settings = with_tables(
            load_state_settings(manifest),
            schema=schema,
            xmin_table=args.xmin_table,
            run_table=args.run_table,
        )
    else:
        settings = settings_from_url(
            _url_option(args), schema=schema, xmin_table=args.xmin_table, run_table=args.run_table
        )
    target = open_stores(settings)
    args.engines.append(target.engine)
    return target


# --------------------------------------------------------------------------- output


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot serialize {type(value).__name__}")


def print_json(data: object) -> None:
    """JSON on stdout; datetimes ISO 8601 UTC."""
    print(json.dumps(data, default=_json_default, indent=2))


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):  # JSON keeps the microseconds; a table does not need them
        return value.isoformat(timespec="seconds")
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Aligned columns; numbers right-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    numeric = [
        bool(rows)
        and all(
            row[i] is None or (isinstance(row[i], (int, float)) and not isinstance(row[i], bool))
            for row in rows
        )
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def format_record(record: dict[str, object]) -> str:
    """One record as ``key  value`` lines."""
    width = max(len(key) for key in record)
    return "\n".join(f"{key.ljust(width)}  {_cell(value)}" for key, value in record.items())


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


# --------------------------------------------------------------------------- commands


def _say(args: argparse.Namespace, data: object, text: str) -> None:
    if args.json:
        print_json(data)
    else:
        print(text)


def _migration_names(target: Target) -> dict[str, Any]:
    return {
        "schema": target.schema,
        "xmin_table": target.xmin.table_name,
        "run_table": target.runs.table_name,
    }


def cmd_upgrade(args: argparse.Namespace) -> int:
    from dpone_state import migrate  # noqa: PLC0415 (alembic loads only when needed)

    target = open_target(args)
    before = migrate.current(target.engine, schema=target.schema)
    migrate.upgrade(target.engine, args.revision, **_migration_names(target))
    after = migrate.current(target.engine, schema=target.schema)
    _say(
        args,
        {"url": target.url, "from": before, "to": after},
        f"{target.url}: already at {after}"
        if before == after
        else f"{target.url}: upgraded from {before or 'nothing'} to {after}",
    )
    return EXIT_OK


def cmd_downgrade(args: argparse.Namespace) -> int:
    from dpone_state import migrate  # noqa: PLC0415

    target = open_target(args)
    before = migrate.current(target.engine, schema=target.schema)
    try:
        migrate.downgrade(
            target.engine, args.revision, drop_data=args.drop_data, **_migration_names(target)
        )
    except DowngradeRefusedError as error:
        raise Problem(f"{error}; pass --drop-data to confirm") from None
    after = migrate.current(target.engine, schema=target.schema)
    _say(
        args,
        {"url": target.url, "from": before, "to": after},
        f"{target.url}: already at {after or 'base'}"
        if before == after
        else f"{target.url}: downgraded from {before or 'nothing'} to {after or 'base'}",
    )
    return EXIT_OK


def cmd_current(args: argparse.Namespace) -> int:
    from dpone_state import migrate  # noqa: PLC0415

    target = open_target(args)
    current = migrate.current(target.engine, schema=target.schema)
    head = migrate.head_revision()
    state = "not provisioned" if current is None else "at head" if current == head else "behind"
    _say(
        args,
        {"url": target.url, "current": current, "head": head, "up_to_date": current == head},
        f"{target.url}: {current or '-'} (head {head}; {state})",
    )
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from dpone_state import migrate  # noqa: PLC0415

    revisions = migrate.revisions()
    if args.json:
        print_json([revision.__dict__ for revision in revisions])
    else:
        rows = [
            [r.revision, r.down_revision or "base", "head" if r.is_head else "", r.message]
            for r in revisions
        ]
        print(format_table(["revision", "down", "", "message"], rows))
    return EXIT_OK


def cmd_sql(args: argparse.Namespace) -> int:
    from dpone_state import migrate  # noqa: PLC0415

    dialect = args.dialect or make_url(_url_option(args)).get_backend_name()
    if dialect not in OFFLINE_DIALECTS:
        raise UsageError(
            f"no offline SQL for {dialect!r}; pass --dialect {{{','.join(OFFLINE_DIALECTS)}}}"
        )
    schema = _schema_option(args)
    script = migrate.offline_sql(
        dialect,
        args.revision,
        schema=schema,
        xmin_table=args.xmin_table or DEFAULT_XMIN_TABLE,
        run_table=args.run_table or DEFAULT_RUN_TABLE,
    )
    sys.stdout.write(script)
    return EXIT_OK


def _key(args: argparse.Namespace, target: str | None) -> tuple[str, str]:
    by_options = args.source_schema is not None or args.source_table is not None
    if by_options:
        if target is not None:
            raise UsageError("give SCHEMA.TABLE or --source-schema/--source-table, not both")
        if args.source_schema is None or args.source_table is None:
            raise UsageError("--source-schema and --source-table go together")
        return str(args.source_schema), str(args.source_table)
    if target is None:
        raise UsageError("which checkpoint? give SCHEMA.TABLE (or --source-schema/--source-table)")
    return split_qualified(target)


def cmd_xmin_list(args: argparse.Namespace) -> int:
    target = open_target(args)
    checkpoints = target.xmin.list_checkpoints()
    records = [
        checkpoint_record(c.source_schema, c.source_table, c.state, c.updated_at)
        for c in checkpoints
    ]
    if args.json:
        print_json(records)
    elif not records:
        print(f"no checkpoints in {target.xmin.qualified_name}")
    else:
        headers = list(records[0])
        print(format_table(headers, [list(r.values()) for r in records]))
    return EXIT_OK


def _load(target: Target, source_schema: str, source_table: str) -> XMinState:
    state = target.xmin.load_state(source_schema, source_table)
    if state is None:
        name = format_qualified(source_schema, source_table)
        raise Problem(f"no checkpoint for {name} in {target.xmin.qualified_name}")
    return state


def cmd_xmin_show(args: argparse.Namespace) -> int:
    source_schema, source_table = _key(args, args.target)
    target = open_target(args)
    state = _load(target, source_schema, source_table)
    record = checkpoint_record(source_schema, source_table, state)
    _say(args, record, format_record(record))
    return EXIT_OK


def cmd_xmin_set(args: argparse.Namespace) -> int:
    by_options = args.source_schema is not None or args.source_table is not None
    wanted = 1 if by_options else 2
    if len(args.arguments) != wanted:
        raise UsageError(
            "expected VALUE after --source-schema/--source-table"
            if by_options
            else "expected SCHEMA.TABLE VALUE"
        )
    source_schema, source_table = _key(args, None if by_options else args.arguments[0])
    try:
        value = _non_negative(args.arguments[-1])
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"VALUE: {error}") from None
    target = open_target(args)
    previous = target.xmin.load_state(source_schema, source_table)
    expected = args.expected_revision
    if expected is None:
        expected = previous.revision if previous is not None else 0
    name = format_qualified(source_schema, source_table)
    try:
        target.xmin.save_state(
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
    saved = _load(target, source_schema, source_table)
    old = "nothing" if previous is None else f"{previous.xmin_value} (revision {previous.revision})"
    _say(
        args,
        {
            "previous": None
            if previous is None
            else checkpoint_record(source_schema, source_table, previous),
            "saved": checkpoint_record(source_schema, source_table, saved),
        },
        f"{name}: {old} -> {saved.xmin_value} (revision {saved.revision})",
    )
    return EXIT_OK


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise UsageError(f"no terminal to confirm in; pass --yes to {question}")
    sys.stderr.write(f"{question[0].upper()}{question[1:]}? [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def cmd_xmin_reset(args: argparse.Namespace) -> int:
    source_schema, source_table = _key(args, args.target)
    target = open_target(args)
    state = _load(target, source_schema, source_table)
    name = format_qualified(source_schema, source_table)
    if not args.yes and not _confirm(
        f"delete the checkpoint of {name} (xmin {state.xmin_value}, revision {state.revision}) "
        "so that its next run is a full refresh"
    ):
        raise UsageError("not confirmed; nothing deleted")
    deleted = target.xmin.delete_state(source_schema, source_table)
    _say(
        args,
        {"deleted": deleted, "checkpoint": checkpoint_record(source_schema, source_table, state)},
        f"deleted the checkpoint of {name} (was xmin {state.xmin_value}); "
        "its next run is a full refresh",
    )
    return EXIT_OK


def cmd_runs_list(args: argparse.Namespace) -> int:
    target = open_target(args)
    runs = target.runs.get_run_states_by_dag(args.dag_id, limit=args.limit, before=args.before)
    if args.json:
        print_json([run_record(run) for run in runs])
    elif not runs:
        print(f"no runs of {args.dag_id} in {target.runs.qualified_name}")
    else:
        headers = [
            "execution_date", "state", "started_at", "ended_at", "duration_min",
            "rows_read", "rows_written", "rows_updated", "rows_deleted", "process_name",
        ]  # fmt: skip
        print(format_table(headers, [[getattr(run, h) for h in headers] for run in runs]))
    return EXIT_OK


def cmd_runs_show(args: argparse.Namespace) -> int:
    target = open_target(args)
    run = target.runs.get_run_state(args.dag_id, args.execution_date)
    if run is None:
        raise Problem(
            f"no run of {args.dag_id} at {args.execution_date.isoformat()} "
            f"in {target.runs.qualified_name}"
        )
    record = run_record(run)
    _say(args, record, format_record(record))
    return EXIT_OK


def cmd_runs_prune(args: argparse.Namespace) -> int:
    target = open_target(args)
    cutoff = prune_cutoff(args.days)
    if args.dry_run:
        count = target.runs.count_runs_before(cutoff)
        _say(
            args,
            {"dry_run": True, "cutoff": cutoff, "would_delete": count},
            f"would delete {count} run(s) with execution_date before {cutoff.isoformat()}",
        )
        return EXIT_OK
    deleted = target.runs.delete_old_states(args.days)
    _say(
        args,
        {"dry_run": False, "cutoff": cutoff, "deleted": deleted},
        f"deleted {deleted} run(s) with execution_date before {cutoff.isoformat()}",
    )
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from dpone_state.doctor import diagnose  # noqa: PLC0415

    target = open_target(args)
    report = diagnose(target.engine, target.schema, target.xmin.table_name, target.runs.table_name)
    if args.json:
        print_json(
            {
                "ok": report.ok,
                "url": report.url,
                "backend": report.backend,
                "server_version": report.server_version,
                "revision": report.revision,
                "head": report.head,
                "findings": [finding.__dict__ for finding in report.findings],
            }
        )
    else:
        print(f"database  {report.url}")
        print(f"backend   {report.backend} {report.server_version or ''}".rstrip())
        print(f"revision  {report.revision or '-'} (head {report.head or '-'})")
        for finding in report.findings:
            print(f"[{finding.status:<7}] {finding.check}: {finding.detail}")
            if finding.fix and finding.status != "ok":
                print(f"          fix: {finding.fix}")
        print("ok" if report.ok else "problems found")
    return EXIT_OK if report.ok else EXIT_PROBLEM


# --------------------------------------------------------------------------- errors and main


#: Errors of the invocation or its configuration (exit 2); any other error is a problem (1).
_USAGE_ERRORS: tuple[type[BaseException], ...] = (
    UsageError,
    InvalidStateError,
    StateConfigError,
    BackendNotInstalledError,
    UnsupportedBackendError,
    BackendMismatchError,
    ModuleNotFoundError,
)


def _exit_code(error: BaseException) -> int:
    """2 for a usage or configuration error; 1 for a problem found at the database or in state.

    A configuration that is valid but names a server that does not answer is a problem (1),
    like a missing table or a lost compare-and-set: the command line was right.
    """
    if isinstance(error, (VaultUnavailableError, StateUnavailableError)):
        return EXIT_PROBLEM
    return EXIT_USAGE if isinstance(error, _USAGE_ERRORS) else EXIT_PROBLEM


def _message(error: BaseException) -> str:
    if isinstance(error, ModuleNotFoundError):
        return (
            f"a driver is missing ({error.name}): install the backend's extra, "
            "e.g. pip install 'dpone-state[postgres]'"
        )
    if isinstance(error, SQLAlchemyError):
        return f"database error: {first_line(error)}"
    return first_line(error)


def _secrets(args: argparse.Namespace) -> list[str]:
    """The passwords of the configured URLs, masked in every message."""
    secrets: list[str] = []
    for url in (getattr(args, "url", None), os.environ.get("DPONE_STATE_URL")):
        if url:
            try:
                password = make_url(url).password
            except ArgumentError:
                continue
            if password:
                secrets.append(str(password))
    return secrets


@contextmanager
def _disposed(engines: list[Engine]) -> Iterator[None]:
    try:
        yield
    finally:
        for engine in engines:
            engine.dispose()


def _mask(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit code (0 ok, 1 problem, 2 usage/config)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, value in _DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    args.engines = []
    secrets = _secrets(args)
    with _disposed(args.engines):
        try:
            code: int = args.handler(args)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `dpone-state sql | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
        except Exception as error:
            if args.debug:
                sys.stderr.write(_mask(traceback.format_exc(), secrets))
            print(f"{PROG}: error: {_mask(_message(error), secrets)}", file=sys.stderr)
            return _exit_code(error)
    return code


if __name__ == "__main__":
    sys.exit(main())
