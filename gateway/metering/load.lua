-- load: install a balance read from the ledger, (ARGV[1] bal, ARGV[2] ledger version).
-- KEYS: u, r, pc (pending credits: hash ledger version -> delta), cv (versions applied).
--
-- Invariant: a load never overwrites a live balance. Redis is ahead of the ledger (settled
-- usage is debited here at once and reaches the ledger later through the stream), so an
-- existing hash always wins over any read of the ledger, however fresh.
-- A credit committed after the ledger read but reported before this load (credit.lua found
-- no hash) waits in pc; exactly those with a version above the loaded one are not in the read
-- balance and are applied here, and recorded in cv, so a stale load can never lose a credit
-- and a replay of one can never count it twice.
-- res is recomputed from r, which keeps res == sum(r) even if only the hash was lost.
--
-- Returns 1 when installed, 0 when a balance was already there.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local ver = tonumber(ARGV[2])
local bal = tonumber(ARGV[1])
redis.call('DEL', KEYS[4])
local pending = redis.call('HGETALL', KEYS[3])
for i = 1, #pending, 2 do
  if tonumber(pending[i]) > ver then
    bal = bal + tonumber(pending[i + 1])
    redis.call('SADD', KEYS[4], pending[i])
  end
end
redis.call('DEL', KEYS[3])
local res = 0
for _, amount in ipairs(redis.call('HVALS', KEYS[2])) do
  res = res + tonumber(amount)
end
redis.call('HSET', KEYS[1], 'bal', string.format('%d', bal), 'res', string.format('%d', res),
  'lver', ARGV[2])
return 1
