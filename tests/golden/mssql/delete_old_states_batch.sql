-- dpone-state on SQL Server (mssql+pyodbc): RunStateStorage.delete_old_states(days_to_keep=30,
--   batch_size=100)
-- One statement per call, sent exactly as below; ? are pyodbc parameters.
--
-- The same loop with batch_size rows per statement (TOP (n): a checked int >= 1).
--
-- Parameters, in order (name: type declared to the server by the engine's do_setinputsizes
--   hook, NULLs included = value in this call):
--   1. p_cutoff: DATETIME2(7) = <current UTC time>
DELETE TOP (100) FROM etl_state.etl_run_state WHERE etl_state.etl_run_state.execution_date < ? AND (etl_state.etl_run_state.process_name IS NULL OR etl_state.etl_run_state.process_name IS NOT NULL)
