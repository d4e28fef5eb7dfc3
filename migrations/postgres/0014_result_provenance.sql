-- Where each result came from (the worker's release and image, the input's content
-- hash and ingest options, the analysis and the engine), as JSON, written with the
-- result in the commit's transaction. NULL until the job succeeds, and for results
-- committed before this migration.
ALTER TABLE jobs ADD COLUMN provenance_json TEXT;
