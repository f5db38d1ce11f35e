--- coil.thread(fn, ...) ⏳: runs fn(...) on libuv's thread pool, in a fresh
-- Lua state with the standard libraries, and returns its results. fn is
-- copied as by string.dump (it may use globals, not upvalues); arguments
-- and results are copied (nil, booleans, integers, floats, strings, and
-- tables of those). The C half is src/thread.c.
local core = require "coil.core"
local in_task = core.in_task
local uv = require "luv"

local current, park, wake = core.current, core.park, core.wake
local type, error, pcall = type, error, pcall
local pack, unpack = table.pack, table.unpack
local dump = string.dump
local getinfo, getupvalue = debug.getinfo, debug.getupvalue
local floor = math.floor

local function check_fn(fn)
  if type(fn) ~= "function" then
    error("coil: thread: fn must be a function, got " .. type(fn), 3)
  end
  if getinfo(fn, "S").what == "C" then
    error("coil: thread: fn must be a Lua function, not a C function", 3)
  end
  for i = 1, 255 do
    local name = getupvalue(fn, i)
    if not name then break end
    -- _ENV as the first upvalue becomes the new state's globals
    if name ~= "_ENV" or i > 1 then
      error(("coil: thread: fn must not use upvalues (it runs in a fresh Lua state): %s")
            :format(name), 3)
    end
  end
end

-- Waits, after a cancellation, for the thread to stop; at most the grace.
-- Returns whether it did.
-- (The report is in __close: a task closed by force never gets past its
-- await, but its <close> variables still run.)
local function wait_stopped(state)
  local timer <close> = setmetatable({ handle = uv.new_timer() }, {
    __close = function(t)
      if not t.handle:is_closing() then t.handle:close() end
      if not state.done then
        core.report("a coil.thread did not stop within the grace (stuck in a C call?); "
                     .. "abandoned, it goes on running in the thread pool")
      end
    end,
  })
  core.untrack(timer.handle)
  local me = current()
  timer.handle:start(floor(core.grace() * 1000 + 0.5), 0, function()
    state.timed_out = true
    if state.waiting then wake(me) end
  end)
  while not state.done and not state.timed_out do
    state.waiting = true
    local ok = pcall(park)
    state.waiting = false
    if not ok then break end -- closed by force: awaits fail at once
  end
end

--- coil.thread(fn, ...) ⏳ -> fn's results.
-- @raise fn's error, with its message; `Cancelled` if the calling task is
-- cancelled (a timeout, the shutdown): fn then stops at its next Lua
-- instruction, or never starts; a thread stuck in a C call is abandoned
-- (with a `coil: ` line) once the grace is over. Raises at once if fn has
-- upvalues or an argument cannot be copied.
local function thread(fn, ...)
  local me = in_task("thread", 2)
  check_fn(fn)
  local state = { done = false, waiting = false, results = nil }
  local started, job = pcall(core.thread_start, function(...)
    state.done, state.results = true, pack(...)
    if state.waiting then wake(me) end
  end, dump(fn), ...)
  if not started then error(job, 2) end -- an argument that cannot be copied
  local ok, err = pcall(function()
    while not state.done do
      state.waiting = true
      park()
      state.waiting = false
    end
  end)
  state.waiting = false
  if not ok then
    -- the callback may have come between the cancellation and now: the job
    -- is freed then, and there is nothing left to stop
    if not state.done then core.thread_cancel(job) end
    wait_stopped(state)
    error(err, 0)
  end
  local results = state.results
  if results[1] == true then return unpack(results, 2, results.n) end
  if results[1] == false then error(results[2], 0) end
  error("coil: thread: the thread was cancelled", 2) -- not by us: cannot happen
end

return thread
