"""The Alembic migrations of the state tables, shipped as the package ``dpone_state.migrations``.

The source lives at the repository's top level (``migrations/``, ``script_location =
migrations`` in alembic.ini); the wheel maps it into the package, so a pip install can
provision without a clone. See ``dpone_state.migrate`` for the Python API and ``sql/`` for the
generated offline scripts.
"""
