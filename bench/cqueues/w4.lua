-- W4 shutdown: N tasks sleep 3600 s. cqueues has no task cancellation, so
-- its users stop tasks with a condition variable: on SIGINT (read through
-- cqueues.signal) the main task signals `stop`; each task's cleanup then
-- yields once and counts itself, and the main task waits for them all.
-- (A bare cqueues.sleep(0) does not let new coroutines start first, so
-- the main task counts them in before it says READY.)
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local signal = require "cqueues.signal"
local N = tonumber(arg[1]) or 100000

local cq = cqueues.new()
cq:wrap(function()
  signal.block(signal.SIGINT)
  local sigint = signal.listen(signal.SIGINT)
  local stop, done, started, cleaned = condition.new(), condition.new(), 0, 0
  local function sleeper()
    started = started + 1
    if started == N then done:signal() end
    stop:wait(3600)
    cqueues.sleep(0) -- cleanup
    cleaned = cleaned + 1
    if cleaned == N then done:signal() end
  end
  for _ = 1, N do cq:wrap(sleeper) end
  while started < N do done:wait() end
  print("READY")
  io.stdout:flush()
  sigint:wait()
  stop:signal()
  while cleaned < N do done:wait() end
  print("cleaned " .. cleaned)
end)
assert(cq:loop())
