-- dpone-state on SQL Server (mssql+pyodbc): XMinStateStorage.probe(schema, table, load_id,
--   expected_revision=N)
-- One statement per call, sent exactly as below; ? are pyodbc parameters.
--
-- A primary-key seek of the receipt and the revision. Under locking READ COMMITTED (the
--   default) it waits for an uncommitted checkpoint write (its X lock) of the row, so a commit
--   in flight is not read around; under READ_COMMITTED_SNAPSHOT it reads the last committed
--   version (SQLAlchemy renders no FOR UPDATE here).
--
-- Parameters, in order (name: type it is bound with = value in this call):
--   1. p_source_schema: NVARCHAR(128) COLLATE Latin1_General_100_BIN2 = 'src_schema_q7'
--   2. p_source_table: NVARCHAR(128) COLLATE Latin1_General_100_BIN2 = 'src_table_q7'
SELECT etl_state.etl_xmin_state.last_load_id, etl_state.etl_xmin_state.revision
FROM etl_state.etl_xmin_state
WHERE etl_state.etl_xmin_state.source_schema = ? AND etl_state.etl_xmin_state.source_table = ?
