-- W4 shutdown: N tasks sleep 3600 s; SIGINT cancels them all; each one's
-- cleanup yields once, then counts itself.
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local uv = require "luv"
local sched = require "sched"
local N = tonumber(arg[1]) or 100000
local cleaned = 0

local function sleeper()
  pcall(sched.sleep, 3600)
  sched.sleep(0)
  cleaned = cleaned + 1
end

sched.run(function()
  local tasks = {}
  for i = 1, N do tasks[i] = sched.spawn(sleeper) end
  local sigint = uv.new_signal()
  sigint:start("sigint", function()
    sigint:close()
    for _, t in ipairs(tasks) do sched.cancel(t) end
  end)
  sched.sleep(0)
  print("READY")
  io.stdout:flush()
  sched.gather(tasks)
  print("cleaned " .. cleaned)
end)
