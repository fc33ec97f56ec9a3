-- Key and user governance (README "Keys and limits"): limits and models as JSON text (read
-- with the key at authentication, cached: never a read per call), a key's caller metadata,
-- the key a rotation replaced it with, and a user's disabled flag. Nullable columns and a
-- constant default: no table rewrite. Period spend is summed from usage_records by key (or
-- user) and time when the balance store has no counter for it (after a Redis loss):
-- usage_records_key_time serves the key's sum; usage_records_user_time the user's.
ALTER TABLE api_keys ADD COLUMN limits text;
ALTER TABLE api_keys ADD COLUMN models text;
ALTER TABLE api_keys ADD COLUMN metadata text;
ALTER TABLE api_keys ADD COLUMN rotated_to text;
ALTER TABLE users ADD COLUMN disabled boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN limits text;
ALTER TABLE users ADD COLUMN models text;
CREATE INDEX usage_records_key_time ON usage_records(key_id, created_at);
