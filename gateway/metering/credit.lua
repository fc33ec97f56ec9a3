-- credit: apply a balance change the ledger has already committed (top-up, grant, admin).
-- KEYS: u, pc (pending credits), c (marker of this reference).
-- ARGV: delta, ledger version right after the change ('' = unknown), marker ttl (s),
--       pending ttl (s), '1' when a reference was given.
--
-- Invariants:
-- - At most once per reference (the marker is written in the same atomic step).
-- - Loaded balance: the change is applied only if its version > lver; a change with a lower
--   or equal version was already in the ledger read that produced the balance.
-- - No balance loaded: the change is parked in pc, so that a load whose ledger read predates
--   it applies it (load.lua); a later load reads it from the ledger and skips it.
--   lver is never raised here: credits may arrive out of version order.
--
-- Returns 1 applied, 2 already in the loaded balance, 3 parked, 4 nothing to do, 0 replay.
if ARGV[5] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local outcome
if redis.call('EXISTS', KEYS[1]) == 1 then
  local lver = tonumber(redis.call('HGET', KEYS[1], 'lver'))
  if ARGV[2] == '' or tonumber(ARGV[2]) > lver then
    redis.call('HINCRBY', KEYS[1], 'bal', ARGV[1])
    outcome = 1
  else
    outcome = 2
  end
elseif ARGV[2] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  outcome = 3
else
  outcome = 4
end
if ARGV[5] == '1' then
  redis.call('SET', KEYS[3], '1', 'EX', ARGV[3])
end
return outcome
