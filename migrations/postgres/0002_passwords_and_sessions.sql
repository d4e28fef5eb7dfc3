-- Web sign-in with a name and password, and server-side sessions.

-- An argon2id PHC string; NULL for users who sign in only with API tokens.
ALTER TABLE users ADD COLUMN password_hash TEXT;

-- A session is a random cookie value; only its SHA-256 is kept, like tokens.
CREATE TABLE sessions (
    id_hash       TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
