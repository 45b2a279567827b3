-- dpone-state: provision or adopt the state tables on SQL Server (offline upgrade).
-- Run it with sqlcmd, which must stop at the first error (-b):
--     sqlcmd -b -S SERVER -d DATABASE -i mssql.sql
-- (in SSMS: Query > SQLCMD Mode, and `:on error exit` as the first line). The script runs
-- with XACT_ABORT ON in one transaction; if a batch fails, every later batch refuses to run
-- (THROW on @@TRANCOUNT = 0), so a client that carries on after an error applies nothing
-- more.
-- Safe to run again, whole: every step is guarded, the version row is written once.

IF SCHEMA_ID(N'etl_state') IS NULL
BEGIN
    EXEC sp_executesql N'CREATE SCHEMA etl_state';
END;

GO

SET XACT_ABORT ON;
BEGIN TRANSACTION;

IF OBJECT_ID(N'etl_state.dpone_state_alembic_version', N'U') IS NULL
BEGIN
CREATE TABLE etl_state.dpone_state_alembic_version (
    version_num VARCHAR(32) NOT NULL, 
    CONSTRAINT dpone_state_alembic_version_pkc PRIMARY KEY (version_num)
);
END;

GO

-- Running upgrade  -> 0001

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
IF OBJECT_ID(N'etl_state.etl_xmin_state', N'U') IS NULL
BEGIN
CREATE TABLE etl_state.etl_xmin_state (
    source_schema NVARCHAR(128) COLLATE Latin1_General_100_BIN2 NOT NULL, 
    source_table NVARCHAR(128) COLLATE Latin1_General_100_BIN2 NOT NULL, 
    xmin_value BIGINT NOT NULL, 
    is_initial BIT NOT NULL CONSTRAINT df_etl_xmin_state_is_initial DEFAULT 0, 
    wraparound_detected BIT NOT NULL CONSTRAINT df_etl_xmin_state_wraparound_detected DEFAULT 0, 
    frozen_xid BIGINT NULL, 
    __dpone__loaded_at DATETIME2 NOT NULL CONSTRAINT df_etl_xmin_state___dpone__loaded_at DEFAULT SYSUTCDATETIME(), 
    __dpone__updated_at DATETIME2 NOT NULL CONSTRAINT df_etl_xmin_state___dpone__updated_at DEFAULT SYSUTCDATETIME(), 
    CONSTRAINT pk_etl_xmin_state_source PRIMARY KEY (source_schema, source_table)
);
END;
IF COL_LENGTH(N'etl_state.etl_xmin_state', N'source_schema') IS NULL OR COL_LENGTH(N'etl_state.etl_xmin_state', N'source_table') IS NULL OR COL_LENGTH(N'etl_state.etl_xmin_state', N'xmin_value') IS NULL OR COL_LENGTH(N'etl_state.etl_xmin_state', N'is_initial') IS NULL OR COL_LENGTH(N'etl_state.etl_xmin_state', N'wraparound_detected') IS NULL OR COL_LENGTH(N'etl_state.etl_xmin_state', N'frozen_xid') IS NULL OR COL_LENGTH(N'etl_state.etl_xmin_state', N'__dpone__loaded_at') IS NULL OR COL_LENGTH(N'etl_state.etl_xmin_state', N'__dpone__updated_at') IS NULL OR EXISTS (SELECT 1 FROM sys.columns WHERE object_id = OBJECT_ID(N'etl_state.etl_xmin_state') AND is_nullable = 0 AND default_object_id = 0 AND is_identity = 0 AND is_computed = 0 AND name NOT IN (N'source_schema', N'source_table', N'xmin_value', N'is_initial', N'wraparound_detected', N'frozen_xid', N'__dpone__loaded_at', N'__dpone__updated_at')) OR COLUMNPROPERTY(OBJECT_ID(N'etl_state.etl_xmin_state'), N'process_name', 'AllowsNull') = 0
    THROW 50000, N'dpone-state: etl_state.etl_xmin_state exists but is not dpone''s v1 state table (a column is missing, or it has NOT NULL columns dpone-state never writes): not adopted', 1;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
IF OBJECT_ID(N'etl_state.etl_run_state', N'U') IS NULL
BEGIN
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
    CONSTRAINT pk_etl_run_state_dag_execution PRIMARY KEY (dag_id, execution_date)
);
END;
IF COL_LENGTH(N'etl_state.etl_run_state', N'id') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'dag_id') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'source_schema') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'source_table') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'target_schema') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'target_table') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'load_strategy') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'state') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'execution_date') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'started_at') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'ended_at') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'duration_min') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'error_message') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'rows_read') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'rows_written') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'rows_updated') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'rows_deleted') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'__dpone__loaded_at') IS NULL OR COL_LENGTH(N'etl_state.etl_run_state', N'__dpone__updated_at') IS NULL OR EXISTS (SELECT 1 FROM sys.columns WHERE object_id = OBJECT_ID(N'etl_state.etl_run_state') AND is_nullable = 0 AND default_object_id = 0 AND is_identity = 0 AND is_computed = 0 AND name NOT IN (N'id', N'dag_id', N'source_schema', N'source_table', N'target_schema', N'target_table', N'load_strategy', N'state', N'execution_date', N'started_at', N'ended_at', N'duration_min', N'error_message', N'rows_read', N'rows_written', N'rows_updated', N'rows_deleted', N'__dpone__loaded_at', N'__dpone__updated_at')) OR COLUMNPROPERTY(OBJECT_ID(N'etl_state.etl_run_state'), N'process_name', 'AllowsNull') = 0
    THROW 50000, N'dpone-state: etl_state.etl_run_state exists but is not dpone''s v1 state table (a column is missing, or it has NOT NULL columns dpone-state never writes): not adopted', 1;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
IF NOT EXISTS (SELECT 1 FROM etl_state.dpone_state_alembic_version)
BEGIN
INSERT INTO etl_state.dpone_state_alembic_version (version_num) OUTPUT inserted.version_num VALUES ('0001');
END;

GO

-- Running upgrade 0001 -> 0002

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
IF COL_LENGTH(N'etl_state.etl_xmin_state', N'revision') IS NULL
BEGIN
ALTER TABLE etl_state.etl_xmin_state ADD revision BIGINT NOT NULL CONSTRAINT df_etl_xmin_state_revision DEFAULT 0;
END;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
IF COL_LENGTH(N'etl_state.etl_run_state', N'process_name') IS NULL
BEGIN
ALTER TABLE etl_state.etl_run_state ADD process_name NVARCHAR(256) NULL;
END;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_etl_run_state_execution_date' AND object_id = OBJECT_ID(N'etl_state.etl_run_state'))
BEGIN
CREATE INDEX ix_etl_run_state_execution_date ON etl_state.etl_run_state (execution_date);
END;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
UPDATE etl_state.dpone_state_alembic_version SET version_num='0002' WHERE etl_state.dpone_state_alembic_version.version_num = '0001';

GO

-- Running upgrade 0002 -> 0003

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
IF COL_LENGTH(N'etl_state.etl_xmin_state', N'extraction_identity') IS NULL
BEGIN
ALTER TABLE etl_state.etl_xmin_state ADD extraction_identity NVARCHAR(1000) NULL;
END;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
IF COL_LENGTH(N'etl_state.etl_xmin_state', N'source_fingerprint') IS NULL
BEGIN
ALTER TABLE etl_state.etl_xmin_state ADD source_fingerprint NVARCHAR(1000) NULL;
END;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
UPDATE etl_state.dpone_state_alembic_version SET version_num='0003' WHERE etl_state.dpone_state_alembic_version.version_num = '0002';

GO

-- Running upgrade 0003 -> 0004

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
ALTER TABLE etl_state.etl_run_state ALTER COLUMN process_name NVARCHAR(512) NULL;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
UPDATE etl_state.dpone_state_alembic_version SET version_num='0004' WHERE etl_state.dpone_state_alembic_version.version_num = '0003';

GO

-- Running upgrade 0004 -> 0005

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
IF COL_LENGTH(N'etl_state.etl_xmin_state', N'last_load_id') IS NULL
BEGIN
ALTER TABLE etl_state.etl_xmin_state ADD last_load_id NVARCHAR(128) NULL;
END;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
UPDATE etl_state.dpone_state_alembic_version SET version_num='0005' WHERE etl_state.dpone_state_alembic_version.version_num = '0004';

GO

-- Running upgrade 0005 -> 0006

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
UPDATE etl_state.dpone_state_alembic_version SET version_num='0006' WHERE etl_state.dpone_state_alembic_version.version_num = '0005';

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
COMMIT;

GO

