-- wrk script of bench/http_bench.sh: every request POSTs the same JSON body
-- (SK_BODY, a file) with the key (SK_KEY); at the end one line of JSON with
-- what wrk counted, so the script can refuse a run with failed requests.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SK_KEY")
local f = assert(io.open(os.getenv("SK_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        '{"requests": %d, "duration_us": %d, "non2xx": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\n',
        summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
        latency:percentile(50), latency:percentile(99)))
end
