"""The Alembic migrations of the state tables (``script_location = dpone_state:migrations``).

Shipped inside the package so a pip install can provision without a clone; see
``dpone_state.migrate`` for the Python API and ``sql/`` for the generated offline scripts.
"""
