-- A re-run on a release another environment runs ([control.peers.<env>]): the job is
-- run there, through that environment's API, and its result brought back here.
-- `peer` names the environment, `peer_job_id` is the job there once submitted, and
-- `peer_dataset_id` the copy of the dataset uploaded there for it (deleted once the job
-- ends). Such a job has no queue message and no lease here: the server's forwarder
-- drives it, and the reconciler leaves it alone.
ALTER TABLE jobs ADD COLUMN peer TEXT;
ALTER TABLE jobs ADD COLUMN peer_job_id TEXT;
ALTER TABLE jobs ADD COLUMN peer_dataset_id TEXT;
CREATE INDEX jobs_forwarded ON jobs (created_at) WHERE peer IS NOT NULL;
