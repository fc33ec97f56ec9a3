-- One-time links an operator gives a user to set their portal email and password (a first
-- login for an existing user, or a password reset); timestamps UTC text like 0001. Only the
-- token's SHA-256 is kept. used_at is set once, in the transaction that sets the login; a new
-- link for a user sets used_at on that user's older unused ones (one live link per user).
CREATE TABLE portal_login_links (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL REFERENCES users(id),
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX portal_login_links_user ON portal_login_links(user_id);
