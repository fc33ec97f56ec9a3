-- Every token class a call is billed for and the unit price each was charged at (nano-USD per
-- 1M tokens; NULL: not set, charged at its fallback, gateway/pricing.py), and the overdraft:
-- the part of the cost above the call's reservation, billed all the same (so cost may exceed
-- what admission reserved, and the balance may go below zero). Existing rows had none of
-- these classes, so 0 and NULL describe them exactly. Reports read none of these columns.
ALTER TABLE usage_records ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN prompt_audio_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN output_audio_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN price_cache_write INTEGER;
ALTER TABLE usage_records ADD COLUMN price_cache_write_1h INTEGER;
ALTER TABLE usage_records ADD COLUMN price_audio_input INTEGER;
ALTER TABLE usage_records ADD COLUMN price_audio_output INTEGER;
ALTER TABLE usage_records ADD COLUMN overdraft INTEGER NOT NULL DEFAULT 0 CHECK (overdraft >= 0);
