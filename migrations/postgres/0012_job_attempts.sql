-- Every attempt of a job is recorded: which delivery (lease) ran it, its attempt number,
-- the worker and the release (artifact or build id) that worker runs, when it started
-- and ended, and how it ended. The rows are written by a trigger on the job's lease, so
-- every path that starts or ends a lease (a worker's begin, commit, failure, hand-back
-- or cancel, the reconciler's repair of a lease that ran out) records its attempt in
-- the same statement, and the record cannot drift from the job.
--
-- Outcomes: `succeeded`, `failed` (the attempt failed; the job may be retried),
-- `cancelled`, `handed_back` (its worker shut down; the attempt did not count) and
-- `lost` (the worker stopped without saying: its lease ran out or passed to another
-- delivery).
ALTER TABLE workers ADD COLUMN release TEXT;

CREATE TABLE job_attempts (
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    lease       TEXT NOT NULL,
    -- 1, 2, 3… per job in the order the attempts began (a millisecond clock ties).
    seq         INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    worker_id   TEXT,
    release     TEXT,
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    outcome     TEXT CHECK (outcome IN ('succeeded', 'failed', 'cancelled', 'handed_back', 'lost')),
    error       TEXT,
    PRIMARY KEY (job_id, lease)
);
CREATE INDEX job_attempts_release ON job_attempts (release, started_at);

CREATE FUNCTION quarry_job_attempt() RETURNS trigger AS $$
DECLARE
    now_ms BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
BEGIN
    IF OLD.lease IS NOT NULL THEN
        UPDATE job_attempts SET
            ended_at = now_ms,
            -- Only the worker commits or hands back; any other end after the lease
            -- ran out is the reconciler's repair.
            outcome = CASE
                WHEN NEW.lease IS NOT NULL THEN 'lost'
                WHEN NEW.status = 'succeeded' THEN 'succeeded'
                WHEN NEW.status = 'queued' AND NEW.attempts < OLD.attempts THEN 'handed_back'
                WHEN OLD.lease_until < now_ms THEN 'lost'
                WHEN NEW.status = 'queued' THEN 'failed'
                ELSE NEW.status
            END,
            -- The job keeps its last error across attempts: only a failed attempt has one.
            error = CASE
                WHEN NEW.lease IS NOT NULL OR OLD.lease_until < now_ms THEN NULL
                WHEN NEW.status = 'failed'
                     OR (NEW.status = 'queued' AND NEW.attempts >= OLD.attempts) THEN NEW.error
            END
            WHERE job_id = NEW.id AND lease = OLD.lease AND ended_at IS NULL;
    END IF;
    IF NEW.lease IS NOT NULL THEN
        INSERT INTO job_attempts (job_id, lease, seq, attempt, worker_id, release, started_at)
            VALUES (NEW.id, NEW.lease,
                    (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_attempts WHERE job_id = NEW.id),
                    NEW.attempts, NEW.worker_id,
                    (SELECT release FROM workers WHERE id = NEW.worker_id), now_ms)
            ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER job_attempts AFTER UPDATE OF lease ON jobs
    FOR EACH ROW WHEN (NEW.lease IS DISTINCT FROM OLD.lease)
    EXECUTE FUNCTION quarry_job_attempt();
