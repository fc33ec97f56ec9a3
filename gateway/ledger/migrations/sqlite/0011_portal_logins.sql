-- Customer portal logins (gateway/portal): one per user at most; timestamps UTC text like 0001.
-- email_key is the case-folded email: the unique key, so two spellings of one address are one
-- login. password_hash is argon2id (PHC string). welcome_credit is the sign-up grant in
-- nano-USD, fixed at sign-up (its ledger reference is welcome:<user_id>).
CREATE TABLE portal_logins (
    user_id             TEXT PRIMARY KEY REFERENCES users(id),
    email               TEXT NOT NULL,
    email_key           TEXT NOT NULL UNIQUE,
    password_hash       TEXT NOT NULL,
    welcome_credit      INTEGER NOT NULL DEFAULT 0 CHECK (welcome_credit >= 0),
    created_at          TEXT NOT NULL,
    password_changed_at TEXT NOT NULL
);

-- Invitations for invite-only sign-up: the token is shown once, only its SHA-256 is kept.
-- used_at/used_by are set once, in the sign-up's transaction (an invite admits one user).
-- email_key, when set, is the only (case-folded) address the invite admits.
CREATE TABLE portal_invites (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    email       TEXT,
    email_key   TEXT,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    used_at     TEXT,
    used_by     TEXT REFERENCES users(id)
);

-- Failed portal log-ins, per scope ('email:<email_key>' or 'addr:<client address>'), for the
-- throttle; rows older than the window are deleted as new ones arrive.
CREATE TABLE login_failures (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    scope      TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX login_failures_scope ON login_failures(scope, created_at);

-- A scope that failed too often is locked until lock_ends_at: its log-ins are refused
-- without checking the password.
CREATE TABLE login_lockouts (
    scope        TEXT PRIMARY KEY,
    lock_ends_at TEXT NOT NULL
);
