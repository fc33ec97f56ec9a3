-- Who and what a call was for (gateway/proxy/attribution.py): the request's end user
-- (safety_identifier or user), its tags and its session. tags is a JSON object whose keys are
-- the tags ({"team:search": 1}), NULL when there are none: json_each(tags) lists them as
-- ``key`` in SQLite and PostgreSQL alike, so the tag report is one statement for both.
-- Nullable columns without defaults: no table rewrite, and the usage insert stays one row.
ALTER TABLE usage_records ADD COLUMN end_user TEXT;
ALTER TABLE usage_records ADD COLUMN tags TEXT;
ALTER TABLE usage_records ADD COLUMN session_id TEXT;
-- GET /admin/users pages newest first by (created_at, id) (gateway/ledger/directory.py).
CREATE INDEX users_created ON users(created_at, id);
