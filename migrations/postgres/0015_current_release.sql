-- The release the environment's fleet runs now (one row). The orchestrator declares
-- its own release when it starts: after a deploy or a rollback, the new orchestrator's.
-- Workers of any other release are superseded: they finish the job they hold, start
-- no new one (the statement that starts a job checks this row in the same statement)
-- and exit. `previous` is the release it replaced.
CREATE TABLE current_release (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    release      TEXT NOT NULL,
    declared_at  BIGINT NOT NULL,
    previous     TEXT
);

-- Which job each live worker runs (the system page's fleet by release).
CREATE INDEX jobs_running_worker ON jobs (worker_id) WHERE status = 'running';
