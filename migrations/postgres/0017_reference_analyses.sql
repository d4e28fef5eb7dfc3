-- Reference analyses gate promotions. An operator pins a job that succeeded on the
-- release production runs: its dataset (by id, and by the content hash it was read
-- with), its analysis, and its result (a copy under `references/`, and the copy's
-- SHA-256). Requesting a promotion records one check per pinned reference; the
-- control plane runs each as a job that only a worker of the candidate release may
-- start (`jobs.required_release`, checked in the statement that starts a job) and
-- compares the results. The promotion's `gate` is `none` (nothing pinned), `running`,
-- `passed`, `blocked` (a result differed or a check failed) or `overridden` (an
-- admin's recorded reason).
CREATE TABLE reference_analyses (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    owner_id        TEXT NOT NULL,
    dataset_id      TEXT NOT NULL,
    dataset_sha256  TEXT NOT NULL,
    analysis_json   TEXT NOT NULL,
    expected_key    TEXT NOT NULL,
    expected_hash   TEXT NOT NULL,
    expected_rows   BIGINT NOT NULL,
    pinned_release  TEXT NOT NULL,
    source_job_id   TEXT NOT NULL,
    pinned_by       TEXT NOT NULL,
    pinned_at       BIGINT NOT NULL,
    retired_by      TEXT,
    retired_at      BIGINT
);
CREATE INDEX reference_analyses_active ON reference_analyses (pinned_at) WHERE retired_at IS NULL;

CREATE TABLE promotion_checks (
    promotion_id    TEXT NOT NULL REFERENCES promotions (id),
    reference_id    TEXT NOT NULL REFERENCES reference_analyses (id),
    job_id          TEXT,
    status          TEXT NOT NULL,
    actual_hash     TEXT,
    detail_json     TEXT,
    started_at      BIGINT,
    finished_at     BIGINT,
    PRIMARY KEY (promotion_id, reference_id)
);

ALTER TABLE promotions ADD COLUMN gate TEXT NOT NULL DEFAULT 'none';
ALTER TABLE promotions ADD COLUMN gate_override_by TEXT;
ALTER TABLE promotions ADD COLUMN gate_override_at BIGINT;
ALTER TABLE promotions ADD COLUMN gate_override_reason TEXT;
CREATE INDEX promotions_gate ON promotions (gate) WHERE gate IN ('pending', 'running');

-- The release that alone may run a job (a reference check on a candidate); NULL: any.
ALTER TABLE jobs ADD COLUMN required_release TEXT;

-- The job a re-run repeats on another release (its page compares the two results).
ALTER TABLE jobs ADD COLUMN rerun_of TEXT;
CREATE INDEX jobs_rerun_of ON jobs (rerun_of) WHERE rerun_of IS NOT NULL;
