-- Why each failed attempt failed, so that the regression watch counts only a release's
-- own faults: `data` (the input or the analysis failed it: never the release's fault),
-- `crash` (a panic, or the worker stopped without saying: a lost attempt), `timeout`,
-- `memory`, and `internal` (reading the data or writing the result failed). The
-- worker's failure sets `jobs.failure_kind` in the statement that ends its lease, and
-- the trigger copies it to the attempt.
ALTER TABLE jobs ADD COLUMN failure_kind TEXT;
ALTER TABLE job_attempts ADD COLUMN failure TEXT;

CREATE OR REPLACE FUNCTION quarry_job_attempt() RETURNS trigger AS $$
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
            END,
            failure = CASE
                WHEN NEW.lease IS NOT NULL THEN 'crash'
                WHEN NEW.status = 'succeeded' THEN NULL
                WHEN NEW.status = 'queued' AND NEW.attempts < OLD.attempts THEN NULL
                WHEN OLD.lease_until < now_ms THEN 'crash'
                WHEN NEW.status IN ('queued', 'failed') THEN NEW.failure_kind
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
