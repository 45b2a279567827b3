-- dpone-state on SQL Server (mssql+pyodbc): RunStateStorage.delete_old_states(days_to_keep=30)
-- One statement per call, sent exactly as below; ? are pyodbc parameters.
--
-- Retention by execution_date (index ix_<table>_execution_date); the row count is the exact
--   number of runs deleted.
--
-- Parameters, in order (name: type it is bound with = value in this call):
--   1. p_cutoff: DATETIME2 = <current UTC time>
DELETE FROM etl_state.etl_run_state WHERE etl_state.etl_run_state.execution_date < ? AND (etl_state.etl_run_state.process_name IS NULL OR etl_state.etl_run_state.process_name IS NOT NULL)
