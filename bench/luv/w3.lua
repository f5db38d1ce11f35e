-- W3 timers: N tasks, task i sleeps (i mod 1000) ms; gather them all.
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local sched = require "sched"
local N = tonumber(arg[1]) or 100000

local function task(i)
  sched.sleep(i % 1000 / 1000)
  return true
end

sched.run(function()
  local tasks = {}
  for i = 0, N - 1 do tasks[#tasks + 1] = sched.spawn(task, i) end
  print("count " .. #sched.gather(tasks))
end)
