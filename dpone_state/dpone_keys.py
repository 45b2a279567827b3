"""dpone's own spellings of the manifest ``state:`` block, read as dpone's bootstrap reads them.

``translate_dpone_keys`` rewrites them into dpone-state's keys before validation, so a
manifest written for dpone opens unchanged: ``vault_path`` / ``vault_mount_point``,
``credentials_source`` (``connection_type``), ``run_table.run_name`` (``name``), and dpone's
SQL Server-only keys, each honoured or refused with ``UnsupportedDponeFeatureError`` naming the
dpone feature dpone-state does not provide. ``type: disabled | noop | none | off`` is
recognised by ``disabled_state_type``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from dpone_state.errors import (
    ConflictingConfigKeysError,
    StateConfigError,
    UnsupportedDponeFeatureError,
)

__all__ = [
    "DISABLED_STATE_TYPES",
    "DponeOptions",
    "disabled_state_type",
    "translate_dpone_keys",
]

#: ``state.type`` values that turn the state off (dpone's bootstrap: ``_DISABLED_STATE_TYPES``).
DISABLED_STATE_TYPES: Final = frozenset({"disabled", "noop", "none", "off"})

Provisioning = Literal["external", "runtime"]

#: dpone keys for features of its SQL Server "target-atomic" state and other ledgers.
_REFUSED: Final[dict[str, str]] = {
    "receipt_table": "commit receipts of dpone's target-atomic SQL Server state",
    "repair_authority_table": "the repair authority of dpone's target-atomic SQL Server state",
    "repair_consumption_table": "the repair authority of dpone's target-atomic SQL Server state",
    "audit_table": "dpone's load audit table (load lifecycle records)",
    "kafka_table": "dpone's Kafka offset state",
    "partition_checkpoint_table": "dpone's partition checkpoints",
}
_ATOMICITY = ("after_target", "target_atomic")
_PROVISIONING: Final[tuple[Provisioning, ...]] = ("external", "runtime")


@dataclass(frozen=True)
class DponeOptions:
    """What dpone's keys ask for beyond dpone-state's own settings.

    ``provisioning``: ``runtime`` makes ``open_state`` create missing tables once (dpone's
    default created them lazily on the hot path); ``external`` or ``None``: never.
    ``database``: ``state.table.database`` (SQL Server): the database the state connects to.
    """

    provisioning: Provisioning | None = None
    database: str | None = None


def _text(where: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise StateConfigError(where, "must be a non-empty string")
    return value.strip()


def _merge(block: dict[str, Any], ours: str, dpones: str, where: str) -> None:
    """Move ``block[dpones]`` to ``block[ours]``; both given and different is refused."""
    if dpones not in block:
        return
    value = block.pop(dpones)
    if ours in block and block[ours] != value:
        raise ConflictingConfigKeysError(
            f"{where}.{dpones}",
            f"{value!r} conflicts with {where}.{ours} {block[ours]!r}; keep one of them",
        )
    block[ours] = value


def disabled_state_type(block: Mapping[str, Any]) -> str | None:
    """The spelling when ``state.type`` turns the state off (any case), else ``None``."""
    value = block.get("type")
    if isinstance(value, str) and value.strip().lower() in DISABLED_STATE_TYPES:
        return value.strip().lower()
    return None


def _table_block(
    block: dict[str, Any], key: str, state_type: object
) -> tuple[dict[str, Any] | None, str | None]:
    """``state.<key>`` with dpone's ``run_name`` as ``name``, and its ``database`` taken out."""
    value = block.get(key)
    if not isinstance(value, Mapping):
        return None, None
    table = dict(cast(Mapping[str, Any], value))
    if key == "run_table":
        _merge(table, "name", "run_name", f"state.{key}")
    if "kafka_name" in table:
        raise UnsupportedDponeFeatureError(
            f"state.{key}.kafka_name",
            f"names the table of {_REFUSED['kafka_table']}, which dpone-state does not "
            "provide (it keeps XMin checkpoints and run rows); remove the key",
        )
    database = _text(f"state.{key}.database", table.pop("database", None))
    if database is not None and state_type != "mssql":
        raise UnsupportedDponeFeatureError(
            f"state.{key}.database",
            "is dpone's SQL Server three-part name (database.schema.table); for "
            f"state.type {state_type!r} name the database in the connection instead",
        )
    block[key] = table
    return table, database


def translate_dpone_keys(block: Mapping[str, Any]) -> tuple[dict[str, Any], DponeOptions]:
    """The block with dpone's spellings rewritten to dpone-state's, and what else they ask."""
    result = dict(block)
    if isinstance(result.get("type"), str):  # dpone's bootstrap reads it in any case
        result["type"] = result["type"].strip().lower()
    _merge(result, "connection_type", "credentials_source", "state")
    vault_keys = {"vault_mount_point": "mount_point", "vault_path": "path"}
    if any(key in result for key in vault_keys):
        vault_value = result.get("vault")
        vault = (
            dict(cast(Mapping[str, Any], vault_value)) if isinstance(vault_value, Mapping) else {}
        )
        if vault_value is not None and not isinstance(vault_value, Mapping):
            raise StateConfigError("state.vault", "must be a mapping")
        for dpones, ours in vault_keys.items():
            if dpones in result:
                value = result.pop(dpones)
                if ours in vault and vault[ours] != value:
                    raise ConflictingConfigKeysError(
                        f"state.{dpones}",
                        f"{value!r} conflicts with state.vault.{ours} {vault[ours]!r}; keep one",
                    )
                vault[ours] = value
        result["vault"] = vault

    for key, feature in _REFUSED.items():
        if key in result:
            raise UnsupportedDponeFeatureError(
                f"state.{key}",
                f"configures {feature}, which dpone-state does not provide (it keeps XMin "
                "checkpoints and run rows only); remove the key",
            )
    atomicity = _text("state.atomicity", result.pop("atomicity", None))
    if atomicity is not None and atomicity not in _ATOMICITY:
        raise StateConfigError("state.atomicity", "must be after_target or target_atomic")
    if atomicity == "target_atomic":
        raise UnsupportedDponeFeatureError(
            "state.atomicity",
            "target_atomic is dpone's target-atomic SQL Server state (the checkpoint written "
            "in the target load's transaction, with a commit receipt), which dpone-state does "
            "not provide; use after_target: the checkpoint is saved after the load commits, "
            "and a crash in between replays the window (at-least-once)",
        )
    provisioning = _text("state.provisioning", result.pop("provisioning", None))
    if provisioning is not None and provisioning not in _PROVISIONING:
        raise StateConfigError("state.provisioning", "must be runtime or external")

    state_type = result.get("type")
    _, database = _table_block(result, "table", state_type)
    _, run_database = _table_block(result, "run_table", state_type)
    if run_database is not None and run_database != (database or run_database):
        raise ConflictingConfigKeysError(
            "state.run_table.database", "must match state.table.database (one database)"
        )
    return result, DponeOptions(provisioning=provisioning, database=database or run_database)
