-- service.lua: an ordered shutdown. A message processor, a scheduler that
-- starts jobs, and a client session that must be closed last. On SIGTERM (or
-- Ctrl+C): the scheduler stops starting jobs, the jobs already running
-- finish, the processor drains its inbox, and the session closes last.
-- Try: build/coil examples/service.lua & sleep 1; kill -TERM $!
-- (build/coil examples/service.lua 1 shuts itself down after a second.)
local coil = require "coil"

local session = { open = true }
function session:send(what) print("session <- " .. what) end
function session:close()
  self.open = false
  print("session closed")
end
-- the main task's own cleanup runs after everything it owns
coil.defer(function() session:close() end)

local inbox = {}
local processor = coil.spawn(function()
  local stopping = coil.stopping()
  local n = 0
  -- stopping() is checked between messages: the one in hand is finished
  while not stopping:is_set() or #inbox > 0 do
    local msg = table.remove(inbox, 1)
    if msg then
      coil.sleep(0.05) -- processing
      n = n + 1
      session:send("processed " .. msg)
    else
      coil.sleep(0.01)
    end
  end
  print(("processor: done after %d message(s)"):format(n))
end):name("processor")

local scheduling, running = true, {}
local scheduler = coil.spawn(function()
  for i = 1, math.huge do
    if not scheduling then break end
    inbox[#inbox + 1] = "msg-" .. i
    local job = coil.spawn(function()
      coil.defer(function() print("job " .. i .. ": cleanup") end)
      coil.sleep(0.3) -- a job that runs a while
      print("job " .. i .. ": done")
    end):name("job-" .. i)
    running[job] = true
    job:on_done(function() running[job] = nil end)
    coil.sleep(0.1)
  end
  print("scheduler: stopped")
end):name("scheduler")

-- Hooks run newest first. Registered first, runs last: let the jobs already
-- running finish on their own, and the processor drain what it has.
coil.on_shutdown(function()
  for job in pairs(running) do coil.shield(job) end
  processor:await()
end)
-- Registered last, runs first: no new work.
coil.on_shutdown(function()
  scheduling = false
  scheduler:await()
end)

print(("service running (pid %d); send SIGTERM or press Ctrl+C"):format(
  coil.uv.os_getpid()))
local limit = tonumber((...))
if limit then
  coil.sleep(limit)
  coil.shutdown(0) -- the same sequence, asked for by the script
end
coil.sleep(math.huge)
