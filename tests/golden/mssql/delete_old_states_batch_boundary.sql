-- dpone-state on SQL Server (mssql+pyodbc): RunStateStorage.delete_old_states(days_to_keep=30,
--   batch_size=100)  # 1st statement
-- One statement per call, sent exactly as below; ? are pyodbc parameters.
--
-- Batched retention, step 1: the last row of the next batch, walking (execution_date, dag_id)
--   in order with OFFSET batch_size-1 ROWS FETCH FIRST 1 ROWS ONLY (both bound). dag_id orders
--   by the column's collation, the same one the DELETE compares with, so the batches tile the
--   old rows exactly.
--
-- Parameters, in order (name: type it is bound with = value in this call):
--   1. p_cutoff: DATETIME2 = <current UTC time>
--   2. p_offset: INTEGER = 99
--   3. param_1: INTEGER = 1
SELECT etl_state.etl_run_state.execution_date, etl_state.etl_run_state.dag_id
FROM etl_state.etl_run_state
WHERE etl_state.etl_run_state.execution_date < ? ORDER BY etl_state.etl_run_state.execution_date, etl_state.etl_run_state.dag_id
 OFFSET ? ROWS
 FETCH FIRST ? ROWS ONLY
