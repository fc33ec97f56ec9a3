-- The deployment whose answer a call got ("provider/upstream model", gateway/routing.py): a
-- model may be served by several. NULL on rows written before routing (their provider column
-- already names the only deployment they could have had). No report reads it.
ALTER TABLE usage_records ADD COLUMN deployment TEXT;
