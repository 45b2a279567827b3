"""The revisions of the state tables, oldest first (0001 adopts dpone's legacy tables)."""
