"""dpone-state: dpone's runtime state (XMin checkpoints, run rows) on any SQL backend.

Everything a caller needs is importable from here: the storages (generic and per backend), the
engines, the one door from configuration (``open_state`` / ``open_stores``), the registry of
backend facts, the XMin API and every error. The Alembic API is the submodule
``dpone_state.migrate`` (``from dpone_state import migrate``), loaded on demand because Alembic
costs start-up time. Importing this package imports no database driver.
"""

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
    DowngradeRefusedError,
    ForeignPartitionError,
    InvalidIdentifierError,
    InvalidSecretError,
    InvalidStateError,
    MissingConnectionError,
    MissingEnvironmentVariableError,
    RevisionConflictError,
    SecretKeyMissingError,
    SecretNotFoundError,
    SourceColumnError,
    SourceNotATableError,
    SourcePermissionError,
    SourceTableNotFoundError,
    StateConfigError,
    StateCredentialsError,
    StateDisabledError,
    StateError,
    StateNotProvisionedError,
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
    RunStateStorage,
    XMinStateStorage,
)
from dpone_state.strategy import (
    ExtractionMode,
    ExtractionStrategy,
    select_strategy,
)
from dpone_state.tables import (
    DEFAULT_RUN_TABLE,
    DEFAULT_XMIN_TABLE,
    StateTables,
    build_tables,
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
    "DisabledState",
    "DowngradeRefusedError",
    "ExtractionMode",
    "ExtractionStrategy",
    "ForeignPartitionError",
    "HealthThresholds",
    "InvalidIdentifierError",
    "InvalidSecretError",
    "InvalidStateError",
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
    "StateConfigError",
    "StateCredentialsError",
    "StateDisabledError",
    "StateError",
    "StateNotProvisionedError",
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
    "first_line",
    "load_state_settings",
    "open_engine",
    "open_state",
    "open_stores",
    "prune_cutoff",
    "safe_url",
    "select_strategy",
    "settings_from_url",
    "with_tables",
    "xmin_health",
]
