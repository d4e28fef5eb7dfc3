-- Every commit asks whether the job's owner has jobs held back
-- (analyses.max_running_per_user); most owners have none. A partial index answers at
-- once instead of walking the owner's queued jobs.
CREATE INDEX jobs_held_by_owner ON jobs (owner_id, created_at) WHERE held > 0 AND status = 'queued';
