-- dpone-state on SQL Server (mssql+pyodbc): RunStateStorage.create_tables()
-- Sent in this order, in one transaction; production databases are provisioned by the
--   migrations instead. Keys of new tables compare exactly (BIN2 collation) and fit the
--   900-byte clustered key limit; timestamps are UTC DATETIME2 with SYSUTCDATETIME() defaults.
IF SCHEMA_ID(N'etl_state') IS NULL
BEGIN
    EXEC sp_executesql N'CREATE SCHEMA etl_state';
END;

CREATE TABLE etl_state.etl_run_state (
	id BIGINT NOT NULL IDENTITY,
	dag_id NVARCHAR(400) COLLATE Latin1_General_100_BIN2 NOT NULL,
	source_schema NVARCHAR(256) NOT NULL,
	source_table NVARCHAR(256) NOT NULL,
	target_schema NVARCHAR(256) NOT NULL,
	target_table NVARCHAR(256) NOT NULL,
	load_strategy NVARCHAR(64) NOT NULL,
	state NVARCHAR(32) NOT NULL,
	execution_date DATETIME2 NOT NULL,
	started_at DATETIME2 NOT NULL,
	ended_at DATETIME2 NULL,
	duration_min FLOAT NULL,
	error_message NVARCHAR(max) NULL,
	rows_read BIGINT NULL,
	rows_written BIGINT NULL,
	rows_updated BIGINT NULL,
	rows_deleted BIGINT NULL,
	__dpone__loaded_at DATETIME2 NOT NULL CONSTRAINT df_etl_run_state___dpone__loaded_at DEFAULT SYSUTCDATETIME(),
	__dpone__updated_at DATETIME2 NOT NULL CONSTRAINT df_etl_run_state___dpone__updated_at DEFAULT SYSUTCDATETIME(),
	process_name NVARCHAR(512) NULL,
	CONSTRAINT pk_etl_run_state_dag_execution PRIMARY KEY (dag_id, execution_date)
);

CREATE INDEX ix_etl_run_state_execution_date ON etl_state.etl_run_state (execution_date);
