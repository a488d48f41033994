-- wrk script for the bench: POST a Claude Code-like body with its headers, and print one JSON
-- line of results at the end. Usage: wrk ... -s bench/post.lua URL -- BODY_FILE [API_KEY]
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.headers["x-api-key"] = "sk-ant-bench-not-a-real-key"
wrk.headers["x-claude-code-session-id"] = "0b6f1c9e-bench-4c1d-9a53-5e6f7a8b9c0d"
wrk.headers["user-agent"] = "claude-cli/2.1.0 (external, cli)"

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.body = file:read("*a")
  file:close()
  if args[2] then wrk.headers["x-api-key"] = args[2] end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
