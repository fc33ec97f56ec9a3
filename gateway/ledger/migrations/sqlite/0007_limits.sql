-- Key and user governance (README "Keys and limits"): limits and models as JSON text (read
-- with the key at authentication, cached: never a read per call), a key's caller metadata,
-- the key a rotation replaced it with, and a user's disabled flag. Period spend is summed
-- from usage_records by key (or user) and time when the balance store has no counter for it
-- (after a restart): usage_records_key_time serves the key's sum; usage_records_user_time
-- already serves the user's.
ALTER TABLE api_keys ADD COLUMN limits TEXT;
ALTER TABLE api_keys ADD COLUMN models TEXT;
ALTER TABLE api_keys ADD COLUMN metadata TEXT;
ALTER TABLE api_keys ADD COLUMN rotated_to TEXT;
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN limits TEXT;
ALTER TABLE users ADD COLUMN models TEXT;
CREATE INDEX usage_records_key_time ON usage_records(key_id, created_at);
