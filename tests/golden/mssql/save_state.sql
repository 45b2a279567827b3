-- dpone-state on SQL Server (mssql+pyodbc): XMinStateStorage.save_state(schema, table, state)
--   # last writer wins
-- One statement per call, sent exactly as below; ? are pyodbc parameters.
--
-- MERGE with HOLDLOCK (= SERIALIZABLE on the target table, for this statement): the lookup of
--   the key takes key-range update locks (RangeS-U) that are held to the end of the
--   transaction, so the match and the insert are one atomic step. A concurrent MERGE of the
--   same key waits on that lock (U locks are incompatible with each other, so the two do not
--   deadlock on it) and then finds the committed row and updates it: no primary-key violation,
--   no lost update. Without HOLDLOCK two first writers of one key both see no row and both
--   insert.
-- On a match the four values and __dpone__updated_at change and revision goes up by one
--   (target.revision + 1, read under the lock); __dpone__loaded_at keeps the first insert's
--   time. A new row starts at revision 1. A matched tombstone (a deleted checkpoint, revision
--   -(r + 1)) becomes a new checkpoint at r + 2 with this save's __dpone__loaded_at: a revision
--   is never reused.
--
-- Parameters, in order (name: type declared to the server by the engine's do_setinputsizes
--   hook, NULLs included = value in this call):
--   1. p_source_schema: NVARCHAR(4000) = 'src_schema_q7'
--   2. p_source_table: NVARCHAR(4000) = 'src_table_q7'
--   3. p_xmin_value: BIGINT = 42
--   4. p_is_initial: BIT = False
--   5. p_wraparound_detected: BIT = False
--   6. p_frozen_xid: BIGINT = None
--   7. p_extraction_identity: NVARCHAR(4000) = None
--   8. p_source_fingerprint: NVARCHAR(4000) = None
--   9. p___dpone__updated_at: DATETIME2(7) = <current UTC time>
--   10. p___dpone__loaded_at: DATETIME2(7) = <current UTC time>
--   11. param_1: BIGINT = 1
--   12. param_2: BIGINT = 0
--   13. param_3: BIGINT = 0
--   14. revision_1: BIGINT = 1
--   15. param_4: BIGINT = 1
MERGE INTO etl_state.etl_xmin_state WITH (HOLDLOCK) AS target
USING (VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)) AS incoming (source_schema, source_table, xmin_value, is_initial, wraparound_detected, frozen_xid, extraction_identity, source_fingerprint, __dpone__updated_at, __dpone__loaded_at, revision)
ON target.source_schema = incoming.source_schema AND target.source_table = incoming.source_table
WHEN MATCHED THEN UPDATE SET xmin_value = incoming.xmin_value, is_initial = incoming.is_initial, wraparound_detected = incoming.wraparound_detected, frozen_xid = incoming.frozen_xid, extraction_identity = incoming.extraction_identity, source_fingerprint = incoming.source_fingerprint, __dpone__updated_at = incoming.__dpone__updated_at, __dpone__loaded_at = CASE WHEN (target.revision < ?) THEN incoming.__dpone__loaded_at ELSE target.__dpone__loaded_at END, revision = CASE WHEN (target.revision < ?) THEN ? - target.revision ELSE target.revision + ? END
WHEN NOT MATCHED THEN INSERT (source_schema, source_table, xmin_value, is_initial, wraparound_detected, frozen_xid, extraction_identity, source_fingerprint, __dpone__updated_at, __dpone__loaded_at, revision) VALUES (incoming.source_schema, incoming.source_table, incoming.xmin_value, incoming.is_initial, incoming.wraparound_detected, incoming.frozen_xid, incoming.extraction_identity, incoming.source_fingerprint, incoming.__dpone__updated_at, incoming.__dpone__loaded_at, incoming.revision);
