-- Browser sessions of the web pages (gateway/pages): the portal's users and the operator's
-- dashboard. token_hash is the SHA-256 (hex) of the cookie's random token: a copy of this
-- table signs nobody in. user_id NULL is the operator (signed in with the admin key, which
-- is not stored). Expired rows are refused when read and deleted when a session starts.
CREATE TABLE web_sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT REFERENCES users(id),
    csrf_token  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
-- "Sign out everywhere" (a password change) ends a user's sessions by user_id.
CREATE INDEX web_sessions_user ON web_sessions(user_id);
CREATE INDEX web_sessions_expiry ON web_sessions(expires_at);
