-- settle: debit one served call, drop its reservation and append it to the usage stream.
-- KEYS: u, r, rx, s (marker of this request id), stream.
-- ARGV: rid, -cost (negative, as a string: HINCRBY stays exact), record JSON, marker ttl (s).
--
-- Invariant: per request id, the debit and the stream entry happen together and at most once
-- (the marker is written in the same atomic step). A reservation that already expired is not
-- required: a served call is always billed. bal may go below zero (cost above the reserve).
--
-- Returns {0} when already settled, {-1} when the balance is not loaded (the caller loads it
-- and retries), else {1, bal after the debit}.
if redis.call('EXISTS', KEYS[4]) == 1 then
  return {0}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'res', -tonumber(held))
end
local bal = redis.call('HINCRBY', KEYS[1], 'bal', ARGV[2])
redis.call('XADD', KEYS[5], '*', 'r', ARGV[3])
redis.call('SET', KEYS[4], '1', 'EX', ARGV[4])
return {1, bal}
