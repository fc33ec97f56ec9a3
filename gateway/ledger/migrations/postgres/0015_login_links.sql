-- One-time links an operator gives a user to set their portal email and password (a first
-- login for an existing user, or a password reset); timestamptz timestamps. Only the token's
-- SHA-256 is kept. used_at is set once, in the transaction that sets the login; a new link for
-- a user sets used_at on that user's older unused ones (one live link per user).
CREATE TABLE portal_login_links (
    id          text PRIMARY KEY,
    token_hash  text NOT NULL UNIQUE,
    user_id     text NOT NULL REFERENCES users(id),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX portal_login_links_user ON portal_login_links(user_id);
