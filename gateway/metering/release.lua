-- release: drop the reservation of request ARGV[1] (the call will not be settled).
-- KEYS: u, r, rx.
-- Invariant: res == sum of the amounts in r (the amount leaves both together).
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held then
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'res', -tonumber(held))
end
return 1
