-- Fencing: the delivery (queue receipt) that runs a job, and until when its lease
-- holds. Every change a worker makes names its lease; a worker whose lease passed to
-- another changes nothing. `enqueued_at` records when the job's message was sent, so a
-- job released without a message (a crash between the row and the send) is re-sent.
ALTER TABLE jobs ADD COLUMN lease TEXT;
ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
ALTER TABLE jobs ADD COLUMN enqueued_at INTEGER;
UPDATE jobs SET enqueued_at = created_at WHERE held = 0;
CREATE INDEX jobs_status_lease ON jobs (status, lease_until);
CREATE INDEX workers_seen ON workers (state, last_seen_at);
