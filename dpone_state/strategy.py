"""Which incremental strategy a Postgres source uses, from its manifest options (dpone's rules).

Kept apart from the extraction so that a runtime can decide before it opens any connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from dpone_state.errors import StrategyConfigurationError

__all__ = [
    "INCREMENTAL_LOAD_STRATEGIES",
    "STRATEGY_SPELLINGS",
    "ExtractionMode",
    "ExtractionStrategy",
    "StrategyConfigurationError",
    "select_strategy",
    "strategy_mode",
]

#: Load strategies that extract incrementally; every other load strategy reads the source whole.
INCREMENTAL_LOAD_STRATEGIES = frozenset({"incremental_merge", "incremental_append"})


class ExtractionMode(str, Enum):
    """How a source table is read: by transaction ID, by a cursor column, or whole."""

    XMIN = "xmin"
    COLUMN = "column"
    FULL = "full"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ExtractionStrategy:
    """The selected mode; ``column`` is the cursor column in ``COLUMN`` mode, else ``None``."""

    mode: ExtractionMode
    column: str | None = None


#: Spellings of ``incremental_strategy`` dpone accepts, normalised (lower case, ``-`` as ``_``).
STRATEGY_SPELLINGS: dict[str, ExtractionMode] = {
    "xmin": ExtractionMode.XMIN,
    "pg_xmin": ExtractionMode.XMIN,
    "postgres_xmin": ExtractionMode.XMIN,
    "column": ExtractionMode.COLUMN,
    "column_cursor": ExtractionMode.COLUMN,
    "incremental_column": ExtractionMode.COLUMN,
}


def strategy_mode(spelling: str) -> ExtractionMode | None:
    """The mode an ``incremental_strategy`` spelling names (any case, ``-`` or ``_``), or None."""
    return STRATEGY_SPELLINGS.get(spelling.strip().lower().replace("-", "_"))


def _option(options: Mapping[str, object], name: str) -> str | None:
    value = options.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise StrategyConfigurationError(
            f"source.options.{name} must be a non-empty string (got {value!r}); "
            "set it or remove the key"
        )
    return value.strip()


def select_strategy(load_strategy: str, options: Mapping[str, object]) -> ExtractionStrategy:
    """The extraction strategy of a Postgres source with ``load_strategy`` and ``options``.

    For ``incremental_merge`` / ``incremental_append``:
    ``incremental_strategy: xmin`` selects XMin (also ``pg_xmin``, ``postgres_xmin``; any case,
    ``-`` or ``_``), ``incremental_strategy: column`` (also ``column_cursor``,
    ``incremental_column``) needs ``incremental_column``; without ``incremental_strategy`` a
    legacy ``incremental_column`` selects column mode and no option at all selects XMin (the legacy default).
    ``xmin`` together with ``incremental_column`` is a ``StrategyConfigurationError``.
    Any other load strategy reads the table whole: ``FULL``, options not consulted.
    """
    if not isinstance(load_strategy, str):
        raise StrategyConfigurationError(
            f"load_strategy must be a string, got {type(load_strategy).__name__}"
        )
    if load_strategy.strip().lower() not in INCREMENTAL_LOAD_STRATEGIES:
        return ExtractionStrategy(ExtractionMode.FULL)
    if not isinstance(options, Mapping):
        raise StrategyConfigurationError(
            f"source.options must be a mapping, got {type(options).__name__}"
        )
    strategy = _option(options, "incremental_strategy")
    column = _option(options, "incremental_column")
    if strategy is None:
        if column is not None:
            return ExtractionStrategy(ExtractionMode.COLUMN, column)
        return ExtractionStrategy(ExtractionMode.XMIN)
    mode = strategy_mode(strategy)
    if mode is ExtractionMode.XMIN:
        if column is not None:
            raise StrategyConfigurationError(
                f"source.options.incremental_strategy: xmin conflicts with "
                f"source.options.incremental_column ({column!r}): XMin needs no cursor column; "
                "remove incremental_column, or set incremental_strategy: column"
            )
        return ExtractionStrategy(ExtractionMode.XMIN)
    if mode is ExtractionMode.COLUMN:
        if column is None:
            raise StrategyConfigurationError(
                "source.options.incremental_strategy: column requires "
                "source.options.incremental_column (the cursor column, e.g. updated_at)"
            )
        return ExtractionStrategy(ExtractionMode.COLUMN, column)
    raise StrategyConfigurationError(
        f"source.options.incremental_strategy {strategy!r} is not one of: "
        f"{', '.join(STRATEGY_SPELLINGS)} (any case, '-' or '_')"
    )
