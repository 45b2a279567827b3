"""dpone-state: dpone's runtime state (XMin checkpoints, run rows) on any SQL backend.

Everything a caller needs is importable from here: the storages (generic and per backend), the
engines, the one door from configuration (``open_state`` / ``open_stores``), the registry of
backend facts, the XMin API and every error. The Alembic API is the submodule
``dpone_state.migrate`` (``from dpone_state import migrate``), loaded on demand because Alembic
costs start-up time; so are the modules of the XMin extraction, health, exactly-once, export
and strategy names (``_LAZY`` below), on first access. Importing this package imports no
database driver and no SQLAlchemy dialect package.
"""

import sys
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING

from dpone_state.bigquery import (
    BigQueryRunStateStorage,
    BigQueryXMinStateStorage,
    bigquery_client,
    create_bigquery_engine,
)
from dpone_state.config import (
    SinkConnection,
    StateSettings,
    TableRef,
    load_state_settings,
    settings_from_url,
    with_tables,
)
from dpone_state.connections import (
    connection_env_var,
)
from dpone_state.dialects import (
    BACKENDS,
    DEFAULT,
    DEFAULT_SCHEMA,
    DEFAULT_URL,
    Backend,
    BackendHooks,
    RetryPolicy,
    SchemaOption,
    StateType,
    by_dialect,
    by_state_type,
    safe_url,
    same_database,
)
from dpone_state.engine import (
    create_state_engine,
    default_url,
)
from dpone_state.errors import (
    BackendMismatchError,
    BackendNotInstalledError,
    CheckpointIdentityError,
    ConflictingConfigKeysError,
    DatabaseMismatchError,
    DowngradeRefusedError,
    ForeignPartitionError,
    IncompatibleTableError,
    InvalidExportError,
    InvalidIdentifierError,
    InvalidSecretError,
    InvalidStateError,
    KeyCollisionError,
    LoadNotCommittedError,
    LoadSupersededError,
    MissingConnectionError,
    MissingEnvironmentVariableError,
    RevisionConflictError,
    SecretKeyMissingError,
    SecretNotFoundError,
    SourceColumnError,
    SourceNotATableError,
    SourcePermissionError,
    SourceTableNotFoundError,
    StateAuthenticationError,
    StateConfigError,
    StateCredentialsError,
    StateDatabaseError,
    StateDeadlockError,
    StateDisabledError,
    StateError,
    StateLockTimeoutError,
    StateNotProvisionedError,
    StateOutcomeUnknownError,
    StateRowCountUnknownError,
    StateUnavailableError,
    StrategyConfigurationError,
    UnknownConfigKeyError,
    UnknownStateTypeError,
    UnsupportedBackendError,
    UnsupportedDponeFeatureError,
    VaultAccessDeniedError,
    VaultUnavailableError,
    XMinError,
    first_line,
)
from dpone_state.models import (
    Checkpoint,
    RunState,
    RunStateStatus,
    XMinState,
    prune_cutoff,
)
from dpone_state.mssql import (
    MSSQLRunStateStorage,
    MssqlRunStateStorage,
    MSSQLXMinStateStorage,
    MssqlXMinStateStorage,
)
from dpone_state.mysql import (
    MysqlRunStateStorage,
    MysqlXMinStateStorage,
)
from dpone_state.opener import (
    DisabledState,
    StateStores,
    open_engine,
    open_state,
    open_stores,
)
from dpone_state.postgres import (
    PostgresRunStateStorage,
    PostgresXMinStateStorage,
)
from dpone_state.sqlite import (
    SqliteRunStateStorage,
    SqliteXMinStateStorage,
)
from dpone_state.storage import (
    ProbeResult,
    RunStateStorage,
    XMinStateStorage,
)
from dpone_state.tables import (
    DEFAULT_RUN_TABLE,
    DEFAULT_XMIN_TABLE,
    StateTables,
    build_tables,
)

if TYPE_CHECKING:
    from dpone_state.exactly_once import LOADED_ONCE, Loader, LoadResult, load_exactly_once
    from dpone_state.portability import (
        ImportReport,
        StateExport,
        export_state,
        import_state,
        read_export,
        write_export,
    )
    from dpone_state.strategy import (
        ExtractionMode,
        ExtractionStrategy,
        select_strategy,
    )
    from dpone_state.xmin import (
        XMinExtraction,
        XMinExtractor,
        XMinSnapshot,
    )
    from dpone_state.xmin_health import CheckpointHealth, HealthThresholds, xmin_health
    from dpone_state.xmin_window import (
        WindowKind,
        XMinWindow,
        compute_window,
    )

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "DEFAULT",
    "DEFAULT_RUN_TABLE",
    "DEFAULT_SCHEMA",
    "DEFAULT_URL",
    "DEFAULT_XMIN_TABLE",
    "LOADED_ONCE",
    "Backend",
    "BackendHooks",
    "BackendMismatchError",
    "BackendNotInstalledError",
    "BigQueryRunStateStorage",
    "BigQueryXMinStateStorage",
    "Checkpoint",
    "CheckpointHealth",
    "CheckpointIdentityError",
    "ConflictingConfigKeysError",
    "DatabaseMismatchError",
    "DisabledState",
    "DowngradeRefusedError",
    "ExtractionMode",
    "ExtractionStrategy",
    "ForeignPartitionError",
    "HealthThresholds",
    "ImportReport",
    "IncompatibleTableError",
    "InvalidExportError",
    "InvalidIdentifierError",
    "InvalidSecretError",
    "InvalidStateError",
    "KeyCollisionError",
    "LoadNotCommittedError",
    "LoadResult",
    "LoadSupersededError",
    "Loader",
    "MSSQLRunStateStorage",
    "MSSQLXMinStateStorage",
    "MissingConnectionError",
    "MissingEnvironmentVariableError",
    "MssqlRunStateStorage",
    "MssqlXMinStateStorage",
    "MysqlRunStateStorage",
    "MysqlXMinStateStorage",
    "PostgresRunStateStorage",
    "PostgresXMinStateStorage",
    "ProbeResult",
    "RetryPolicy",
    "RevisionConflictError",
    "RunState",
    "RunStateStatus",
    "RunStateStorage",
    "SchemaOption",
    "SecretKeyMissingError",
    "SecretNotFoundError",
    "SinkConnection",
    "SourceColumnError",
    "SourceNotATableError",
    "SourcePermissionError",
    "SourceTableNotFoundError",
    "SqliteRunStateStorage",
    "SqliteXMinStateStorage",
    "StateAuthenticationError",
    "StateConfigError",
    "StateCredentialsError",
    "StateDatabaseError",
    "StateDeadlockError",
    "StateDisabledError",
    "StateError",
    "StateExport",
    "StateLockTimeoutError",
    "StateNotProvisionedError",
    "StateOutcomeUnknownError",
    "StateRowCountUnknownError",
    "StateSettings",
    "StateStores",
    "StateTables",
    "StateType",
    "StateUnavailableError",
    "StrategyConfigurationError",
    "TableRef",
    "UnknownConfigKeyError",
    "UnknownStateTypeError",
    "UnsupportedBackendError",
    "UnsupportedDponeFeatureError",
    "VaultAccessDeniedError",
    "VaultUnavailableError",
    "WindowKind",
    "XMinError",
    "XMinExtraction",
    "XMinExtractor",
    "XMinSnapshot",
    "XMinState",
    "XMinStateStorage",
    "XMinWindow",
    "__version__",
    "bigquery_client",
    "build_tables",
    "by_dialect",
    "by_state_type",
    "compute_window",
    "connection_env_var",
    "create_bigquery_engine",
    "create_state_engine",
    "default_url",
    "export_state",
    "first_line",
    "import_state",
    "load_exactly_once",
    "load_state_settings",
    "open_engine",
    "open_state",
    "open_stores",
    "prune_cutoff",
    "read_export",
    "safe_url",
    "same_database",
    "select_strategy",
    "settings_from_url",
    "with_tables",
    "write_export",
    "xmin_health",
]

#: Public names whose modules load on first use (``__getattr__`` below), ~12 ms of start-up that
#: a process only storing state never needs: XMin extraction and health, exactly-once loads,
#: export/import and strategies. The ``TYPE_CHECKING`` imports above give them their types.
_LAZY_MODULES: dict[str, tuple[str, ...]] = {
    "exactly_once": ("LOADED_ONCE", "Loader", "LoadResult", "load_exactly_once"),
    "portability": (
        "ImportReport", "StateExport", "export_state", "import_state", "read_export", "write_export"
    ),
    "strategy": ("ExtractionMode", "ExtractionStrategy", "select_strategy"),
    "xmin": ("XMinExtraction", "XMinExtractor", "XMinSnapshot"),
    "xmin_health": ("CheckpointHealth", "HealthThresholds", "xmin_health"),
    "xmin_window": ("WindowKind", "XMinWindow", "compute_window"),
}  # fmt: skip
_LAZY = {name: module for module, names in _LAZY_MODULES.items() for name in names}

if not TYPE_CHECKING:  # at run time only: the type checker reads the imports above

    def __getattr__(name: str) -> object:
        """Load a lazy public name (or one of its modules) on first access and keep it."""
        module = _LAZY.get(name)
        if module is not None:
            value = getattr(import_module(f"dpone_state.{module}"), name)
        elif name in _LAZY_MODULES:
            value = import_module(f"dpone_state.{name}")
        else:
            raise AttributeError(f"module 'dpone_state' has no attribute {name!r}")
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})

    class _Package(ModuleType):
        """Keeps ``dpone_state.xmin_health`` the function, as before, when its submodule of the
        same name is first imported after the package (the import binds submodules by name)."""

        def __setattr__(self, name: str, value: object) -> None:
            if name in _LAZY and isinstance(value, ModuleType):
                value = getattr(value, name)
            super().__setattr__(name, value)

    sys.modules[__name__].__class__ = _Package
