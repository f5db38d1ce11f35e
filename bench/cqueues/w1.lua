-- W1 spawn: N tasks; task i yields to the loop once and returns i; the
-- main task gathers the results, counting finished tasks on a condition.
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local N = tonumber(arg[1]) or 100000

local cq = cqueues.new()
cq:wrap(function()
  local results, left, done = {}, N, condition.new()
  local function task(i)
    cqueues.sleep(0)
    results[i + 1] = i
    left = left - 1
    if left == 0 then done:signal() end
  end
  for i = 0, N - 1 do cq:wrap(task, i) end
  while left > 0 do done:wait() end
  local sum = 0
  for _, v in ipairs(results) do sum = sum + v end
  print("sum " .. sum)
end)
assert(cq:loop())
