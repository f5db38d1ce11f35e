-- W1 spawn: N tasks; task i yields to the loop once and returns i.
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local sched = require "sched"
local N = tonumber(arg[1]) or 100000

local function task(i)
  sched.sleep(0)
  return i
end

sched.run(function()
  local tasks = {}
  for i = 0, N - 1 do tasks[#tasks + 1] = sched.spawn(task, i) end
  local sum = 0
  for _, v in ipairs(sched.gather(tasks)) do sum = sum + v end
  print("sum " .. sum)
end)
