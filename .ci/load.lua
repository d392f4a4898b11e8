-- wrk script for .ci/load.sh: random user ids, and a count of every status.
-- Each thread counts in its own table; done() adds them up and prints one
-- machine-readable line (LOAD ...) after wrk's own report.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  users = tonumber(os.getenv("LOAD_USERS") or "") or 1000
end

function request()
  -- Ids past the upstream's users answer 404, as a real API would.
  return wrk.format("GET", "/users/" .. math.random(1, users))
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for code, n in pairs(s) do
      all[code] = (all[code] or 0) + n
    end
  end
  local mix = {}
  for code, n in pairs(all) do
    table.insert(mix, string.format("%d=%d", code, n))
  end
  table.sort(mix)
  local e = summary.errors
  io.write(string.format(
    "LOAD requests=%d seconds=%.2f rps=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f " ..
    "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d statuses=%s\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.timeout, table.concat(mix, ",")))
end
