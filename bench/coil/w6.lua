-- W6 churn: N short tasks started over time, at most 1000 alive at once (a
-- semaphore, as a server bounds its connections); each sleeps 0 and
-- returns. Nobody keeps a finished task: memory must stay flat.
local coil = require "coil"
local N = tonumber(arg[1]) or 1000000
local WINDOW = 1000

local slots = coil.semaphore(WINDOW)
local sum, done = 0, 0

local function task(i)
  coil.sleep(0)
  sum = sum + i
  done = done + 1
  slots:release()
end

for i = 0, N - 1 do
  slots:acquire()
  coil.spawn(task, i)
end
for _ = 1, WINDOW do slots:acquire() end -- every task has finished
print(("churned %d sum %d"):format(done, sum))
