-- A session opened by signing in with an API token records that token: it expires no
-- later than the token and ends when the token is revoked. NULL for password sign-ins.
ALTER TABLE sessions ADD COLUMN token_id TEXT REFERENCES api_tokens (id) ON DELETE CASCADE;
