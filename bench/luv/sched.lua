-- The coroutine scheduler people write by hand on luv: a run queue that one
-- idle handle drains once per loop turn (sleep(0) = one turn, with its I/O
-- poll), a timer per sleep, cancellation by waking the task with a flag.
local uv = require "luv"

local M = {}
local Cancelled = setmetatable({}, {__tostring = function() return "cancelled" end})
M.Cancelled = Cancelled

local ready = {}          -- tasks to resume on the next loop turn
local idle = uv.new_idle()
local current

local function step(t)
  local prev = current
  current, t.queued = t, false
  local ok, res
  if t.args then  -- first run: pass spawn's arguments
    local args = t.args
    t.args = nil
    ok, res = coroutine.resume(t.co, table.unpack(args, 1, args.n))
  else
    ok, res = coroutine.resume(t.co)
  end
  current = prev
  if not ok and res ~= Cancelled then error(debug.traceback(t.co, tostring(res)), 0) end
  if coroutine.status(t.co) == "dead" then
    t.done, t.result = true, ok and res or nil
    local w = t.waiter
    if w then t.waiter = nil; step(w) end
  end
end

local function turn()
  local batch = ready
  ready = {}
  for i = 1, #batch do step(batch[i]) end
  if #ready == 0 then idle:stop() end
end

local function wake(t)
  if t.queued then return end
  if #ready == 0 then idle:start(turn) end
  t.queued = true
  ready[#ready + 1] = t
end

--- The running task, and a way to wake a task parked with coroutine.yield().
function M.current() return current end
M.wake = wake

function M.spawn(fn, ...)
  local t = {co = coroutine.create(fn), args = table.pack(...)}
  wake(t)
  return t
end

function M.sleep(s)
  local t = current
  if s > 0 then
    local timer = uv.new_timer()
    t.timer = timer
    timer:start(math.floor(s * 1000), 0, function()
      timer:close(); t.timer = nil
      step(t)
    end)
  else
    wake(t)
  end
  coroutine.yield()
  if t.cancelled then t.cancelled = false; error(Cancelled, 0) end
end

function M.cancel(t)
  if t.done then return end
  t.cancelled = true
  if t.timer then t.timer:close(); t.timer = nil end
  wake(t)
end

function M.gather(tasks)
  local results = {}
  for i, t in ipairs(tasks) do
    if not t.done then t.waiter = current; coroutine.yield() end
    results[i] = t.result
  end
  return results
end

function M.run(fn, ...)
  M.spawn(fn, ...)
  uv.run()
end

return M
