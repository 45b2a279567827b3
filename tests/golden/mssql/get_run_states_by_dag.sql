-- dpone-state on SQL Server (mssql+pyodbc): RunStateStorage.get_run_states_by_dag(dag_id)  #
--   limit=100
-- One statement per call, sent exactly as below; ? are pyodbc parameters.
--
-- TOP n with ORDER BY execution_date DESC: the newest runs first, a range scan of the primary
--   key (dag_id, execution_date) read backwards. n is rendered into the text (SQLAlchemy's
--   mssql dialect does so for TOP: ODBC drivers do not all accept a parameter there); it is an
--   int checked to be 1..10000 before it gets here, so nothing from the caller reaches the SQL
--   text.
--
-- Parameters, in order (name: type declared to the server by the engine's do_setinputsizes
--   hook, NULLs included = value in this call):
--   1. p_dag_id: NVARCHAR(4000) = 'dag_q7'
SELECT TOP 100 etl_state.etl_run_state.dag_id, etl_state.etl_run_state.source_schema, etl_state.etl_run_state.source_table, etl_state.etl_run_state.target_schema, etl_state.etl_run_state.target_table, etl_state.etl_run_state.load_strategy, etl_state.etl_run_state.execution_date, etl_state.etl_run_state.state, etl_state.etl_run_state.started_at, etl_state.etl_run_state.ended_at, etl_state.etl_run_state.duration_min, etl_state.etl_run_state.error_message, etl_state.etl_run_state.rows_read, etl_state.etl_run_state.rows_written, etl_state.etl_run_state.rows_updated, etl_state.etl_run_state.rows_deleted, etl_state.etl_run_state.process_name, etl_state.etl_run_state.id
FROM etl_state.etl_run_state
WHERE etl_state.etl_run_state.dag_id = ? ORDER BY etl_state.etl_run_state.execution_date DESC
