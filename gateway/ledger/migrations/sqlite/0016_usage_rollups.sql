-- The usage rollups the reports read (dimensions and why: PostgreSQL's 0016). Buckets are
-- UTC text like every timestamp here. Replaces the table of an earlier 0013, rebuilt from
-- the rows.
DROP TABLE IF EXISTS usage_rollups;
CREATE TABLE usage_rollups (
    dim               TEXT NOT NULL,
    grain             TEXT NOT NULL,
    bucket_at         TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    key_id            TEXT NOT NULL,
    provider          TEXT NOT NULL,
    model             TEXT NOT NULL,
    grp               TEXT NOT NULL,
    requests          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    reasoning_tokens  INTEGER NOT NULL,
    cost              INTEGER NOT NULL,
    PRIMARY KEY (dim, grain, bucket_at, user_id, key_id, provider, model, grp)
) WITHOUT ROWID;
WITH x AS (
    SELECT g.grain,
           CASE g.grain WHEN 'hour' THEN substr(u.created_at, 1, 13) || ':00:00.000000'
                        ELSE substr(u.created_at, 1, 10) || ' 00:00:00.000000'
           END AS b,
           u.user_id, u.key_id, u.model, u.provider, u.end_user, u.session_id, u.tags,
           u.prompt_tokens AS p, u.completion_tokens AS c, u.cached_tokens AS ca,
           u.reasoning_tokens AS r, u.cost
    FROM usage_records u CROSS JOIN (SELECT 'hour' AS grain UNION ALL SELECT 'day') g
),
d AS (
    SELECT 'total' AS dim, grain, b, '' AS user_id, '' AS key_id, '' AS provider,
           '' AS model, '' AS grp, p, c, ca, r, cost FROM x
    UNION ALL SELECT 'call', grain, b, user_id, coalesce(key_id, ''), provider, model, '',
        p, c, ca, r, cost FROM x
    UNION ALL SELECT 'end_user', grain, b, user_id, '', '', '', end_user, p, c, ca, r, cost
        FROM x WHERE end_user IS NOT NULL
    UNION ALL SELECT 'session', grain, b, user_id, '', '', '', session_id, p, c, ca, r, cost
        FROM x WHERE session_id IS NOT NULL
    UNION ALL SELECT 'tagged', grain, b, user_id, '', '', '', '', p, c, ca, r, cost
        FROM x WHERE tags IS NOT NULL
    UNION ALL SELECT 'tag', grain, b, user_id, '', '', '', t.key, p, c, ca, r, cost
        FROM x JOIN json_each(x.tags) t
)
INSERT INTO usage_rollups
SELECT dim, grain, b, user_id, key_id, provider, model, grp,
       count(*), sum(p), sum(c), sum(ca), sum(r), sum(cost)
FROM d GROUP BY dim, grain, b, user_id, key_id, provider, model, grp;
INSERT INTO usage_rollups
SELECT 'total', 'quarter',
       substr(created_at, 1, 14)
           || printf('%02d', cast(substr(created_at, 15, 2) AS INTEGER) / 15 * 15)
           || ':00.000000',
       '', '', '', '', '', count(*), sum(prompt_tokens), sum(completion_tokens),
       sum(cached_tokens), sum(reasoning_tokens), sum(cost)
FROM usage_records
GROUP BY 3
