-- W2 switch: one task yields to the loop M times.
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local sched = require "sched"
local M = tonumber(arg[1]) or 1000000

sched.run(function()
  local count = 0
  for _ = 1, M do sched.sleep(0); count = count + 1 end
  print("count " .. count)
end)
