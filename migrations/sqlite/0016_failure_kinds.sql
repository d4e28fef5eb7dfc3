-- Why each failed attempt failed, so that the regression watch counts only a release's
-- own faults: `data` (the input or the analysis failed it: never the release's fault),
-- `crash` (a panic, or the worker stopped without saying: a lost attempt), `timeout`,
-- `memory`, and `internal` (reading the data or writing the result failed). The
-- worker's failure sets `jobs.failure_kind` in the statement that ends its lease, and
-- the triggers copy it to the attempt.
ALTER TABLE jobs ADD COLUMN failure_kind TEXT;
ALTER TABLE job_attempts ADD COLUMN failure TEXT;

DROP TRIGGER job_attempt_begins;
CREATE TRIGGER job_attempt_begins AFTER UPDATE OF lease ON jobs
    WHEN NEW.lease IS NOT NULL AND NEW.lease IS NOT OLD.lease
BEGIN
    UPDATE job_attempts SET ended_at = CAST(unixepoch('subsec') * 1000 AS INTEGER),
                            outcome = 'lost', failure = 'crash'
        WHERE job_id = NEW.id AND lease = OLD.lease AND ended_at IS NULL;
    INSERT OR IGNORE INTO job_attempts (job_id, lease, seq, attempt, worker_id, release, started_at)
        VALUES (NEW.id, NEW.lease,
                (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_attempts WHERE job_id = NEW.id),
                NEW.attempts, NEW.worker_id,
                (SELECT release FROM workers WHERE id = NEW.worker_id),
                CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;

DROP TRIGGER job_attempt_ends;
CREATE TRIGGER job_attempt_ends AFTER UPDATE OF lease ON jobs
    WHEN OLD.lease IS NOT NULL AND NEW.lease IS NULL
BEGIN
    UPDATE job_attempts SET
        ended_at = CAST(unixepoch('subsec') * 1000 AS INTEGER),
        -- Only the worker commits or hands back; any other end after the lease ran out
        -- is the reconciler's repair.
        outcome = CASE
            WHEN NEW.status = 'succeeded' THEN 'succeeded'
            WHEN NEW.status = 'queued' AND NEW.attempts < OLD.attempts THEN 'handed_back'
            WHEN OLD.lease_until < CAST(unixepoch('subsec') * 1000 AS INTEGER) THEN 'lost'
            WHEN NEW.status = 'queued' THEN 'failed'
            ELSE NEW.status
        END,
        -- The job keeps its last error across attempts: only a failed attempt has one.
        error = CASE
            WHEN OLD.lease_until < CAST(unixepoch('subsec') * 1000 AS INTEGER) THEN NULL
            WHEN NEW.status = 'failed'
                 OR (NEW.status = 'queued' AND NEW.attempts >= OLD.attempts) THEN NEW.error
        END,
        failure = CASE
            WHEN NEW.status = 'succeeded' THEN NULL
            WHEN NEW.status = 'queued' AND NEW.attempts < OLD.attempts THEN NULL
            WHEN OLD.lease_until < CAST(unixepoch('subsec') * 1000 AS INTEGER) THEN 'crash'
            WHEN NEW.status IN ('queued', 'failed') THEN NEW.failure_kind
        END
        WHERE job_id = NEW.id AND lease = OLD.lease AND ended_at IS NULL;
END;
