"""Typed errors: each one says what went wrong and what to change, and never carries a secret."""

from __future__ import annotations

__all__ = [
    "BackendMismatchError",
    "BackendNotInstalledError",
    "DowngradeRefusedError",
    "InvalidIdentifierError",
    "InvalidSecretError",
    "InvalidStateError",
    "MissingConnectionError",
    "MissingEnvironmentVariableError",
    "RevisionConflictError",
    "SecretKeyMissingError",
    "SecretNotFoundError",
    "StateConfigError",
    "StateCredentialsError",
    "StateError",
    "StateNotProvisionedError",
    "StateUnavailableError",
    "UnknownConfigKeyError",
    "UnknownStateTypeError",
    "UnsupportedBackendError",
    "VaultAccessDeniedError",
    "VaultUnavailableError",
]


class StateError(Exception):
    """Base class of every error dpone-state raises on purpose."""


class InvalidStateError(StateError, ValueError):
    """A value handed to the library cannot be stored; nothing was written."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class InvalidIdentifierError(InvalidStateError):
    """A configured schema or table name cannot be used as an identifier."""


class StateNotProvisionedError(StateError):
    """The state tables (or their schema) do not exist in the target database.

    ``command`` is the exact ``dpone-state upgrade`` line that provisions them (the URL's
    password masked), ``python`` the same as a ``migrate.upgrade`` call; ``reason`` replaces
    the whole advice where provisioning is not the fix (an SQLite schema never attached).
    """

    def __init__(
        self,
        table: str,
        detail: str = "",
        *,
        database: str | None = None,
        command: str | None = None,
        python: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.table = table
        self.database = database
        self.command = command
        where = f" in {database}" if database else ""
        if reason is not None:
            hint = f"state table {table} cannot be reached{where}: {reason}"
        elif command is not None:
            hint = (
                f"state table {table} does not exist{where}: provision it with `{command}`"
                + (f" (from Python: `{python}`)" if python else "")
                + ", or call create_tables() once"
            )
        else:
            hint = (
                f"state table {table} does not exist{where}: provision it with "
                "`dpone-state upgrade` (the same URL and table options), or call "
                "create_tables() once"
            )
        super().__init__(f"{hint} ({detail})" if detail else hint)


class RevisionConflictError(StateError):
    """A compare-and-set save lost: the stored checkpoint is not at the expected revision."""

    def __init__(self, source_schema: str, source_table: str, expected_revision: int) -> None:
        self.source_schema = source_schema
        self.source_table = source_table
        self.expected_revision = expected_revision
        super().__init__(
            f"checkpoint of {source_schema!r}.{source_table!r} is not at revision "
            f"{expected_revision}: another writer saved it first (or it does not exist); "
            "reload it with load_state() and decide again"
        )


class StateUnavailableError(StateError):
    """The state database could not be reached or dropped the connection; safe to retry."""


class UnsupportedBackendError(StateError, ValueError):
    """The engine's dialect is not one dpone-state supports."""


class BackendMismatchError(StateError, TypeError):
    """A backend-specific storage class was given an engine of another dialect."""


# --- The manifest ``state:`` block and its connections (config.py, connections.py) ---------


class StateConfigError(StateError, ValueError):
    """The ``state:`` block, or the connection it names, cannot be used; nothing was opened.

    ``field`` names what to change (``state.type``, ``VAULT_ADDR``, a secret key, …).
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class UnknownConfigKeyError(StateConfigError):
    """A key the block does not know (a typo must not fall back to a default silently)."""


class UnknownStateTypeError(StateConfigError, UnsupportedBackendError):
    """``state.type`` is not one of the supported backends."""


class MissingConnectionError(StateConfigError):
    """The block names no connection and none can be reused from the sink."""


class MissingEnvironmentVariableError(StateConfigError):
    """An environment variable the connection needs is not set."""


class InvalidSecretError(StateConfigError):
    """A connection secret (Vault or environment) is present but malformed."""


class SecretNotFoundError(StateConfigError):
    """The Vault secret the connection names does not exist."""


class SecretKeyMissingError(StateConfigError):
    """The connection secret lacks a key the backend needs."""


class VaultAccessDeniedError(StateConfigError):
    """Vault refused the token (``VAULT_TOKEN``) for the secret's path."""


class VaultUnavailableError(StateUnavailableError):
    """Vault (``VAULT_ADDR``) cannot be reached; safe to retry."""


class BackendNotInstalledError(StateError):
    """The code or driver of a configured backend (or of Vault) is not installed."""


class DowngradeRefusedError(StateError):
    """A migration downgrade would delete rows of the state tables and was not confirmed."""


class StateCredentialsError(StateConfigError):
    """The cloud credentials are missing or unreadable (BigQuery); the message says which."""
