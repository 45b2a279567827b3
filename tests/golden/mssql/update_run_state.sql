-- dpone-state on SQL Server (mssql+pyodbc): RunStateStorage.update_run_state(run)  # the same
--   upsert: a new run is inserted
-- One statement per call, sent exactly as below; ? are pyodbc parameters.
--
-- MERGE with HOLDLOCK (= SERIALIZABLE on the target table, for this statement): the lookup of
--   the key takes key-range update locks (RangeS-U) that are held to the end of the
--   transaction, so the match and the insert are one atomic step. A concurrent MERGE of the
--   same key waits on that lock (U locks are incompatible with each other, so the two do not
--   deadlock on it) and then finds the committed row and updates it: no primary-key violation,
--   no lost update. Without HOLDLOCK two first writers of one key both see no row and both
--   insert.
-- Identical to save_run_state by design (the legacy UPDATE lost new runs).
--
-- Parameters, in order (name: type declared to the server by the engine's do_setinputsizes
--   hook, NULLs included = value in this call):
--   1. p_dag_id: NVARCHAR(4000) = 'dag_q7'
--   2. p_source_schema: NVARCHAR(4000) = 'pub_q7'
--   3. p_source_table: NVARCHAR(4000) = 'orders_q7'
--   4. p_target_schema: NVARCHAR(4000) = 'dwh_q7'
--   5. p_target_table: NVARCHAR(4000) = 'tgt_q7'
--   6. p_load_strategy: NVARCHAR(4000) = 'merge_q7'
--   7. p_execution_date: DATETIME2(7) = 2026-05-06T07:08:09.654321+00:00
--   8. p_state: NVARCHAR(4000) = 'running'
--   9. p_started_at: DATETIME2(7) = 2026-05-06T07:08:09.654321+00:00
--   10. p_ended_at: DATETIME2(7) = None
--   11. p_duration_min: FLOAT = None
--   12. p_error_message: NVARCHAR(max) = None
--   13. p_rows_read: BIGINT = None
--   14. p_rows_written: BIGINT = None
--   15. p_rows_updated: BIGINT = None
--   16. p_rows_deleted: BIGINT = None
--   17. p_process_name: NVARCHAR(4000) = None
--   18. p___dpone__loaded_at: DATETIME2(7) = <current UTC time>
--   19. p___dpone__updated_at: DATETIME2(7) = <current UTC time>
MERGE INTO etl_state.etl_run_state WITH (HOLDLOCK) AS target
USING (VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)) AS incoming (dag_id, source_schema, source_table, target_schema, target_table, load_strategy, execution_date, state, started_at, ended_at, duration_min, error_message, rows_read, rows_written, rows_updated, rows_deleted, process_name, __dpone__loaded_at, __dpone__updated_at)
ON target.dag_id = incoming.dag_id AND target.execution_date = incoming.execution_date
WHEN MATCHED THEN UPDATE SET state = incoming.state, ended_at = incoming.ended_at, duration_min = incoming.duration_min, error_message = incoming.error_message, rows_read = incoming.rows_read, rows_written = incoming.rows_written, rows_updated = incoming.rows_updated, rows_deleted = incoming.rows_deleted, load_strategy = incoming.load_strategy, __dpone__updated_at = incoming.__dpone__updated_at
WHEN NOT MATCHED THEN INSERT (dag_id, source_schema, source_table, target_schema, target_table, load_strategy, execution_date, state, started_at, ended_at, duration_min, error_message, rows_read, rows_written, rows_updated, rows_deleted, process_name, __dpone__loaded_at, __dpone__updated_at) VALUES (incoming.dag_id, incoming.source_schema, incoming.source_table, incoming.target_schema, incoming.target_table, incoming.load_strategy, incoming.execution_date, incoming.state, incoming.started_at, incoming.ended_at, incoming.duration_min, incoming.error_message, incoming.rows_read, incoming.rows_written, incoming.rows_updated, incoming.rows_deleted, incoming.process_name, incoming.__dpone__loaded_at, incoming.__dpone__updated_at);
