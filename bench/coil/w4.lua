-- W4 shutdown: N tasks sleep 3600 s; each one's cleanup yields once, then
-- counts itself. There is no signal code: on SIGINT coil cancels every
-- task, the main one included, and runs their cleanup. The main task's
-- own cleanup waits (without owning) for the others, then reports.
local coil = require "coil"
local N = tonumber(arg[1]) or 100000
local cleaned = 0

-- one cleanup function for all, as a finally block is one piece of code
-- (a closure per task would add 48 B to each, which no peer pays)
local function cleanup()
  coil.sleep(0)
  cleaned = cleaned + 1
end

local function sleeper()
  coil.defer(cleanup)
  coil.sleep(3600)
end

local tasks = {}
for i = 1, N do tasks[i] = coil.spawn(sleeper) end
coil.defer(function()
  coil.wait(tasks, {return_when = "all"})
  print("cleaned " .. cleaned)
end)
coil.sleep(0) -- every task has started and is asleep
print("READY")
io.stdout:flush()
coil.sleep(3600)
