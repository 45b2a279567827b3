"""dpone-state: dpone's runtime state (XMin checkpoints, run rows) on any SQL backend.

Importing this package imports no database driver; an engine's driver loads when it is made.
"""

from dpone_state.engine import DEFAULT_URL, create_state_engine, default_url, safe_url
from dpone_state.errors import (
    BackendMismatchError,
    InvalidIdentifierError,
    InvalidStateError,
    RevisionConflictError,
    StateConfigurationError,
    StateCredentialsError,
    StateError,
    StateNotProvisionedError,
    StateUnavailableError,
    UnsupportedBackendError,
)
from dpone_state.models import RunState, RunStateStatus, XMinState
from dpone_state.storage import RunStateStorage, XMinStateStorage
from dpone_state.tables import (
    DEFAULT_RUN_TABLE,
    DEFAULT_SCHEMA,
    DEFAULT_XMIN_TABLE,
    StateTables,
    build_tables,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_RUN_TABLE",
    "DEFAULT_SCHEMA",
    "DEFAULT_URL",
    "DEFAULT_XMIN_TABLE",
    "BackendMismatchError",
    "InvalidIdentifierError",
    "InvalidStateError",
    "RevisionConflictError",
    "RunState",
    "RunStateStatus",
    "RunStateStorage",
    "StateConfigurationError",
    "StateCredentialsError",
    "StateError",
    "StateNotProvisionedError",
    "StateTables",
    "StateUnavailableError",
    "UnsupportedBackendError",
    "XMinState",
    "XMinStateStorage",
    "__version__",
    "build_tables",
    "create_state_engine",
    "default_url",
    "safe_url",
]
