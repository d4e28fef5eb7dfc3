-- The operator control plane: immutable artifacts, each stack environment's state,
-- promotions with their approvals, admin overrides, and releases linked to them.

-- An artifact: an image pinned by digest, the commit it was built from and the schema
-- (migration) version it expects. Never changed, except to be rejected.
CREATE TABLE artifacts (
    id              TEXT PRIMARY KEY,
    image           TEXT NOT NULL UNIQUE,
    repository      TEXT NOT NULL,
    digest          TEXT NOT NULL,
    git_commit      TEXT,
    schema_version  BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    rejected_by     TEXT,
    rejected_at     BIGINT,
    rejected_reason TEXT
);

-- The state of each stack environment (`environments/*.toml` with a [stack]).
CREATE TABLE environments (
    name                 TEXT PRIMARY KEY,
    frozen_by            TEXT,
    frozen_at            BIGINT,
    frozen_reason        TEXT,
    hold_by              TEXT,
    hold_at              BIGINT,
    hold_reason          TEXT,
    current_release_id   TEXT,
    last_good_release_id TEXT
);

CREATE TABLE promotions (
    id            TEXT PRIMARY KEY,
    from_env      TEXT NOT NULL,
    to_env        TEXT NOT NULL,
    artifact_id   TEXT NOT NULL REFERENCES artifacts (id),
    status        TEXT NOT NULL
                  CHECK (status IN ('awaiting_approval', 'deploying', 'succeeded', 'failed',
                                    'rejected', 'cancelled', 'expired')),
    requested_by  TEXT NOT NULL,
    requested_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    diff_json     TEXT NOT NULL,
    diff_hash     TEXT NOT NULL,
    release_id    TEXT,
    change_set_id TEXT,
    detail        TEXT,
    finished_at   BIGINT
);
CREATE INDEX promotions_status ON promotions (status, requested_at);

CREATE TABLE approvals (
    promotion_id TEXT NOT NULL REFERENCES promotions (id),
    decided_by   TEXT NOT NULL,
    decided_at   BIGINT NOT NULL,
    decision     TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX approvals_promotion ON approvals (promotion_id, decided_at);

-- Guards an operator cleared or an admin overrode: who, when, why.
CREATE TABLE overrides (
    environment TEXT NOT NULL,
    action      TEXT NOT NULL,
    done_by     TEXT NOT NULL,
    done_at     BIGINT NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX overrides_environment ON overrides (environment, done_at);

-- Releases gain their artifact, kind, promotion, previous release and deployed diff,
-- and two outcomes.
ALTER TABLE releases ADD COLUMN artifact_id TEXT;
ALTER TABLE releases ADD COLUMN kind TEXT NOT NULL DEFAULT 'deploy'
    CHECK (kind IN ('deploy', 'promotion', 'rollback'));
ALTER TABLE releases ADD COLUMN promotion_id TEXT;
ALTER TABLE releases ADD COLUMN previous_release_id TEXT;
ALTER TABLE releases ADD COLUMN diff_json TEXT;
ALTER TABLE releases DROP CONSTRAINT releases_outcome_check;
ALTER TABLE releases ADD CONSTRAINT releases_outcome_check
    CHECK (outcome IN ('in_progress', 'succeeded', 'failed', 'no_changes', 'rolled_back',
                       'superseded'));
CREATE INDEX releases_promotion ON releases (promotion_id);
