-- W3 timers: N tasks, task i sleeps (i mod 1000) ms; gather them all.
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local N = tonumber(arg[1]) or 100000

local cq = cqueues.new()
cq:wrap(function()
  local count, done = 0, condition.new()
  local function task(i)
    cqueues.sleep(i % 1000 / 1000)
    count = count + 1
    if count == N then done:signal() end
  end
  for i = 0, N - 1 do cq:wrap(task, i) end
  while count < N do done:wait() end
  print("count " .. count)
end)
assert(cq:loop())
