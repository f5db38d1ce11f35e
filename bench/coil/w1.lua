-- W1 spawn: N tasks; task i yields to the loop once and returns i; the
-- main task gathers them all.
local coil = require "coil"
local N = tonumber(arg[1]) or 100000

local function task(i)
  coil.sleep(0)
  return i
end

local tasks = {}
for i = 0, N - 1 do tasks[#tasks + 1] = coil.spawn(task, i) end
local sum = 0
for _, v in ipairs(coil.gather(tasks)) do sum = sum + v end
print("sum " .. sum)
