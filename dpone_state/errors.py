"""Every error dpone-state raises on purpose, in one module.

Each one says what went wrong and what to change, and never carries a secret. The hierarchy
(``ValueError`` / ``TypeError`` mixins let callers that catch the builtin keep working)::

    StateError
    ├── InvalidStateError (ValueError)            a value cannot be stored; nothing was written
    │   ├── InvalidIdentifierError                an unusable schema or table name
    │   └── KeyCollisionError                     two keys SQL Server compares as equal
    ├── StateNotProvisionedError                  the state tables do not exist, or are
    │                                             dpone's not yet migrated (.command says how)
    ├── RevisionConflictError                     a compare-and-set save lost
    ├── StateUnavailableError                     nothing was applied; safe to retry
    │   ├── StateLockTimeoutError                 a lock wait / time limit / cancel; rolled back
    │   ├── StateDeadlockError                    lost a deadlock on every attempt; rolled back
    │   └── VaultUnavailableError                 Vault is unreachable; safe to retry
    ├── StateOutcomeUnknownError                  a write's reply was lost: it may have applied
    ├── LoadNotCommittedError                     an exactly-once load committed nothing
    ├── LoadSupersededError                       its outcome was lost; the checkpoint moved on
    ├── DatabaseMismatchError (ValueError)        a connection to another database than the state's
    ├── StateRowCountUnknownError                 the driver reported no row count (-1)
    ├── StateDatabaseError                        refused for a reason a retry does not cure
    ├── IncompatibleTableError                    a table of the name is not the v1 shape
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
    │   ├── StateAuthenticationError              credentials or database name refused
    │   └── StateCredentialsError                 BigQuery credentials missing or unreadable
    ├── BackendNotInstalledError                  a backend's driver (or hvac) is not installed
    ├── DowngradeRefusedError                     a downgrade would delete rows, unconfirmed
    ├── InvalidExportError (ValueError)           a state export unreadable or not fitting
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
    "IncompatibleTableError",
    "InvalidExportError",
    "InvalidIdentifierError",
    "InvalidSecretError",
    "InvalidStateError",
    "KeyCollisionError",
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
    "StateAuthenticationError",
    "StateConfigError",
    "StateCredentialsError",
    "StateDatabaseError",
    "StateDeadlockError",
    "StateDisabledError",
    "StateError",
    "StateLockTimeoutError",
    "StateNotProvisionedError",
    "StateOutcomeUnknownError",
    "StateRowCountUnknownError",
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

    ``command`` is the exact ``dpone-state upgrade`` line that provisions this store (the URL's
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
            message = f"state table {table} cannot be reached{where}: {reason}"
        else:
            how = (
                f"`{command}`" + (f" (from Python: `{python}`)" if python else "")
                if command
                else "`dpone-state upgrade` (with the same URL and table options)"
            )
            why = f" ({detail})" if detail else ""
            message = (
                f"state table {table}{where} is not provisioned for dpone-state{why}: provision "
                f"it with {how}, or call create_tables() once"
            )
        super().__init__(message)


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
    """The state database could not be reached, dropped the connection, or gave up waiting,
    and the call changed nothing: safe to retry as it is."""


class StateLockTimeoutError(StateUnavailableError):
    """The statement waited for a lock (or ran) past its bound and was cancelled, or was
    cancelled by an operator; the server rolled it back, so nothing changed: safe to retry.

    On SQL Server this is the session's ``LOCK_TIMEOUT`` (Msg 1222): with ``XACT_ABORT ON`` the
    server rolled the statement's transaction back; retry once the blocking transaction ends.
    """


class StateDeadlockError(StateUnavailableError):
    """A write lost a deadlock or serialization conflict on every one of its attempts; each
    was rolled back whole, so nothing changed: safe to retry."""


class StateRowCountUnknownError(StateError):
    """The driver did not report how many rows a statement changed (rowcount -1), so whether a
    compare-and-set save or a delete applied cannot be told; load the state to learn it."""


class StateDatabaseError(StateError):
    """The database refused the statement for a reason a retry does not cure by itself (a
    read-only file, a full disk, a value or name the backend cannot hold); nothing applied."""


class KeyCollisionError(InvalidStateError):
    """Two keys of one bulk save are the same key to the database (they differ only by case or
    trailing spaces, which SQL Server's comparison ignores); nothing was written."""

    def __init__(self, keys: list[tuple[tuple[str, str], tuple[str, str]]]) -> None:
        self.keys = keys
        pairs = "; ".join(f"{a!r} and {b!r}" for a, b in keys[:5])
        super().__init__(
            "states",
            f"keys that SQL Server compares as equal in one save_states call: {pairs}. Save them "
            "in separate calls, or fix the names; a legacy table with a case-insensitive "
            "collation keeps only one of them (README: SQL Server, key collation)",
        )


class IncompatibleTableError(StateError):
    """A table with the configured name exists but is not the shape dpone-state adopts.

    Adopting it would break it (or fail at the first write); nothing was changed.
    """

    def __init__(self, table: str, differences: list[str]) -> None:
        self.table = table
        self.differences = differences
        super().__init__(
            f"refusing to adopt {table}: it is not dpone's v1 state table "
            f"({'; '.join(differences)}); configure another table name, or migrate that table "
            "with the tool that created it"
        )


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


class StateAuthenticationError(StateConfigError):
    """The server refused the connection's credentials (wrong password, unknown role or user)
    or has no database of the configured name: a configuration error, not retryable."""


class BackendNotInstalledError(StateError):
    """The code or driver of a configured backend (or of Vault) is not installed."""


class DowngradeRefusedError(StateError):
    """A migration downgrade would delete rows of the state tables and was not confirmed."""


class StateCredentialsError(StateConfigError):
    """The cloud credentials are missing or unreadable (BigQuery); the message says which."""


class InvalidExportError(StateError, ValueError):
    """A state export cannot be read or does not fit the destination; nothing was written."""


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
