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
    schema_version  INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    rejected_by     TEXT,
    rejected_at     INTEGER,
    rejected_reason TEXT
);

-- The state of each stack environment (`environments/*.toml` with a [stack]).
CREATE TABLE environments (
    name                 TEXT PRIMARY KEY,
    frozen_by            TEXT,
    frozen_at            INTEGER,
    frozen_reason        TEXT,
    hold_by              TEXT,
    hold_at              INTEGER,
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
    requested_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    diff_json     TEXT NOT NULL,
    diff_hash     TEXT NOT NULL,
    release_id    TEXT,
    change_set_id TEXT,
    detail        TEXT,
    finished_at   INTEGER
);
CREATE INDEX promotions_status ON promotions (status, requested_at);

CREATE TABLE approvals (
    promotion_id TEXT NOT NULL REFERENCES promotions (id),
    decided_by   TEXT NOT NULL,
    decided_at   INTEGER NOT NULL,
    decision     TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX approvals_promotion ON approvals (promotion_id, decided_at);

-- Guards an operator cleared or an admin overrode: who, when, why.
CREATE TABLE overrides (
    environment TEXT NOT NULL,
    action      TEXT NOT NULL,
    done_by     TEXT NOT NULL,
    done_at     INTEGER NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX overrides_environment ON overrides (environment, done_at);

-- Releases gain their artifact, kind, promotion, previous release and deployed diff,
-- and two outcomes. SQLite cannot alter a CHECK: the table is rebuilt (foreign keys are
-- off while migrating, and nothing refers to releases).
CREATE TABLE releases_new (
    id                  TEXT PRIMARY KEY,
    environment         TEXT NOT NULL,
    stack               TEXT NOT NULL,
    image               TEXT NOT NULL,
    template_hash       TEXT NOT NULL,
    deployed_by         TEXT NOT NULL,
    started_at          INTEGER NOT NULL,
    finished_at         INTEGER,
    change_set_id       TEXT,
    outcome             TEXT NOT NULL
                        CHECK (outcome IN ('in_progress', 'succeeded', 'failed', 'no_changes',
                                           'rolled_back', 'superseded')),
    detail              TEXT,
    artifact_id         TEXT,
    kind                TEXT NOT NULL DEFAULT 'deploy'
                        CHECK (kind IN ('deploy', 'promotion', 'rollback')),
    promotion_id        TEXT,
    previous_release_id TEXT,
    diff_json           TEXT
);
INSERT INTO releases_new (id, environment, stack, image, template_hash, deployed_by,
                          started_at, finished_at, change_set_id, outcome, detail)
SELECT id, environment, stack, image, template_hash, deployed_by, started_at, finished_at,
       change_set_id, outcome, detail
FROM releases;
DROP TABLE releases;
ALTER TABLE releases_new RENAME TO releases;
CREATE INDEX releases_environment ON releases (environment, started_at);
CREATE INDEX releases_promotion ON releases (promotion_id);
