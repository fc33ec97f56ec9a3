-- credit: apply a balance change the ledger has already committed (top-up, grant, refund,
-- admin adjustment), identified by the user's ledger version right after it.
-- KEYS: u, pc (pending credits: hash version -> delta), cv (set of versions applied since load).
-- ARGV: delta, ledger version right after the change, pending ttl (s).
--
-- Invariants (a user's ledger versions are unique per entry and never reused):
-- - At most once per version: cv holds every version applied to the loaded balance, so a
--   replay (a retried caller, the reconciler, a spilled credit) changes nothing.
-- - Loaded balance: the change is applied only if its version > lver; a change with a lower
--   or equal version was already in the ledger read that produced the balance.
-- - No balance loaded: the change is parked in pc (a hash keyed by version, so parking twice
--   is harmless), so that a load whose ledger read predates it applies it (load.lua); a later
--   load reads it from the ledger and skips it. lver is never raised here: credits may
--   arrive out of version order.
--
-- Returns 1 applied, 2 already in the loaded balance, 3 parked, 0 replay.
local version = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 3
end
if version <= tonumber(redis.call('HGET', KEYS[1], 'lver')) then
  return 2
end
if redis.call('SADD', KEYS[3], ARGV[2]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'bal', ARGV[1])
return 1
