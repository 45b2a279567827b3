-- dpone-state on SQL Server (mssql+pyodbc): XMinStateStorage.probe(schema, table, load_id,
--   expected_revision=N)
-- One statement per call, sent exactly as below; ? are pyodbc parameters.
--
-- A primary-key seek of the receipt and the revision. Under locking READ COMMITTED (the
--   default) it waits for an uncommitted checkpoint write (its X lock) of the row, so a commit
--   in flight is not read around; under READ_COMMITTED_SNAPSHOT it reads the last committed
--   version (SQLAlchemy renders no FOR UPDATE here).
--
-- Parameters, in order (name: type declared to the server by the engine's do_setinputsizes
--   hook, NULLs included = value in this call):
--   1. p_source_schema: NVARCHAR(4000) = 'src_schema_q7'
--   2. p_source_table: NVARCHAR(4000) = 'src_table_q7'
--   3. param_1: BIGINT = 0
SELECT etl_state.etl_xmin_state.last_load_id, etl_state.etl_xmin_state.revision
FROM etl_state.etl_xmin_state
WHERE etl_state.etl_xmin_state.source_schema = ? AND etl_state.etl_xmin_state.source_table = ? AND etl_state.etl_xmin_state.revision >= ?
