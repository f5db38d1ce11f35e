-- W6 churn: N short tasks started over time, at most 1000 alive at once;
-- each sleeps 0 and returns. The main task waits for a free slot.
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local sched = require "sched"
local N = tonumber(arg[1]) or 1000000
local WINDOW = 1000

sched.run(function()
  local sum, done, alive, waiting = 0, 0, 0, nil
  local function task(i)
    sched.sleep(0)
    sum, done, alive = sum + i, done + 1, alive - 1
    if waiting then
      local w = waiting
      waiting = nil
      sched.wake(w)
    end
  end
  for i = 0, N - 1 do
    while alive >= WINDOW do
      waiting = sched.current()
      coroutine.yield()
    end
    alive = alive + 1
    sched.spawn(task, i)
  end
  while alive > 0 do
    waiting = sched.current()
    coroutine.yield()
  end
  print(("churned %d sum %d"):format(done, sum))
end)
