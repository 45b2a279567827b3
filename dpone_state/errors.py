"""Every error dpone-state raises on purpose, in one module.

Each one says what went wrong and what to change, and never carries a secret. The hierarchy
(``ValueError`` / ``TypeError`` mixins let callers that catch the builtin keep working)::

    StateError
    ├── InvalidStateError (ValueError)            a value cannot be stored; nothing was written
    │   └── InvalidIdentifierError                an unusable schema or table name
    ├── StateNotProvisionedError                  the state tables do not exist, or are
    │                                             dpone's not yet migrated (.command says how)
    ├── RevisionConflictError                     a compare-and-set save lost
    ├── StateOutcomeUnknownError                  a write's reply was lost: it may have applied
    ├── LoadNotCommittedError                     an exactly-once load committed nothing
    ├── LoadSupersededError                       its outcome was lost; the checkpoint moved on
    ├── DatabaseMismatchError (ValueError)        a connection to another database than the state's
    ├── StateUnavailableError                     the database is unreachable; safe to retry
    │   └── VaultUnavailableError                 Vault is unreachable; safe to retry
    ├── UnsupportedBackendError (ValueError)      a dialect dpone-state does not support
    ├── BackendMismatchError (TypeError)          a backend's storage class got another engine
    ├── StateConfigError (ValueError)             the ``state:`` block or its connection
    │   ├── UnknownConfigKeyError
    │   ├── UnknownStateTypeError (+ UnsupportedBackendError)
    │   ├── MissingConnectionError
    │   ├── MissingEnvironmentVariableError
    │   ├── InvalidSecretError
    │   ├── SecretNotFoundError
    │   ├── SecretKeyMissingError
    │   ├── VaultAccessDeniedError
    │   ├── ConflictingConfigKeysError            dpone's spelling and ours disagree
    │   ├── UnsupportedDponeFeatureError          a dpone key for a feature not provided here
    │   ├── StateDisabledError                    ``type: disabled``: there is no store
    │   └── StateCredentialsError                 BigQuery credentials missing or unreadable
    ├── BackendNotInstalledError                  a backend's driver (or hvac) is not installed
    ├── DowngradeRefusedError                     a downgrade would delete rows, unconfirmed
    ├── StrategyConfigurationError (ValueError)   a source's options select no one strategy
    └── XMinError                                 an XMin extraction cannot run or commit
        ├── SourceTableNotFoundError
        ├── SourceNotATableError
        │   └── ForeignPartitionError             a partition is a foreign table (xmin = 0)
        ├── SourcePermissionError
        ├── SourceColumnError (ValueError)
        └── CheckpointIdentityError               the checkpoint belongs to another extraction

    UsageError (Exception)                        the command line is wrong (CLI exit 2)
    Problem (Exception)                           a command found a problem (CLI exit 1)

``first_line(error)`` is the one short form of an error used in messages and logs.
"""

from __future__ import annotations

__all__ = [
    "BackendMismatchError",
    "BackendNotInstalledError",
    "CheckpointIdentityError",
    "ConflictingConfigKeysError",
    "DatabaseMismatchError",
    "DowngradeRefusedError",
    "ForeignPartitionError",
    "InvalidIdentifierError",
    "InvalidSecretError",
    "InvalidStateError",
    "LoadNotCommittedError",
    "LoadSupersededError",
    "MissingConnectionError",
    "MissingEnvironmentVariableError",
    "Problem",
    "RevisionConflictError",
    "SecretKeyMissingError",
    "SecretNotFoundError",
    "SourceColumnError",
    "SourceNotATableError",
    "SourcePermissionError",
    "SourceTableNotFoundError",
    "StateConfigError",
    "StateCredentialsError",
    "StateDisabledError",
    "StateError",
    "StateNotProvisionedError",
    "StateOutcomeUnknownError",
    "StateUnavailableError",
    "StrategyConfigurationError",
    "UnknownConfigKeyError",
    "UnknownStateTypeError",
    "UnsupportedBackendError",
    "UnsupportedDponeFeatureError",
    "UsageError",
    "VaultAccessDeniedError",
    "VaultUnavailableError",
    "XMinError",
    "first_line",
]


def first_line(error: BaseException | None) -> str:
    """The first line of an error's message (of the driver's error for a wrapped DBAPI error),
    else the error's class name: what messages and logs show of an underlying failure."""
    inner = getattr(error, "orig", None) or error
    text = str(inner).strip()
    return text.splitlines()[0] if text else type(inner).__name__


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
    """The state tables (or their schema) do not exist in the target database, or they are
    dpone's tables not yet migrated (a column of dpone-state is missing).

    ``command`` is the exact provisioning command for this store (password masked).
    """

    def __init__(self, table: str, detail: str = "", *, command: str | None = None) -> None:
        self.table = table
        self.command = command
        how = f"`{command}`" if command else "`alembic upgrade head` (or `dpone-state upgrade`)"
        hint = (
            f"state table {table} is not provisioned for dpone-state: provision it with {how}, "
            "or call create_tables() once"
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


class StateOutcomeUnknownError(StateError):
    """A write reached the server, but the connection was lost before its reply (and nothing
    could read back what happened): it may or may not have been applied. Not a
    ``StateUnavailableError``: ask ``probe()`` (or load the state) before doing anything."""


class LoadNotCommittedError(StateError):
    """An exactly-once load committed nothing: the target and the checkpoint are as they were
    before it (the cause says why). Running it again reads the same window again."""

    def __init__(self, message: str, load_id: str) -> None:
        super().__init__(message)
        self.load_id = load_id


class LoadSupersededError(StateError):
    """The commit of an exactly-once load was not heard, and the checkpoint has since moved on
    under another load's receipt. The target holds every committed window once whichever way
    it went: do not replay these rows, extract again from the stored checkpoint."""

    def __init__(self, message: str, load_id: str) -> None:
        super().__init__(message)
        self.load_id = load_id


class DatabaseMismatchError(StateError, ValueError):
    """A connection or engine of another database than the storage's was given where the
    checkpoint must commit with it (one transaction spans one database only)."""


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


class ConflictingConfigKeysError(StateConfigError):
    """Two spellings of one setting (dpone's and ours, e.g. ``run_name`` and ``name``) disagree."""


class UnsupportedDponeFeatureError(StateConfigError):
    """A key of dpone's manifest for a dpone feature dpone-state does not provide; the message
    names the feature (never "unknown key": the key is known, the feature is not here)."""


class StateDisabledError(StateConfigError):
    """``state.type`` is ``disabled`` / ``noop`` / ``none`` / ``off``: there is no state to open.

    ``open_state`` returns a ``DisabledState`` instead of raising; this is for the calls that
    need a real store (settings, the command line).
    """


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


# --- Extraction and strategy (xmin.py, strategy.py) -----------------------------------------


class StrategyConfigurationError(StateError, ValueError):
    """A source's options do not select one incremental strategy; says which option to change."""


class XMinError(StateError):
    """An XMin extraction cannot run or cannot commit; the message says why."""


class SourceTableNotFoundError(XMinError):
    """The source schema or table does not exist (or is not visible to the source user)."""


class SourceNotATableError(XMinError):
    """The source relation has no ``xmin`` (a view, foreign table, sequence, …)."""


class SourcePermissionError(XMinError):
    """The source user may not read the table (no SELECT on it, or no USAGE on its schema)."""


class SourceColumnError(XMinError, ValueError):
    """A requested column does not exist in the source table."""


class ForeignPartitionError(SourceNotATableError):
    """A partition (or inheritance child) of the table is a foreign table.

    Its rows come from another server and report ``xmin = 0``, so no window ever contains
    them: only a full refresh would deliver them. Extracting the parent is refused.
    """


class CheckpointIdentityError(XMinError):
    """The stored checkpoint belongs to another extraction (database, columns, predicate or
    ``checkpoint_key``); advancing it would skip that extraction's rows. Nothing was read."""

    def __init__(self, source_schema: str, source_table: str, stored: str, ours: str) -> None:
        self.source_schema = source_schema
        self.source_table = source_table
        self.stored = stored
        self.ours = ours
        super().__init__(
            f"the checkpoint {source_schema!r}.{source_table!r} belongs to another extraction "
            f"(stored {stored}; this one {ours}): pass checkpoint_key= to give this extraction "
            "a checkpoint of its own, or, if the extraction itself changed (columns, where), "
            "delete the checkpoint (delete_state) so that the next run is a full refresh"
        )


# --- The command line (cli.py) ----------------------------------------------------------------


class UsageError(Exception):
    """The command line or the configuration is wrong: exit 2."""


class Problem(Exception):
    """The command ran and found a problem (not found, conflict, unhealthy): exit 1."""
