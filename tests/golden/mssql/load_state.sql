-- dpone-state on SQL Server (mssql+pyodbc): XMinStateStorage.load_state(schema, table)
-- One statement per call, sent exactly as below; ? are pyodbc parameters.
--
-- A primary-key seek; READ COMMITTED sees only committed checkpoints; a tombstone (revision <
--   0) is no checkpoint.
--
-- Parameters, in order (name: type declared to the server by the engine's do_setinputsizes
--   hook, NULLs included = value in this call):
--   1. p_source_schema: NVARCHAR(4000) = 'src_schema_q7'
--   2. p_source_table: NVARCHAR(4000) = 'src_table_q7'
--   3. param_1: BIGINT = 0
SELECT etl_state.etl_xmin_state.xmin_value, etl_state.etl_xmin_state.__dpone__loaded_at, etl_state.etl_xmin_state.is_initial, etl_state.etl_xmin_state.wraparound_detected, etl_state.etl_xmin_state.frozen_xid, etl_state.etl_xmin_state.revision, etl_state.etl_xmin_state.extraction_identity, etl_state.etl_xmin_state.source_fingerprint
FROM etl_state.etl_xmin_state
WHERE etl_state.etl_xmin_state.source_schema = ? AND etl_state.etl_xmin_state.source_table = ? AND etl_state.etl_xmin_state.revision >= ?
