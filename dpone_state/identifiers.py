"""The schema/table name check shared by the storages and the manifest ``state:`` block."""

from __future__ import annotations

from dpone_state.errors import InvalidIdentifierError

__all__ = ["IDENTIFIER_MAX", "check_identifier"]

#: Longest schema or table name accepted (SQL Server's and BigQuery's limits are larger).
IDENTIFIER_MAX = 128


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
    return value
