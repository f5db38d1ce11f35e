-- W3 timers: N tasks, task i sleeps (i mod 1000) ms; gather them all.
local coil = require "coil"
local N = tonumber(arg[1]) or 100000

local function task(i)
  coil.sleep(i % 1000 / 1000)
  return true
end

local tasks = {}
for i = 0, N - 1 do tasks[#tasks + 1] = coil.spawn(task, i) end
print("count " .. #coil.gather(tasks))
