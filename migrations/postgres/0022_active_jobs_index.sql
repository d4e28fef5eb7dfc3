-- A submit decides whether its job is held by counting its owner's active jobs
-- (released, queued or running). The old `jobs_held (held, owner_id, created_at)`
-- made that count walk every job the owner ever ran that was not held, reading each
-- row for its status: a submit cost grew with the owner's history. This index answers
-- the count and the "older held jobs?" test from the index alone, over the active
-- jobs only. Every query `jobs_held` served is served by it or by `jobs_held_by_owner`.
DROP INDEX jobs_held;
CREATE INDEX jobs_owner_active ON jobs (owner_id, held, status);
