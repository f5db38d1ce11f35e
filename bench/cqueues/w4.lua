-- W4 shutdown: N tasks sleep 3600 s. cqueues has no task cancellation, so
-- its users stop tasks with a condition variable: on SIGINT (read through
-- cqueues.signal) the main task signals `stop`; each task's cleanup then
-- yields once and counts itself, and the main task waits for them all.
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local signal = require "cqueues.signal"
local N = tonumber(arg[1]) or 100000

local cq = cqueues.new()
cq:wrap(function()
  signal.block(signal.SIGINT)
  local sigint = signal.listen(signal.SIGINT)
  local stop, done, cleaned = condition.new(), condition.new(), 0
  for _ = 1, N do
    cq:wrap(function()
      stop:wait(3600)
      cqueues.sleep(0)
      cleaned = cleaned + 1
      if cleaned == N then done:signal() end
    end)
  end
  cqueues.sleep(0)
  print("READY")
  io.stdout:flush()
  sigint:wait()
  stop:signal()
  while cleaned < N do done:wait() end
  print("cleaned " .. cleaned)
end)
assert(cq:loop())
