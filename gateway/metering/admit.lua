-- admit: reserve ARGV[2] nano-USD for request ARGV[1] until now + ARGV[3] ms.
-- KEYS: u (hash bal/res/lver), r (hash rid -> amount), rx (zset rid -> expiry ms).
--
-- Invariant: res == sum of the amounts in r, and every rid in r has its expiry in rx. After
-- expired reservations are purged, bal - res is what may still be promised, so a reservation
-- is made only when amount <= bal - res: concurrent admits can never over-reserve (a script
-- runs alone). Expiry uses the Redis server clock, so host clocks do not matter.
-- An empty rid only purges and reports (a snapshot). Re-admitting a live rid replaces it.
--
-- Returns {-1} when the balance is not loaded (the caller loads it from the ledger, retries),
-- else {1 reserved | 0 refused | 2 snapshot, available before this call, bal}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #expired > 0 then
  local freed = 0
  for _, rid in ipairs(expired) do
    freed = freed + tonumber(redis.call('HGET', KEYS[2], rid) or '0')
    redis.call('HDEL', KEYS[2], rid)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  redis.call('HINCRBY', KEYS[1], 'res', -freed)
end
local bal = tonumber(redis.call('HGET', KEYS[1], 'bal'))
local res = tonumber(redis.call('HGET', KEYS[1], 'res'))
if ARGV[1] == '' then
  return {2, bal - res, bal}
end
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local available = bal - (res - held)
local amount = tonumber(ARGV[2])
if amount > available then
  return {0, available, bal}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HINCRBY', KEYS[1], 'res', amount - held)
return {1, available, bal}
