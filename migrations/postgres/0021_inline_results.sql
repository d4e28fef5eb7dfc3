-- A small result (a profile, an aggregate, a no-op job's row) is kept in its row, as
-- the job commits: no file per job on the local disk, no PUT per job to S3. Its
-- `blob_key` still names it (and the sorted copies' cache keys), but no blob is
-- written there; `inline_parquet` holds the Parquet bytes. NULL for a result in the
-- blob store.
ALTER TABLE job_results ADD COLUMN inline_parquet BYTEA;
