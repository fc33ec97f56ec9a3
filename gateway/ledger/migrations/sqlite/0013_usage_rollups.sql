-- Usage at scale (README "Usage storage"): the reports read daily and hourly rollups instead
-- of the usage rows (PostgreSQL's 0013 has the same table; the rows are not partitioned
-- here). The covering indexes of 0003 were what the reports scanned: the rows keep the
-- indexes of the usage pages (user_time) and of a report's sub-hour edges and the exports
-- (time); spend per key reads the rollups.
DROP INDEX usage_records_time;
CREATE INDEX usage_records_time ON usage_records(created_at);
DROP INDEX usage_records_user_time;
CREATE INDEX usage_records_user_time ON usage_records(user_id, created_at DESC, request_id DESC);
DROP INDEX usage_records_key_time;
-- Buckets are UTC text like every timestamp here, grain 'hour' | 'day'; dim, grp and the ''
-- for "none": migrations/postgres/0013_usage_partitions.sql.
CREATE TABLE usage_rollups (
    dim               TEXT NOT NULL,
    grain             TEXT NOT NULL,
    bucket_at         TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    grp               TEXT NOT NULL,
    provider          TEXT NOT NULL,
    requests          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    reasoning_tokens  INTEGER NOT NULL,
    cost              INTEGER NOT NULL,
    PRIMARY KEY (dim, grain, bucket_at, user_id, grp, provider)
) WITHOUT ROWID;
WITH x AS (
    SELECT g.grain,
           CASE g.grain WHEN 'hour' THEN substr(u.created_at, 1, 13) || ':00:00.000000'
                        ELSE substr(u.created_at, 1, 10) || ' 00:00:00.000000'
           END AS bucket_at,
           u.user_id, u.key_id, u.model, u.provider, u.end_user, u.session_id, u.tags,
           u.prompt_tokens AS p, u.completion_tokens AS c, u.cached_tokens AS ca,
           u.reasoning_tokens AS r, u.cost
    FROM usage_records u CROSS JOIN (SELECT 'hour' AS grain UNION ALL SELECT 'day') g
),
d AS (
    SELECT 'total' AS dim, grain, bucket_at, '' AS user_id, '' AS grp, '' AS provider,
           p, c, ca, r, cost FROM x
    UNION ALL SELECT 'model', grain, bucket_at, user_id, model, provider, p, c, ca, r, cost
        FROM x
    UNION ALL SELECT 'key', grain, bucket_at, user_id, coalesce(key_id, ''), '',
        p, c, ca, r, cost FROM x
    UNION ALL SELECT 'end_user', grain, bucket_at, user_id, coalesce(end_user, ''), '',
        p, c, ca, r, cost FROM x
    UNION ALL SELECT 'session', grain, bucket_at, user_id, coalesce(session_id, ''), '',
        p, c, ca, r, cost FROM x
    UNION ALL SELECT 'tag', grain, bucket_at, user_id, coalesce(t.key, ''), '',
        p, c, ca, r, cost FROM x LEFT JOIN json_each(x.tags) t
)
INSERT INTO usage_rollups
SELECT dim, grain, bucket_at, user_id, grp, provider,
       count(*), sum(p), sum(c), sum(ca), sum(r), sum(cost)
FROM d GROUP BY dim, grain, bucket_at, user_id, grp, provider;
-- Quarter-hour totals for revenue per local day (PostgreSQL's 0013 says why).
INSERT INTO usage_rollups
SELECT 'total', 'quarter',
       substr(created_at, 1, 14)
           || printf('%02d', cast(substr(created_at, 15, 2) AS INTEGER) / 15 * 15)
           || ':00.000000',
       '', '', '', count(*), sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens),
       sum(reasoning_tokens), sum(cost)
FROM usage_records
GROUP BY 3
