-- The sums of the usage records per bucket and dimension that the reports read instead of
-- the rows (gateway/ledger/rollups.py), written in the transaction that inserts the records,
-- so every bucket equals the sum of its rows exactly. grain: 'hour' | 'day' (UTC), and
-- 'quarter' (15 minutes) for the total. dim, and the columns each uses ('' elsewhere):
--   total     one row per bucket, no user (revenue per day in any time zone)
--   call      user_id, key_id ('' without a key), provider, model: every call once
--   end_user, session
--             user_id, grp the value: only the calls that have one
--   tag       user_id, grp the tag: once per tag of a call
--   tagged    user_id: the calls with at least one tag, once
-- A settlement writes two rows per call plus two per attribute it has: the calls without an
-- attribute are the call sums less the attribute's. The retention never drops rollups.
-- Replaces the table of an earlier 0013 (one row per dimension and call, five times the
-- writes), rebuilt from the rows.
DROP TABLE IF EXISTS usage_rollups;
CREATE TABLE usage_rollups (
    dim               text NOT NULL,
    grain             text NOT NULL,
    bucket_at         timestamptz NOT NULL,
    user_id           text NOT NULL,
    key_id            text NOT NULL,
    provider          text NOT NULL,
    model             text NOT NULL,
    grp               text NOT NULL,
    requests          bigint NOT NULL,
    prompt_tokens     bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    cached_tokens     bigint NOT NULL,
    reasoning_tokens  bigint NOT NULL,
    cost              bigint NOT NULL,
    PRIMARY KEY (dim, grain, bucket_at, user_id, key_id, provider, model, grp)
);

INSERT INTO usage_rollups
SELECT d.dim, g.grain, date_trunc(g.grain, u.created_at, 'UTC'), d.user_id, d.key_id,
       d.provider, d.model, d.grp, count(*), sum(u.prompt_tokens), sum(u.completion_tokens),
       sum(u.cached_tokens), sum(u.reasoning_tokens), sum(u.cost)
FROM usage_records u
CROSS JOIN (VALUES ('hour'), ('day')) g(grain)
CROSS JOIN LATERAL (
    VALUES ('total', '', '', '', '', ''),
           ('call', u.user_id, coalesce(u.key_id, ''), u.provider, u.model, '')
    UNION ALL SELECT 'end_user', u.user_id, '', '', '', u.end_user WHERE u.end_user IS NOT NULL
    UNION ALL SELECT 'session', u.user_id, '', '', '', u.session_id
        WHERE u.session_id IS NOT NULL
    UNION ALL SELECT 'tagged', u.user_id, '', '', '', '' WHERE u.tags IS NOT NULL
    UNION ALL SELECT 'tag', u.user_id, '', '', '', t.key FROM json_each(u.tags) t
) d(dim, user_id, key_id, provider, model, grp)
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;

INSERT INTO usage_rollups
SELECT 'total', 'quarter',
       date_trunc('hour', created_at, 'UTC')
           + floor(extract(minute FROM created_at AT TIME ZONE 'UTC') / 15) * interval '15 min',
       '', '', '', '', '', count(*), sum(prompt_tokens), sum(completion_tokens),
       sum(cached_tokens), sum(reasoning_tokens), sum(cost)
FROM usage_records
GROUP BY 3;
