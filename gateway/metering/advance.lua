-- advance: move a loaded balance's lver forward once the reconciler has checked that every
-- credit-like ledger entry up to the new version is applied (keeps cv small).
-- KEYS: u, cv.
-- ARGV: lver the reconciler read, new lver, then the versions of every non-usage entry in
--       (old lver, new lver] that the ledger holds.
--
-- Invariant: after this, a credit with version <= new lver is treated as already in the
-- balance (credit.lua), which is true only if each such credit was applied: so lver moves
-- only when it is still the one read and every listed version is in cv. Usage entries never
-- pass through credit.lua, so they need not be listed.
--
-- Returns 1 advanced, 0 nothing done (balance gone, lver moved, or a credit not yet applied).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('HGET', KEYS[1], 'lver') ~= ARGV[1] then
  return 0
end
for i = 3, #ARGV do
  if redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 0 then
    return 0
  end
end
local new = tonumber(ARGV[2])
for _, v in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if tonumber(v) <= new then
    redis.call('SREM', KEYS[2], v)
  end
end
redis.call('HSET', KEYS[1], 'lver', ARGV[2])
return 1
