-- dpone-state on SQL Server (mssql+pyodbc): XMinStateStorage.save_states({(schema, table):
--   state, (schema, other): state})
-- One statement per call, sent exactly as below; ? are pyodbc parameters.
--
-- MERGE with HOLDLOCK (= SERIALIZABLE on the target table, for this statement): the lookup of
--   the key takes key-range update locks (RangeS-U) that are held to the end of the
--   transaction, so the match and the insert are one atomic step. A concurrent MERGE of the
--   same key waits on that lock (U locks are incompatible with each other, so the two do not
--   deadlock on it) and then finds the committed row and updates it: no primary-key violation,
--   no lost update. Without HOLDLOCK two first writers of one key both see no row and both
--   insert.
-- The bulk path: up to 232 rows in one VALUES table (2100 parameters at most), last writer wins
--   per key, one statement, one transaction. Rows are sent in key order, so two bulk writers
--   lock shared keys in the same order (no deadlock between them); keys SQL Server would
--   compare as equal (case on a legacy case-insensitive collation) are refused before sending
--   (KeyCollisionError).
--
-- Parameters, in order (name: type declared to the server by the engine's do_setinputsizes
--   hook, NULLs included = value in this call):
--   1. p_source_schema_0: NVARCHAR(4000) = 'src_schema_q7'
--   2. p_source_table_0: NVARCHAR(4000) = 'other_q7'
--   3. p_xmin_value_0: BIGINT = 43
--   4. p_is_initial_0: BIT = False
--   5. p_wraparound_detected_0: BIT = False
--   6. p_frozen_xid_0: BIGINT = None
--   7. p_extraction_identity_0: NVARCHAR(4000) = None
--   8. p_source_fingerprint_0: NVARCHAR(4000) = None
--   9. p___dpone__updated_at_0: DATETIME2(7) = <current UTC time>
--   10. p___dpone__loaded_at_0: DATETIME2(7) = <current UTC time>
--   11. param_1: BIGINT = 1
--   12. p_source_schema_1: NVARCHAR(4000) = 'src_schema_q7'
--   13. p_source_table_1: NVARCHAR(4000) = 'src_table_q7'
--   14. p_xmin_value_1: BIGINT = 42
--   15. p_is_initial_1: BIT = False
--   16. p_wraparound_detected_1: BIT = False
--   17. p_frozen_xid_1: BIGINT = None
--   18. p_extraction_identity_1: NVARCHAR(4000) = None
--   19. p_source_fingerprint_1: NVARCHAR(4000) = None
--   20. p___dpone__updated_at_1: DATETIME2(7) = <current UTC time>
--   21. p___dpone__loaded_at_1: DATETIME2(7) = <current UTC time>
--   22. param_2: BIGINT = 1
--   23. param_3: BIGINT = 0
--   24. param_4: BIGINT = 0
--   25. revision_1: BIGINT = 1
--   26. param_5: BIGINT = 1
MERGE INTO etl_state.etl_xmin_state WITH (HOLDLOCK) AS target
USING (VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)) AS incoming (source_schema, source_table, xmin_value, is_initial, wraparound_detected, frozen_xid, extraction_identity, source_fingerprint, __dpone__updated_at, __dpone__loaded_at, revision)
ON target.source_schema = incoming.source_schema AND target.source_table = incoming.source_table
WHEN MATCHED THEN UPDATE SET xmin_value = incoming.xmin_value, is_initial = incoming.is_initial, wraparound_detected = incoming.wraparound_detected, frozen_xid = incoming.frozen_xid, extraction_identity = incoming.extraction_identity, source_fingerprint = incoming.source_fingerprint, __dpone__updated_at = incoming.__dpone__updated_at, __dpone__loaded_at = CASE WHEN (target.revision < ?) THEN incoming.__dpone__loaded_at ELSE target.__dpone__loaded_at END, revision = CASE WHEN (target.revision < ?) THEN ? - target.revision ELSE target.revision + ? END
WHEN NOT MATCHED THEN INSERT (source_schema, source_table, xmin_value, is_initial, wraparound_detected, frozen_xid, extraction_identity, source_fingerprint, __dpone__updated_at, __dpone__loaded_at, revision) VALUES (incoming.source_schema, incoming.source_table, incoming.xmin_value, incoming.is_initial, incoming.wraparound_detected, incoming.frozen_xid, incoming.extraction_identity, incoming.source_fingerprint, incoming.__dpone__updated_at, incoming.__dpone__loaded_at, incoming.revision);
