-- Datasets keep their original file for download and a typed Parquet copy that every
-- analysis scans (`parquet_key`, `stored_bytes`), with the options they were read
-- with (`ingest_json`); Excel workbooks become a format.
--
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt the way
-- SQLite documents it: create, copy, drop, rename. `Db::migrate` runs SQLite
-- migrations with foreign keys off (and checks them afterwards), so dropping the old
-- table cascades to no job, and `jobs` keeps referring to `datasets` by name.
CREATE TABLE datasets_rebuilt (
    id            TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    format        TEXT NOT NULL CHECK (format IN ('csv', 'parquet', 'ndjson', 'xlsx')),
    blob_key      TEXT NOT NULL,
    row_count     INTEGER NOT NULL,
    byte_count    INTEGER NOT NULL,
    columns_json  TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    parquet_key   TEXT,
    stored_bytes  INTEGER,
    ingest_json   TEXT,
    UNIQUE (owner_id, name)
);
INSERT INTO datasets_rebuilt (id, owner_id, name, format, blob_key, row_count, byte_count,
                              columns_json, created_at)
    SELECT id, owner_id, name, format, blob_key, row_count, byte_count, columns_json, created_at
    FROM datasets;
DROP TABLE datasets;
ALTER TABLE datasets_rebuilt RENAME TO datasets;
