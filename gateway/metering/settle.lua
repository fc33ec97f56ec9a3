-- settle: debit one served call, drop its reservation and append it to the usage stream.
-- KEYS: u, r, rx, s (marker of this request id), stream, then q, qh, qx, qw, qt of each quota
-- scope the call counts in (its key's, its user's: see admit.lua), counted when q exists.
-- ARGV: rid, -cost (negative, as a string: HINCRBY stays exact), record JSON, marker ttl (s),
-- the tokens the call used (tpm: replaces what it reserved, while it is in the window).
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
for k = 6, #KEYS, 5 do
  if redis.call('EXISTS', KEYS[k]) == 1 then
    local own = redis.call('HGET', KEYS[k + 1], ARGV[1])
    if own then
      redis.call('HDEL', KEYS[k + 1], ARGV[1])
      redis.call('ZREM', KEYS[k + 2], ARGV[1])
      redis.call('HINCRBY', KEYS[k], 'res', -tonumber(own))
    end
    redis.call('HINCRBY', KEYS[k], 'spent', string.format('%d', -tonumber(ARGV[2])))
    local prior = redis.call('HGET', KEYS[k + 4], ARGV[1])
    if prior then
      redis.call('HSET', KEYS[k + 4], ARGV[1], ARGV[5])
      redis.call('HINCRBY', KEYS[k], 'tok', tonumber(ARGV[5]) - tonumber(prior))
    end
  end
end
redis.call('XADD', KEYS[5], '*', 'r', ARGV[3])
redis.call('SET', KEYS[4], '1', 'EX', ARGV[4])
return {1, bal}
