-- Usage at scale (README "Usage storage"): usage_records partitioned by month of created_at,
-- old months dropped whole by the retention setting (gateway/ledger/partitions.py); the
-- rollups the reports read instead of the rows: 0016.
--
-- One usage record per request id. A partitioned table's unique indexes must contain the
-- partition key, so the primary key is (request_id, created_at): a replayed record (the same
-- record from a spill file or the Redis stream carries its created_at) conflicts with itself,
-- even between concurrent batches. A record of the same request with another created_at is
-- refused by the writer (gateway/ledger/postgres.py, WRITE_USAGE): it locks the batch's users
-- first, in a statement of its own, then looks every request id up in every partition with a
-- fresh snapshot; a request id belongs to one user, so no other batch can write it meanwhile.
-- The unique ledger reference 'usage:<request id>' is checked too: it outlives the
-- partitions the retention drops, so a charged call is never recorded or debited twice.
--
-- Columns are ordered so that no row pays alignment padding: the 8-byte values first, then
-- the texts. The covering indexes of 0003 are gone (the reports read the rollups); what stays
-- serves the usage pages (user_time), the rows at a report's sub-hour edges and the exports
-- (time), and the duplicate checks (the primary key).
ALTER TABLE usage_records RENAME TO usage_records_unpartitioned;
ALTER TABLE usage_records_unpartitioned RENAME CONSTRAINT usage_records_pkey
    TO usage_records_unpartitioned_pkey;
DROP INDEX usage_records_time;
DROP INDEX usage_records_user_time;
DROP INDEX usage_records_key_time;

CREATE TABLE usage_records (
    created_at            timestamptz NOT NULL,
    prompt_tokens         bigint NOT NULL,
    completion_tokens     bigint NOT NULL,
    cached_tokens         bigint NOT NULL,
    reasoning_tokens      bigint NOT NULL,
    price_input           bigint NOT NULL,
    price_cached_input    bigint,
    price_output          bigint NOT NULL,
    cost                  bigint NOT NULL CHECK (cost >= 0),
    latency_ms            bigint NOT NULL,
    cache_write_tokens    bigint NOT NULL DEFAULT 0,
    cache_write_1h_tokens bigint NOT NULL DEFAULT 0,
    prompt_audio_tokens   bigint NOT NULL DEFAULT 0,
    output_audio_tokens   bigint NOT NULL DEFAULT 0,
    price_cache_write     bigint,
    price_cache_write_1h  bigint,
    price_audio_input     bigint,
    price_audio_output    bigint,
    overdraft             bigint NOT NULL DEFAULT 0 CHECK (overdraft >= 0),
    web_search_requests   bigint NOT NULL DEFAULT 0,
    price_web_search      bigint,
    request_id            text NOT NULL,
    user_id               text NOT NULL,
    key_id                text,
    model                 text NOT NULL,
    provider              text NOT NULL,
    endpoint              text NOT NULL,
    status                text NOT NULL,
    usage_source          text NOT NULL,
    deployment            text,
    end_user              text,
    tags                  json,
    session_id            text,
    PRIMARY KEY (request_id, created_at),
    CONSTRAINT usage_records_user_fk FOREIGN KEY (user_id) REFERENCES users(id)
) PARTITION BY RANGE (created_at);
-- Without request_id: ties on created_at are rare, and a page sorts them by request id as it
-- reads (incremental sort), for a third of the index's size.
CREATE INDEX usage_records_user_time ON usage_records(user_id, created_at DESC);
CREATE INDEX usage_records_time ON usage_records(created_at);

-- Creates the partition of the month holding ``month`` (UTC) unless it exists; true when it
-- created it. CREATE TABLE ... PARTITION OF would lock the whole table against reads and
-- writes; a table attached afterwards locks it only against other schema changes, so calls
-- keep settling and reports keep answering while a month is added. The indexes, the checks
-- and the foreign key of the parent are created on the partition by ATTACH.
CREATE FUNCTION usage_records_add_month(month timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := date_trunc('month', month, 'UTC');
    -- 40 days on from the first of a month is always in the next one, whatever the
    -- session's time zone does to day arithmetic.
    hi timestamptz := date_trunc('month', lo + interval '40 days', 'UTC');
    name text := 'usage_records_' || to_char(lo AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- Two processes adding the same month: the second waits, then finds the table (a lookup
    -- may answer from a catalog cache older than the lock, so the create is the real test).
    PERFORM pg_advisory_xact_lock(hashtextextended('gateway:usage-partitions', 0));
    BEGIN
        EXECUTE format(
            'CREATE TABLE %I (LIKE usage_records INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
            name);
    EXCEPTION WHEN duplicate_table THEN
        RETURN false;
    END;
    EXECUTE format('ALTER TABLE usage_records ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   name, lo, hi);
    RETURN true;
END
$$;

SELECT usage_records_add_month(m)
FROM (SELECT DISTINCT date_trunc('month', created_at, 'UTC') AS m FROM usage_records_unpartitioned
      UNION SELECT now() UNION SELECT now() + interval '1 month') months;

INSERT INTO usage_records (
    created_at, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, price_input,
    price_cached_input, price_output, cost, latency_ms, cache_write_tokens,
    cache_write_1h_tokens, prompt_audio_tokens, output_audio_tokens, price_cache_write,
    price_cache_write_1h, price_audio_input, price_audio_output, overdraft,
    web_search_requests, price_web_search, request_id, user_id, key_id, model, provider,
    endpoint, status, usage_source, deployment, end_user, tags, session_id)
SELECT
    created_at, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, price_input,
    price_cached_input, price_output, cost, latency_ms, cache_write_tokens,
    cache_write_1h_tokens, prompt_audio_tokens, output_audio_tokens, price_cache_write,
    price_cache_write_1h, price_audio_input, price_audio_output, overdraft,
    web_search_requests, price_web_search, request_id, user_id, key_id, model, provider,
    endpoint, status, usage_source, deployment, end_user, tags, session_id
FROM usage_records_unpartitioned;

DROP TABLE usage_records_unpartitioned;
