-- The SHA-256 of each dataset's original file, hashed as the upload streams in: the
-- content a result was computed from, whatever the dataset is called. NULL for
-- datasets stored before this migration.
ALTER TABLE datasets ADD COLUMN sha256 TEXT;
