-- Quarry's first schema, Postgres dialect: the same tables, columns and constraints as
-- migrations/sqlite/0001_init.sql, so every repository runs the same SQL on both.
-- Conventions (see the SQLite file): TEXT ids, BIGINT milliseconds since the Unix epoch,
-- JSON as TEXT, DOUBLE PRECISION for reals; sqlx's Any driver decodes these on both.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('analyst', 'lead', 'operator', 'admin')),
    created_at  BIGINT NOT NULL
);

-- Only a SHA-256 of each token is kept: a leaked database does not leak tokens.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL UNIQUE,
    label       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE datasets (
    id            TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    format        TEXT NOT NULL CHECK (format IN ('csv', 'parquet', 'ndjson')),
    blob_key      TEXT NOT NULL,
    row_count     BIGINT NOT NULL,
    byte_count    BIGINT NOT NULL,
    columns_json  TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    UNIQUE (owner_id, name)
);

-- A job is the user-visible record; its delivery lives in queue_messages.
CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    owner_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    dataset_id        TEXT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    analysis_json     TEXT NOT NULL,
    status            TEXT NOT NULL
                      CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts          BIGINT NOT NULL DEFAULT 0,
    progress          DOUBLE PRECISION NOT NULL DEFAULT 0,
    error             TEXT,
    cancel_requested  BIGINT NOT NULL DEFAULT 0,
    dead_letter       BIGINT NOT NULL DEFAULT 0,
    worker_id         TEXT,
    created_at        BIGINT NOT NULL,
    started_at        BIGINT,
    finished_at       BIGINT
);
CREATE INDEX jobs_owner_status ON jobs (owner_id, status, created_at);
CREATE INDEX jobs_dataset ON jobs (dataset_id);

-- Exactly one result per job: the primary key makes a second commit impossible.
CREATE TABLE job_results (
    job_id        TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    blob_key      TEXT NOT NULL,
    row_count     BIGINT NOT NULL,
    byte_count    BIGINT NOT NULL,
    columns_json  TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- The embedded job queue, with SQS semantics: a message is invisible while leased
-- (visible_at in the future), every receive counts, and a message received more than
-- the queue's max_attempts times is dead-lettered (dead_at set) instead of delivered.
CREATE TABLE queue_messages (
    id             TEXT PRIMARY KEY,
    queue          TEXT NOT NULL,
    body           TEXT NOT NULL,
    sent_at        BIGINT NOT NULL,
    visible_at     BIGINT NOT NULL,
    receive_count  BIGINT NOT NULL DEFAULT 0,
    receipt        TEXT,
    dead_at        BIGINT
);
CREATE INDEX queue_messages_ready ON queue_messages (queue, dead_at, visible_at);

-- Workers register themselves so that any process (server, orchestrator) sees the fleet.
CREATE TABLE workers (
    id            TEXT PRIMARY KEY,
    state         TEXT NOT NULL CHECK (state IN ('starting', 'running', 'exited')),
    launched_at   BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    exited_at     BIGINT,
    detail        TEXT
);
CREATE INDEX workers_state ON workers (state);

-- Time series for the dashboards (the cloud sends the same samples to CloudWatch).
CREATE TABLE metric_samples (
    name         TEXT NOT NULL,
    environment  TEXT NOT NULL,
    at           BIGINT NOT NULL,
    value        DOUBLE PRECISION NOT NULL
);
CREATE INDEX metric_samples_series ON metric_samples (environment, name, at);

-- What the orchestrator decided last, for GET /api/v1/system.
CREATE TABLE orchestrator_decisions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    visible     BIGINT NOT NULL,
    in_flight   BIGINT NOT NULL,
    running     BIGINT NOT NULL,
    starting    BIGINT NOT NULL,
    launch      BIGINT NOT NULL,
    reason      TEXT NOT NULL
);
