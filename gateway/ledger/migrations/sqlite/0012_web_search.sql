-- Anthropic's web search, billed per request (gateway/server_tools.py): the requests a call
-- made (a count, not tokens) and the price each was charged at, nano-USD per 1,000 requests
-- (NULL: the model has none). Existing rows made none, so 0 and NULL describe them.
ALTER TABLE usage_records ADD COLUMN web_search_requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN price_web_search INTEGER;
-- The price book keeps it too, so a change to it is audited like any other price.
ALTER TABLE model_prices ADD COLUMN price_web_search INTEGER;
