-- Datasets keep their original file for download and a typed Parquet copy that every
-- analysis scans (`parquet_key`, `stored_bytes`), with the options they were read
-- with (`ingest_json`); Excel workbooks become a format.
ALTER TABLE datasets DROP CONSTRAINT datasets_format_check;
ALTER TABLE datasets ADD CONSTRAINT datasets_format_check
    CHECK (format IN ('csv', 'parquet', 'ndjson', 'xlsx'));
ALTER TABLE datasets
    ADD COLUMN parquet_key TEXT,
    ADD COLUMN stored_bytes BIGINT,
    ADD COLUMN ingest_json TEXT;
