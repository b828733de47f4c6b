-- wrk script: every request is the seed's POST /jobs with a small no-op job.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"type":"noop","payload":{"source":"wrk"}}'
