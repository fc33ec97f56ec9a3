-- wrk script used by bench/run.py: POST a JSON body with an Authorization key and write a
-- JSON summary (calls, errors, latency percentiles in microseconds) for run.py to read.
--
-- Environment:
--   BENCH_BODY   path of the request body (JSON)               required
--   BENCH_KEY    bearer key sent as Authorization (empty: none) optional
--   BENCH_LIMIT  stop each wrk thread after this many responses  optional (0 = run for -d)
--   BENCH_DONE   file touched when BENCH_LIMIT is reached         optional
--   BENCH_OUT    where done() writes the JSON summary            required
--   BENCH_PROGRESS  file rewritten with the responses so far every 1,000 (with a limit)

local function slurp(path)
  local f = assert(io.open(path, "rb"), "cannot open BENCH_BODY " .. tostring(path))
  local data = f:read("*a")
  f:close()
  return data
end

wrk.method = "POST"
wrk.body = slurp(os.getenv("BENCH_BODY"))
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "*/*"
local key = os.getenv("BENCH_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

-- A bounded count: wrk itself only knows durations. Defining response() makes wrk parse
-- every response's headers and body, so it is only defined when a limit is asked for.
-- When the count is reached the thread stops and touches BENCH_DONE; wrk's main thread
-- would still sleep for the whole -d, so run.py sends it SIGINT on seeing that file.
local limit = tonumber(os.getenv("BENCH_LIMIT") or "0") or 0
if limit > 0 then
  local seen = 0
  local progress = os.getenv("BENCH_PROGRESS")
  if progress == "" then progress = nil end
  function response(status, headers, body)
    seen = seen + 1
    if progress ~= nil and seen % 1000 == 0 then
      local f = io.open(progress .. ".tmp", "w")  -- renamed: a reader never sees it half written
      if f then f:write(seen, "\n") f:close() os.rename(progress .. ".tmp", progress) end
    end
    if seen == limit then
      local marker = os.getenv("BENCH_DONE")
      if marker ~= nil and marker ~= "" then
        local f = io.open(marker, "w")
        if f then f:write("done\n") f:close() end
      end
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local out = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  out:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
  out:close()
end
