-- Jobs held back while their owner is at analyses.max_running_per_user: recorded as
-- queued but not sent to the queue. 0 = released (sent); N > 0 = held until the owner
-- has fewer than N released jobs that are queued or running.
ALTER TABLE jobs ADD COLUMN held BIGINT NOT NULL DEFAULT 0;
CREATE INDEX jobs_held ON jobs (held, owner_id, created_at);
