-- Releases: every `quarry stack deploy`, what it put where, by whom, and how it ended.
CREATE TABLE releases (
    id              TEXT PRIMARY KEY,
    environment     TEXT NOT NULL,
    stack           TEXT NOT NULL,
    image           TEXT NOT NULL,
    template_hash   TEXT NOT NULL,
    deployed_by     TEXT NOT NULL,
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    change_set_id   TEXT,
    outcome         TEXT NOT NULL
                    CHECK (outcome IN ('in_progress', 'succeeded', 'failed', 'no_changes')),
    detail          TEXT
);
CREATE INDEX releases_environment ON releases (environment, started_at);
