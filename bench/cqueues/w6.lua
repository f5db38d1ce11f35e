-- W6 churn: N short tasks started over time, at most 1000 alive at once
-- (counted, with a condition to wait for a free slot); each sleeps 0 and
-- returns.
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local N = tonumber(arg[1]) or 1000000
local WINDOW = 1000

local cq = cqueues.new()
cq:wrap(function()
  local sum, done, alive, freed = 0, 0, 0, condition.new()
  local function task(i)
    cqueues.sleep(0)
    sum, done, alive = sum + i, done + 1, alive - 1
    freed:signal()
  end
  for i = 0, N - 1 do
    while alive >= WINDOW do freed:wait() end
    alive = alive + 1
    cq:wrap(task, i)
  end
  while alive > 0 do freed:wait() end
  print(("churned %d sum %d"):format(done, sum))
end)
assert(cq:loop())
