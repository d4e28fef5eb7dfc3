-- A reference check the control plane ran in the upstream environment, through that
-- environment's API ([control.peers.<env>]), because no worker of the candidate
-- release reads this server's queue: `peer` names the environment, `job_id` is then
-- the job there, and `peer_dataset_id` the copy of the reference's dataset uploaded
-- there for the check (deleted once the check ends). NULL `peer`: the check ran here.
ALTER TABLE promotion_checks ADD COLUMN peer TEXT;
ALTER TABLE promotion_checks ADD COLUMN peer_dataset_id TEXT;
