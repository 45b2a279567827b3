IF SCHEMA_ID(N'etl_state') IS NULL
BEGIN
    EXEC sp_executesql N'CREATE SCHEMA etl_state';
END;

GO

BEGIN TRANSACTION;

CREATE TABLE etl_state.dpone_state_alembic_version (
    version_num VARCHAR(32) NOT NULL, 
    CONSTRAINT dpone_state_alembic_version_pkc PRIMARY KEY (version_num)
);

GO

-- Running upgrade  -> 0001

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

GO

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

GO

INSERT INTO etl_state.dpone_state_alembic_version (version_num) OUTPUT inserted.version_num VALUES ('0001');

GO

-- Running upgrade 0001 -> 0002

IF COL_LENGTH(N'etl_state.etl_xmin_state', N'revision') IS NULL
BEGIN
ALTER TABLE etl_state.etl_xmin_state ADD revision BIGINT NOT NULL CONSTRAINT df_etl_xmin_state_revision DEFAULT 0;
END;

GO

IF COL_LENGTH(N'etl_state.etl_run_state', N'process_name') IS NULL
BEGIN
ALTER TABLE etl_state.etl_run_state ADD process_name NVARCHAR(256) NULL;
END;

GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_etl_run_state_execution_date' AND object_id = OBJECT_ID(N'etl_state.etl_run_state'))
BEGIN
CREATE INDEX ix_etl_run_state_execution_date ON etl_state.etl_run_state (execution_date);
END;

GO

UPDATE etl_state.dpone_state_alembic_version SET version_num='0002' WHERE etl_state.dpone_state_alembic_version.version_num = '0001';

GO

-- Running upgrade 0002 -> 0003

IF COL_LENGTH(N'etl_state.etl_xmin_state', N'extraction_identity') IS NULL
BEGIN
ALTER TABLE etl_state.etl_xmin_state ADD extraction_identity NVARCHAR(1000) NULL;
END;

GO

IF COL_LENGTH(N'etl_state.etl_xmin_state', N'source_fingerprint') IS NULL
BEGIN
ALTER TABLE etl_state.etl_xmin_state ADD source_fingerprint NVARCHAR(1000) NULL;
END;

GO

UPDATE etl_state.dpone_state_alembic_version SET version_num='0003' WHERE etl_state.dpone_state_alembic_version.version_num = '0002';

GO

-- Running upgrade 0003 -> 0004

ALTER TABLE etl_state.etl_run_state ALTER COLUMN process_name NVARCHAR(512) NULL;

GO

UPDATE etl_state.dpone_state_alembic_version SET version_num='0004' WHERE etl_state.dpone_state_alembic_version.version_num = '0003';

GO

-- Running upgrade 0004 -> 0005

IF COL_LENGTH(N'etl_state.etl_xmin_state', N'last_load_id') IS NULL
BEGIN
ALTER TABLE etl_state.etl_xmin_state ADD last_load_id NVARCHAR(128) NULL;
END;

GO

UPDATE etl_state.dpone_state_alembic_version SET version_num='0005' WHERE etl_state.dpone_state_alembic_version.version_num = '0004';

GO

COMMIT;

GO

