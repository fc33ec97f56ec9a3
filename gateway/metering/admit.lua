-- admit: reserve ARGV[2] nano-USD for request ARGV[1] until now + ARGV[3] ms, counting
-- ARGV[4] tokens against ARGV[5] quotas (gateway/metering/quota.py), all or nothing.
-- KEYS: u (hash bal/res/lver), r (hash rid -> amount), rx (zset rid -> expiry ms), then per
-- quota: q (hash p/spent/res/tok), qh (hash rid -> held amount), qx (zset rid -> expiry ms),
-- qw (zset rid -> admitted ms: the sliding log of the last 60 s), qt (hash rid -> tokens).
-- ARGV per quota, from 6: budget, period as '<kind>:<start s>', rpm, tpm, max_concurrent, seed
-- ('' = none; the period's spend read from the ledger, used when q is missing or counts another
-- period).
--
-- Invariant: res == sum of the amounts in r, and every rid in r has its expiry in rx; per
-- quota likewise res == sum(qh), tok == sum(qt), every rid of qt is in qw. After expired
-- reservations are purged, bal - res is what may still be promised, so a reservation is made
-- only when amount <= bal - res and every quota has room: concurrent admits in any number of
-- processes can never pass a balance or a limit (a script runs alone). Expiry and the window
-- use the Redis server clock, so host clocks do not matter. The rate windows are a sliding log
-- in hand-written Lua because they must run inside this one atomic step (no library can).
-- An empty rid only purges and reports (a snapshot). Re-admitting a live rid replaces it.
--
-- Returns {-1} when the balance is not loaded (the caller loads it from the ledger, retries),
-- {-2, i} when budgeted quota i has no counter and no seed (the caller reads its spend, retries),
-- {3, i, limit, retry ms (-1: never)} when quota i refused,
-- else {1 reserved | 0 refused | 2 snapshot, available before this call, bal, then per quota
-- spent, res, requests, tokens, in flight, ms until the oldest request leaves the window}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function purge(hash, zset, counter, field, upto)
  local gone = redis.call('ZRANGEBYSCORE', zset, '-inf', upto)
  if #gone > 0 then
    local freed = 0
    for _, rid in ipairs(gone) do
      freed = freed + tonumber(redis.call('HGET', hash, rid) or '0')
      redis.call('HDEL', hash, rid)
    end
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', upto)
    redis.call('HINCRBY', counter, field, -freed)
  end
end
purge(KEYS[2], KEYS[3], KEYS[1], 'res', now)
local rid = ARGV[1]
local amount = tonumber(ARGV[2])
local tokens = tonumber(ARGV[4] or '0')
local quotas = {}
for i = 1, tonumber(ARGV[5] or '0') do
  local k, a = 3 + (i - 1) * 5, 5 + (i - 1) * 6
  local s = {q = KEYS[k + 1], qh = KEYS[k + 2], qx = KEYS[k + 3], qw = KEYS[k + 4],
    qt = KEYS[k + 5], budget = tonumber(ARGV[a + 1]), rpm = tonumber(ARGV[a + 3]),
    tpm = tonumber(ARGV[a + 4]), conc = tonumber(ARGV[a + 5])}
  local kind, start = string.match(ARGV[a + 2], '^(%w*):(%d+)$')
  start = tonumber(start)
  if redis.call('EXISTS', s.q) == 0 then
    if s.budget and ARGV[a + 6] == '' then
      return {-2, i}
    end
    local seed = ARGV[a + 6] ~= '' and ARGV[a + 6] or '0'
    local counted = s.budget and kind or ''
    redis.call('HSET', s.q, 'p', start, 'pk', counted, 'spent', seed, 'res', '0', 'tok', '0')
  elseif s.budget then
    -- The spend counts one period of one kind: a budget just set on a limited scope, a
    -- changed period or a new one is counted from the ledger (a caller behind on the clock
    -- does not move it back).
    local had = redis.call('HMGET', s.q, 'p', 'pk')
    if had[2] ~= kind or tonumber(had[1]) < start then
      if ARGV[a + 6] == '' then
        return {-2, i}
      end
      redis.call('HSET', s.q, 'p', start, 'pk', kind, 'spent', ARGV[a + 6])
    end
  end
  purge(s.qh, s.qx, s.q, 'res', now)
  purge(s.qt, s.qw, s.q, 'tok', now - 60000)
  quotas[i] = s
end
local function oldest_ms(s)
  local first = redis.call('ZRANGE', s.qw, 0, 0, 'WITHSCORES')
  if #first == 0 then return 0 end
  return math.max(0, tonumber(first[2]) + 60000 - now)
end
local function counters(reply)
  for _, s in ipairs(quotas) do
    local h = redis.call('HMGET', s.q, 'spent', 'res', 'tok')
    table.insert(reply, tonumber(h[1]))
    table.insert(reply, tonumber(h[2]))
    table.insert(reply, redis.call('ZCARD', s.qw))
    table.insert(reply, tonumber(h[3]))
    table.insert(reply, redis.call('HLEN', s.qh))
    table.insert(reply, oldest_ms(s))
  end
  return reply
end
local bal = tonumber(redis.call('HGET', KEYS[1], 'bal'))
local res = tonumber(redis.call('HGET', KEYS[1], 'res'))
if rid == '' then
  return counters({2, bal - res, bal})
end
local held = tonumber(redis.call('HGET', KEYS[2], rid) or '0')
local available = bal - (res - held)
for i, s in ipairs(quotas) do
  local own = redis.call('HGET', s.qh, rid)
  local prior = redis.call('HGET', s.qt, rid)
  if not own and not prior then
    if s.conc and redis.call('HLEN', s.qh) >= s.conc then
      return {3, i, 'max_concurrent', 1000}
    end
    if s.rpm and redis.call('ZCARD', s.qw) >= s.rpm then
      return {3, i, 'rpm', oldest_ms(s)}
    end
  end
  local tok = tonumber(redis.call('HGET', s.q, 'tok'))
  local over = tok - tonumber(prior or '0') + tokens - (s.tpm or 0)
  if s.tpm and over > 0 then
    if tokens > s.tpm then
      return {3, i, 'tpm', -1}
    end
    -- When enough of the oldest entries leave the window for this call to fit.
    local log = redis.call('ZRANGE', s.qw, 0, -1, 'WITHSCORES')
    local freed = 0
    for j = 1, #log, 2 do
      freed = freed + tonumber(redis.call('HGET', s.qt, log[j]) or '0')
      if freed >= over then
        return {3, i, 'tpm', math.max(0, tonumber(log[j + 1]) + 60000 - now)}
      end
    end
    return {3, i, 'tpm', 60000}
  end
  if s.budget then
    local h = redis.call('HMGET', s.q, 'spent', 'res')
    if tonumber(h[1]) + tonumber(h[2]) - tonumber(own or '0') + amount > s.budget then
      return {3, i, 'budget', -1}
    end
  end
end
if amount > available then
  return {0, available, bal}
end
redis.call('HSET', KEYS[2], rid, ARGV[2])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), rid)
redis.call('HINCRBY', KEYS[1], 'res', amount - held)
for _, s in ipairs(quotas) do
  local own = redis.call('HGET', s.qh, rid)
  local prior = redis.call('HGET', s.qt, rid)
  redis.call('HSET', s.qh, rid, ARGV[2])
  redis.call('ZADD', s.qx, now + tonumber(ARGV[3]), rid)
  redis.call('HINCRBY', s.q, 'res', amount - tonumber(own or '0'))
  if prior then
    redis.call('HSET', s.qt, rid, tokens)
    redis.call('HINCRBY', s.q, 'tok', tokens - tonumber(prior))
  elseif not own then  -- a stream re-admitted after 60 s is not a new request
    redis.call('ZADD', s.qw, now, rid)
    redis.call('HSET', s.qt, rid, tokens)
    redis.call('HINCRBY', s.q, 'tok', tokens)
  end
end
return counters({1, available, bal})
