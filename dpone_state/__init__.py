"""dpone-state: dpone's runtime state (XMin checkpoints, run rows) on any SQL backend.

Importing this package imports no database driver; an engine's driver loads when it is made.
"""

from dpone_state.config import StateSettings, TableRef, load_state_settings
from dpone_state.connections import connection_env_var
from dpone_state.engine import DEFAULT_URL, create_state_engine, default_url, safe_url
from dpone_state.errors import (
    BackendMismatchError,
    BackendNotInstalledError,
    DowngradeRefusedError,
    IncompatibleTableError,
    InvalidIdentifierError,
    InvalidSecretError,
    InvalidStateError,
    KeyCollisionError,
    MissingConnectionError,
    MissingEnvironmentVariableError,
    RevisionConflictError,
    SecretKeyMissingError,
    SecretNotFoundError,
    StateConfigError,
    StateCredentialsError,
    StateError,
    StateLockTimeoutError,
    StateNotProvisionedError,
    StateUnavailableError,
    UnknownConfigKeyError,
    UnknownStateTypeError,
    UnsupportedBackendError,
    VaultAccessDeniedError,
    VaultUnavailableError,
)
from dpone_state.models import RunState, RunStateStatus, XMinState
from dpone_state.storage import RunStateStorage, XMinStateStorage
from dpone_state.stores import StateStores, open_state
from dpone_state.strategy import (
    ExtractionMode,
    ExtractionStrategy,
    StrategyConfigurationError,
    select_strategy,
)
from dpone_state.tables import (
    DEFAULT_RUN_TABLE,
    DEFAULT_SCHEMA,
    DEFAULT_XMIN_TABLE,
    StateTables,
    build_tables,
)
from dpone_state.xmin import (
    SourceColumnError,
    SourceNotATableError,
    SourcePermissionError,
    SourceTableNotFoundError,
    XMinError,
    XMinExtraction,
    XMinExtractor,
    XMinSnapshot,
)
from dpone_state.xmin_window import WindowKind, XMinWindow, compute_window

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_RUN_TABLE",
    "DEFAULT_SCHEMA",
    "DEFAULT_URL",
    "DEFAULT_XMIN_TABLE",
    "BackendMismatchError",
    "BackendNotInstalledError",
    "DowngradeRefusedError",
    "ExtractionMode",
    "ExtractionStrategy",
    "IncompatibleTableError",
    "InvalidIdentifierError",
    "InvalidSecretError",
    "InvalidStateError",
    "KeyCollisionError",
    "MissingConnectionError",
    "MissingEnvironmentVariableError",
    "RevisionConflictError",
    "RunState",
    "RunStateStatus",
    "RunStateStorage",
    "SecretKeyMissingError",
    "SecretNotFoundError",
    "SourceColumnError",
    "SourceNotATableError",
    "SourcePermissionError",
    "SourceTableNotFoundError",
    "StateConfigError",
    "StateCredentialsError",
    "StateError",
    "StateLockTimeoutError",
    "StateNotProvisionedError",
    "StateSettings",
    "StateStores",
    "StateTables",
    "StateUnavailableError",
    "StrategyConfigurationError",
    "TableRef",
    "UnknownConfigKeyError",
    "UnknownStateTypeError",
    "UnsupportedBackendError",
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
    "build_tables",
    "compute_window",
    "connection_env_var",
    "create_state_engine",
    "default_url",
    "load_state_settings",
    "open_state",
    "safe_url",
    "select_strategy",
]
