-- dpone-state on SQL Server (mssql+pyodbc): RunStateStorage.get_run_states_by_dag(dag_id,
--   execution_date, limit=25)
-- One statement per call, sent exactly as below; ? are pyodbc parameters.
--
-- dpone's meaning: the runs at exactly execution_date.
--
-- Parameters, in order (name: type declared to the server by the engine's do_setinputsizes
--   hook, NULLs included = value in this call):
--   1. p_dag_id: NVARCHAR(4000) = 'dag_q7'
--   2. p_execution_date: DATETIME2(7) = 2026-05-06T07:08:09.654321+00:00
SELECT TOP 25 etl_state.etl_run_state.dag_id, etl_state.etl_run_state.source_schema, etl_state.etl_run_state.source_table, etl_state.etl_run_state.target_schema, etl_state.etl_run_state.target_table, etl_state.etl_run_state.load_strategy, etl_state.etl_run_state.execution_date, etl_state.etl_run_state.state, etl_state.etl_run_state.started_at, etl_state.etl_run_state.ended_at, etl_state.etl_run_state.duration_min, etl_state.etl_run_state.error_message, etl_state.etl_run_state.rows_read, etl_state.etl_run_state.rows_written, etl_state.etl_run_state.rows_updated, etl_state.etl_run_state.rows_deleted, etl_state.etl_run_state.process_name, etl_state.etl_run_state.id
FROM etl_state.etl_run_state
WHERE etl_state.etl_run_state.dag_id = ? AND etl_state.etl_run_state.execution_date = ? ORDER BY etl_state.etl_run_state.execution_date DESC
