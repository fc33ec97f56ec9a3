-- Usage at scale (README "Usage storage"): the reports read daily and hourly rollups instead
-- of the usage rows (0016; the rows are not partitioned here). The covering indexes of 0003
-- were what the reports scanned: the rows keep the indexes of the usage pages (user_time) and
-- of a report's sub-hour edges and the exports (time); spend per key reads the rollups.
DROP INDEX usage_records_time;
CREATE INDEX usage_records_time ON usage_records(created_at);
DROP INDEX usage_records_user_time;
CREATE INDEX usage_records_user_time ON usage_records(user_id, created_at DESC, request_id DESC);
DROP INDEX usage_records_key_time
