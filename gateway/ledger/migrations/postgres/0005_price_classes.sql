-- Every token class a call is billed for and the unit price each was charged at (nano-USD per
-- 1M tokens; NULL: not set, charged at its fallback, gateway/pricing.py), and the overdraft:
-- the part of the cost above the call's reservation, billed all the same (so cost may exceed
-- what admission reserved, and the balance may go below zero). Existing rows had none of
-- these classes, so 0 and NULL describe them exactly. Constant defaults: no table rewrite.
-- Reports read none of these columns.
ALTER TABLE usage_records
    ADD COLUMN cache_write_tokens    bigint NOT NULL DEFAULT 0,
    ADD COLUMN cache_write_1h_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN prompt_audio_tokens   bigint NOT NULL DEFAULT 0,
    ADD COLUMN output_audio_tokens   bigint NOT NULL DEFAULT 0,
    ADD COLUMN price_cache_write     bigint,
    ADD COLUMN price_cache_write_1h  bigint,
    ADD COLUMN price_audio_input     bigint,
    ADD COLUMN price_audio_output    bigint,
    ADD COLUMN overdraft             bigint NOT NULL DEFAULT 0 CHECK (overdraft >= 0);

-- The price book keeps every unit price too, so a change to any of them is audited once
-- (gateway/price_reload.py). price_tiers: the long-context tiers as a JSON list of
-- [above_input_tokens, input, output, cached_input, cache_write, cache_write_1h,
-- audio_input, audio_output] (nano-USD integers or null), NULL when there are none.
ALTER TABLE model_prices
    ADD COLUMN price_cache_write    bigint,
    ADD COLUMN price_cache_write_1h bigint,
    ADD COLUMN price_audio_input    bigint,
    ADD COLUMN price_audio_output   bigint,
    ADD COLUMN price_tiers          text;
