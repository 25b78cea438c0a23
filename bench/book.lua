-- wrk script of bench/booking.py: POST Appointment/$book, each request a different free time.
--
-- wrk -s bench/book.lua URL -- BODIES THREADS TOKEN [DELAY_MS]
--   BODIES   a file of Parameters bodies, one per line (one free time each)
--   THREADS  wrk's -t (thread k takes lines k, k+THREADS, ...)
--   TOKEN    the bearer token
--   DELAY_MS if given, each connection waits this long between its requests (a paced load:
--            with C connections it offers about C * 1000 / DELAY_MS requests/s while the
--            server answers well within DELAY_MS)
-- At the end one JSON line: requests, status counts, latency percentiles (µs).

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local bodies = {}
local n = 0
local pause = nil

function init(args)
  local k, step = 0, tonumber(args[2])
  for line in io.lines(args[1]) do
    if k % step == id then bodies[#bodies + 1] = line end
    k = k + 1
  end
  wrk.headers["Content-Type"] = "application/fhir+json"
  wrk.headers["Authorization"] = "Bearer " .. args[3]
  if args[4] then pause = tonumber(args[4]) end
  ok, conflict, other = 0, 0, 0
end

function delay()
  return pause or 0
end

function request()
  n = n + 1
  if n > #bodies then n = #bodies end -- out of free times: the same one again (a 409)
  return wrk.format("POST", "/fhir/Appointment/$book", nil, bodies[n])
end

function response(status, headers, body)
  if status == 200 or status == 201 then
    ok = ok + 1
  elseif status == 409 then
    conflict = conflict + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local o, c, x = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    c = c + t:get("conflict")
    x = x + t:get("other")
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "ok": %d, "conflict": %d, "other": %d, ' ..
    '"socket_errors": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, o, c, x,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
