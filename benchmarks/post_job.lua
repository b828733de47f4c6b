-- wrk script: every request is the seed's POST /jobs with a small no-op job.
-- BENCH_API_KEY set: each request carries it (Authorization: Bearer). BENCH_IDEMPOTENCY=1: each
-- request carries an Idempotency-Key of its own (the thread's number and a counter, so that no
-- two requests of a run share one), as a client that retries safely sends.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"type":"noop","payload":{"source":"wrk"}}'

local key = os.getenv("BENCH_API_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

if os.getenv("BENCH_IDEMPOTENCY") == "1" then
  local sent = 0
  function request()
    sent = sent + 1
    wrk.headers["Idempotency-Key"] = "wrk-" .. thread_number .. "-" .. sent
    return wrk.format()
  end
end
