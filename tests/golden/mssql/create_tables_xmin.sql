-- dpone-state on SQL Server (mssql+pyodbc): XMinStateStorage.create_tables()
-- Sent in this order, in one transaction; production databases are provisioned by the
--   migrations instead. Keys of new tables compare exactly (BIN2 collation) and fit the
--   900-byte clustered key limit; timestamps are UTC DATETIME2 with SYSUTCDATETIME() defaults.
IF SCHEMA_ID(N'etl_state') IS NULL
BEGIN
    EXEC sp_executesql N'CREATE SCHEMA etl_state';
END;

CREATE TABLE etl_state.etl_xmin_state (
	source_schema NVARCHAR(128) COLLATE Latin1_General_100_BIN2 NOT NULL,
	source_table NVARCHAR(128) COLLATE Latin1_General_100_BIN2 NOT NULL,
	xmin_value BIGINT NOT NULL,
	is_initial BIT NOT NULL CONSTRAINT df_etl_xmin_state_is_initial DEFAULT 0,
	wraparound_detected BIT NOT NULL CONSTRAINT df_etl_xmin_state_wraparound_detected DEFAULT 0,
	frozen_xid BIGINT NULL,
	__dpone__loaded_at DATETIME2 NOT NULL CONSTRAINT df_etl_xmin_state___dpone__loaded_at DEFAULT SYSUTCDATETIME(),
	__dpone__updated_at DATETIME2 NOT NULL CONSTRAINT df_etl_xmin_state___dpone__updated_at DEFAULT SYSUTCDATETIME(),
	revision BIGINT NOT NULL CONSTRAINT df_etl_xmin_state_revision DEFAULT 0,
	extraction_identity NVARCHAR(1000) NULL,
	source_fingerprint NVARCHAR(1000) NULL,
	last_load_id NVARCHAR(128) NULL,
	CONSTRAINT pk_etl_xmin_state_source PRIMARY KEY (source_schema, source_table)
);
