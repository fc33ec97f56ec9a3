-- Who and what a call was for (gateway/proxy/attribution.py): the request's end user
-- (safety_identifier or user), its tags and its session. tags is a JSON object whose keys are
-- the tags ({"team:search": 1}), NULL when there are none: json_each(tags) lists them as
-- ``key`` in SQLite and PostgreSQL alike, so the tag report is one statement for both (json,
-- not jsonb: json_each is the function name both databases share). Nullable columns without
-- defaults: no table rewrite, and the usage insert stays one row.
ALTER TABLE usage_records
    ADD COLUMN end_user text,
    ADD COLUMN tags json,
    ADD COLUMN session_id text;
-- GET /admin/users pages newest first by (created_at, id) (gateway/ledger/directory.py).
CREATE INDEX users_created ON users(created_at, id);
