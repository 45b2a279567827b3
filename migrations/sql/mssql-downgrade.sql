-- dpone-state: downgrade the state tables on SQL Server to dpone's legacy tables
-- (drops revision, process_name and the retention index; the rows stay).
-- Run it with sqlcmd, which must stop at the first error (-b):
--     sqlcmd -b -S SERVER -d DATABASE -i mssql-downgrade.sql
-- (in SSMS: Query > SQLCMD Mode, and `:on error exit` as the first line). The script runs
-- with XACT_ABORT ON in one transaction; if a batch fails, every later batch refuses to run
-- (THROW on @@TRANCOUNT = 0), so a client that carries on after an error applies nothing
-- more.
-- Run it once, on a database at the head revision.

IF SCHEMA_ID(N'etl_state') IS NULL
BEGIN
    EXEC sp_executesql N'CREATE SCHEMA etl_state';
END;

GO

SET XACT_ABORT ON;
BEGIN TRANSACTION;

-- Running downgrade 0006 -> 0005

UPDATE etl_state.dpone_state_alembic_version SET version_num='0005' WHERE etl_state.dpone_state_alembic_version.version_num = '0006';

GO

-- Running downgrade 0005 -> 0004

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
ALTER TABLE etl_state.etl_xmin_state DROP COLUMN last_load_id;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
UPDATE etl_state.dpone_state_alembic_version SET version_num='0004' WHERE etl_state.dpone_state_alembic_version.version_num = '0005';

GO

-- Running downgrade 0004 -> 0003

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
ALTER TABLE etl_state.etl_run_state ALTER COLUMN process_name NVARCHAR(256) NULL;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
UPDATE etl_state.dpone_state_alembic_version SET version_num='0003' WHERE etl_state.dpone_state_alembic_version.version_num = '0004';

GO

-- Running downgrade 0003 -> 0002

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
ALTER TABLE etl_state.etl_xmin_state DROP COLUMN source_fingerprint;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
ALTER TABLE etl_state.etl_xmin_state DROP COLUMN extraction_identity;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
UPDATE etl_state.dpone_state_alembic_version SET version_num='0002' WHERE etl_state.dpone_state_alembic_version.version_num = '0003';

GO

-- Running downgrade 0002 -> 0001

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
DELETE FROM etl_state.etl_xmin_state WHERE etl_state.etl_xmin_state.revision < 0;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
DROP INDEX ix_etl_run_state_execution_date ON etl_state.etl_run_state;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
ALTER TABLE etl_state.etl_run_state DROP COLUMN process_name;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
ALTER TABLE etl_state.etl_xmin_state DROP CONSTRAINT df_etl_xmin_state_revision;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
ALTER TABLE etl_state.etl_xmin_state DROP COLUMN revision;

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
UPDATE etl_state.dpone_state_alembic_version SET version_num='0001' WHERE etl_state.dpone_state_alembic_version.version_num = '0002';

GO

IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction was rolled back, so this batch does not run. Fix the cause and run the whole script again.', 1;
COMMIT;

GO

