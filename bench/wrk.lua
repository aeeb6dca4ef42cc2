-- The harness's one wrk script. Requests come from a file (BENCH_REQUESTS), one per line:
--   METHOD <TAB> PATH <TAB> BODY (the body may be empty)
-- Thread i of T sends lines i, i+T, i+2T, ... so no line is sent by two threads at once (an
-- event POST over a pool of pending jobs stays valid: each job gets its `started` once).
-- Past its last line a thread starts over and counts a wrap: the harness sizes one-shot pools
-- so that never happens and reports it when it does. `done` prints one WRK_JSON line.
local threads = {}
local counter = 1

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local nthreads = tonumber(os.getenv("BENCH_THREADS"))
   local token = os.getenv("TOKEN")
   local lines = {}
   for line in io.lines(os.getenv("BENCH_REQUESTS")) do
      local method, path, body = line:match("^(%u+)\t([^\t]*)\t?(.*)$")
      table.insert(lines, {method, path, body})
   end
   reqs = {}
   -- a file with fewer lines than threads (a request that can repeat): every thread sends all
   local first, step = id, nthreads
   if #lines < nthreads then
      first, step = 1, 1
   end
   for i = first, #lines, step do
      local l = lines[i]
      local headers = {["Authorization"] = "Bearer " .. token}
      local body = nil
      if l[3] ~= "" then
         body = l[3]
         headers["Content-Type"] = "application/json"
      end
      table.insert(reqs, wrk.format(l[1], l[2], headers, body))
   end
   n = 0
   wraps = 0
end

function request()
   n = n + 1
   if n > #reqs then
      n = 1
      wraps = wraps + 1
   end
   return reqs[n]
end

function done(summary, latency, requests)
   local wrapped = 0
   for _, thread in ipairs(threads) do
      wrapped = wrapped + (thread:get("wraps") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
      '"max_us": %d, "status_errors": %d, "connect_errors": %d, "read_errors": %d, ' ..
      '"write_errors": %d, "timeouts": %d, "wraps": %d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout,
      wrapped))
end
