-- dpone-state on SQL Server (mssql+pyodbc): XMinStateStorage.delete_state(schema, table)
-- One statement per call, sent exactly as below; ? are pyodbc parameters.
--
-- Deletes by primary key; the row count (0 or 1) says whether a checkpoint existed.
--
-- Parameters, in order (name: type it is bound with = value in this call):
--   1. p_source_schema: NVARCHAR(128) COLLATE Latin1_General_100_BIN2 = 'src_schema_q7'
--   2. p_source_table: NVARCHAR(128) COLLATE Latin1_General_100_BIN2 = 'src_table_q7'
DELETE FROM etl_state.etl_xmin_state WHERE etl_state.etl_xmin_state.source_schema = ? AND etl_state.etl_xmin_state.source_table = ? AND etl_state.etl_xmin_state.revision IS NOT NULL
