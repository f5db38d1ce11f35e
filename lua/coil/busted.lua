--- coil.busted: asynchronous tests for busted, under stock `busted` (each
-- test body runs in its own `coil.run`) and under `busted --lua=coil`
-- (already inside the main task: the body runs as a spawned task).
--
--     local async = require "coil.busted"
--     it("pongs", async(function() ... end))
--     it("is quick", async(function() ... end, { timeout = 0.5 }))
--     it("backs off", async(function() ... end, { virtual_time = true }))
--
-- After the body, the test fails, naming each of them, if it left a task
-- alive, a luv handle open, or an error nobody saw; all of them are cleaned
-- up (tasks cancelled and awaited, handles closed) so the next test starts
-- clean. A body that does not finish in time fails with the dump of where
-- each of its tasks was waiting. With `virtual_time = true` the body runs
-- on coil's virtual clock (lua/coil/clock.lua); the deadline and the
-- helper's own waits stay in real time. docs/testing.md tells how to read
-- it all.
local coil = require "coil"
local coil_core = require "coil.core"
local uv = require "luv"
local clock = require "coil.clock"

local error, ipairs, pairs, pcall, rawget, select, setmetatable, tostring,
  type, xpcall = error, ipairs, pairs, pcall, rawget, select, setmetatable,
  tostring, type, xpcall
local format, concat, pack, unpack = string.format, table.concat,
  table.pack, table.unpack
local getinfo, getregistry, sethook, traceback = debug.getinfo,
  debug.getregistry, debug.sethook, debug.traceback

local M = {
  --- Seconds a test body gets when `async` is not given a timeout.
  default_timeout = 5,
  --- Seconds the tasks a test left behind (or a body that timed out) get to
  -- finish their cleanup once cancelled.
  grace = 2,
}

-- Where each luv handle was opened: coil's handle record keeps the site.
coil_core.record_sites(true)

-- Describing what was left behind ---------------------------------------------

local function indent(text, prefix)
  return prefix .. text:gsub("\n", "\n" .. prefix)
end

-- A traceback without the helper's own frames (those of the task running
-- the test body, and the task entry below them).
local function trim(tb)
  local lines = {}
  for line in tb:gmatch "[^\n]+" do
    if line:find("coil/busted.lua", 1, true) then
      if lines[#lines] and lines[#lines]:find("in function 'xpcall'", 1, true) then
        lines[#lines] = nil
      end
      break
    end
    lines[#lines + 1] = line
  end
  if lines[#lines] and lines[#lines]:match "^%s*%[C%]: in %?$" then
    lines[#lines] = nil -- the task's entry
  end
  return concat(lines, "\n")
end

-- "task 'x' (suspended in sleep, age 1.2 s)" and where it waits
local function describe_task(task)
  local state, wait, _, started = coil_core.state(task)
  if wait ~= "" then state = state .. " in " .. wait end
  if task:cancelled() then state = state .. ", cancelled" end
  local text = format("task '%s' (%s, age %.1f s)", task:name(), state,
                      coil.now() - started)
  local tb = trim(coil_core.traceback(task))
  if tb ~= "" then text = text .. "\n" .. indent(tb, "  ") end
  return text
end

local function describe_handle(handle)
  local kind = tostring(handle):match "^(uv_[%w_]+)" or tostring(handle)
  local text = "luv handle " .. kind .. " still open"
  local site = coil_core.handle_site(handle)
  if site then text = text .. ", opened at " .. site end
  return text
end

local function set_of(list)
  local set = {}
  for _, x in ipairs(list) do set[x] = true end
  return set
end

-- Live tasks (but `except`) / open handles that are not in `before`.
local function new_tasks(before, except)
  local list = {}
  for _, task in ipairs(coil.tasks()) do
    if not before[task] and task ~= except then list[#list + 1] = task end
  end
  return list
end

local function new_handles(before)
  local list = {}
  for _, handle in ipairs(coil_core.open_handles()) do
    if not before[handle] then list[#list + 1] = handle end
  end
  return list
end

-- Failed tasks whose error nobody has seen yet (the runtime's record).
local function unseen_now()
  local record = getregistry()["coil.unseen"]
  local set = {}
  if type(record) == "table" then
    for task in pairs(record) do set[task] = true end
  end
  return set
end

-- Waiting ------------------------------------------------------------------------

-- Waits until `task` is done or `seconds` passed; true if it is done.
local function wait_done(task, seconds)
  if task:done() then return true end
  local me = coil.current()
  local function wake() coil_core.wake(me) end
  local timer = uv.new_timer()
  coil_core.untrack(timer) -- the helper's own: not the test's, not in its checks
  task:on_done(wake)
  timer:start(math.max(1, math.floor(seconds * 1000 + 0.5)), 0, wake)
  local ok, err = pcall(coil_core.park)
  timer:close()
  coil_core.remove_on_done(task, wake)
  if not ok then error(err, 0) end
  return task:done()
end

-- Sleeps s seconds of real time, even while virtual time is on.
local function real_sleep(s)
  local me = coil.current()
  local timer = uv.new_timer()
  coil_core.untrack(timer)
  timer:start(math.max(1, math.floor(s * 1000 + 0.5)), 0, function()
    coil_core.wake(me)
  end)
  local ok, err = pcall(coil_core.park)
  timer:close()
  if not ok then error(err, 0) end
end

-- Gives `tasks` `grace` seconds (real time) to finish; returns the ones
-- still alive. Polls rather than watches, so that an error in their
-- cleanup stays unseen (and is reported as such).
local function wait_all(tasks, grace)
  local deadline = uv.hrtime() + grace * 1e9
  local alive, first = tasks, true
  while true do
    local still = {}
    for _, task in ipairs(alive) do
      if not task:done() then still[#still + 1] = task end
    end
    alive = still
    if #alive == 0 or uv.hrtime() >= deadline then return alive end
    if first then coil.sleep(0) else real_sleep(0.005) end
    first = false
  end
end

-- Cancels `tasks` and gives them `grace` seconds to finish their cleanup;
-- returns the ones still alive.
local function cancel_all(tasks, why, grace)
  for _, task in ipairs(tasks) do task:cancel(why) end
  return wait_all(tasks, grace)
end

-- One test -----------------------------------------------------------------------

local BUSY = setmetatable({}, { __tostring = function() return "busy" end })

local function unseen_text(task, text)
  return format("task '%s' failed and nobody awaited it: %s", task:name(),
                text)
end

-- Runs fn(...) as a task with a deadline, inside the running task, then
-- checks and cleans up what it left behind. Returns an outcome table:
-- failed, err and tb (whether the body failed, its error and, for a
-- string, its traceback), timeout
-- (the text of the timeout), problems (a list of texts), stuck (tasks that
-- ignored cancellation).
local function run_test(fn, args, timeout, virtual_time)
  local registry = getregistry()
  local before_tasks = set_of(coil.tasks())
  local before_handles = set_of(coil_core.open_handles())
  local before_unseen = unseen_now()
  local saved_on_error = rawget(registry, "coil.on_error")
  local out = { problems = {} }
  local problems = out.problems

  local unseen, reported = {}, {} -- texts in order; tasks already in them
  coil.on_error(function(task, err, tb)
    if before_unseen[task] then
      -- failed before this test began: not this test's to report
      if saved_on_error then return saved_on_error(task, err, tb) end
      return coil_core.report(unseen_text(task, tb))
    end
    if not reported[task] then
      reported[task] = true
      unseen[#unseen + 1] = unseen_text(task, tb)
    end
  end)

  -- (a test already on the virtual clock, in coil.run's, stays on it)
  local virtual = virtual_time and not clock.on
  if virtual then clock.start() end
  local hard_deadline = uv.hrtime() + (timeout + math.min(timeout, 1)) * 1e9
  local body_co
  local body = coil.spawn(function()
    body_co = coroutine.running()
    -- a body that never awaits keeps the loop from firing the timeout:
    -- a count hook catches it, a little after the deadline
    sethook(function()
      if uv.hrtime() > hard_deadline then
        out.busy = trim(traceback("", 2):gsub("^\n", ""))
        error(BUSY, 0)
      end
    end, "", 100000)
    local r = pack(xpcall(fn, function(e)
      if type(e) == "string" then out.tb = trim(traceback(e, 2)) end
      return e
    end, unpack(args, 1, args.n)))
    if not r[1] then error(r[2], 0) end
  end)
  body:name("test")

  local waited, finished = pcall(wait_done, body, timeout)
  if not waited then
    -- the task running the test was cancelled (coil's shutdown, which
    -- cancels the test's tasks too): let their cleanup finish first
    wait_all(new_tasks(before_tasks), M.grace)
    if body_co then sethook(body_co) end
    if virtual then clock.stop() end
    coil.on_error(saved_on_error)
    error(finished, 0)
  end
  local stuck = {}
  if not finished then
    -- where everyone was waiting, before the cancellation moves them
    local dump = { describe_task(body) }
    for _, task in ipairs(new_tasks(before_tasks, body)) do
      dump[#dump + 1] = describe_task(task)
    end
    out.timeout = format("test timed out after %.3g s; where each task was waiting:\n%s",
                         timeout, indent(concat(dump, "\n"), "  "))
    stuck = cancel_all(new_tasks(before_tasks),
                       format("test timed out after %.3g s", timeout), M.grace)
  end
  if body_co then sethook(body_co) end

  local failed, err = false, nil
  if body:done() then
    local ok, e = pcall(body.result, body) -- (an error may be nil or false)
    failed, err = not ok, e
  end
  if failed and err == BUSY then
    out.timeout = format("test timed out after %.3g s: the body kept running without awaiting, at:\n%s",
                         timeout, indent(out.busy or "", "  "))
  elseif failed and (finished or not coil.is_cancelled(err)) then
    -- (the Cancelled of the timeout's own cancellation is no error)
    out.failed, out.err = true, err
  end

  -- tasks it left alive (not those that already ignored the timeout)
  if #stuck == 0 then
    local leaked = new_tasks(before_tasks)
    for _, task in ipairs(leaked) do
      problems[#problems + 1] = describe_task(task):gsub("^task '[^']*'",
        "%0 still running", 1)
    end
    if #leaked > 0 then
      stuck = cancel_all(leaked, "leaked by the test", M.grace)
    end
  end
  for _, task in ipairs(stuck) do
    problems[#problems + 1] = format(
      "task '%s' ignored cancellation for %.3g s and is still alive",
      task:name(), M.grace)
  end
  out.stuck = #stuck > 0 and stuck or nil

  -- handles it left open (once the tasks' cleanup had its chance)
  local open = new_handles(before_handles)
  for _, handle in ipairs(open) do
    problems[#problems + 1] = describe_handle(handle)
    if handle.kill and handle.get_pid then pcall(handle.kill, handle, "sigkill") end
    pcall(handle.close, handle)
  end
  if #open > 0 then coil.sleep(0) end -- let the close callbacks run

  -- timers of the virtual clock still pending (a call_later never cancelled)
  if virtual then
    local now = clock.ms
    for _, timer in ipairs(clock.stop()) do
      problems[#problems + 1] = format(
        "%s still pending on the virtual clock (due in %.3f s)", timer.what,
        (timer.due - now) / 1000)
    end
  end

  -- errors nobody saw: a full collection finalizes the failed tasks that are
  -- garbage, which reports them (traceback included) to the collector
  -- above; the runtime's record holds the rest, still referenced, whose
  -- error looking at here keeps from being reported again at exit.
  collectgarbage()
  local record = registry["coil.unseen"]
  if type(record) == "table" then
    local list = {}
    for task in pairs(record) do
      if not before_unseen[task] and not reported[task] then
        list[#list + 1] = task
      end
    end
    table.sort(list, function(a, b)
      return select(3, coil_core.state(a)) < select(3, coil_core.state(b))
    end)
    for _, task in ipairs(list) do
      reported[task] = true
      unseen[#unseen + 1] = unseen_text(task, tostring(task:error()))
    end
  end
  coil.on_error(saved_on_error)
  for _, text in ipairs(unseen) do problems[#problems + 1] = text end
  return out
end

-- Raising the outcome --------------------------------------------------------------

local function fail(message)
  local busted = package.loaded.busted
  local ok, f = pcall(function() return busted.fail end)
  if ok and type(f) == "function" then f(message, 0) end
  error(message, 0)
end

local function raise(out, where)
  local err = out.err
  if out.failed and #out.problems == 0 and not out.timeout then
    -- the body's own error, as it was (a busted failure stays a failure,
    -- pending stays pending); a string comes with the body's traceback
    if type(err) == "string" and out.tb then error(out.tb, 0) end
    error(err, 0)
  end
  local parts = {}
  if out.timeout then parts[#parts + 1] = "coil: " .. out.timeout end
  if out.failed then
    parts[#parts + 1] = type(err) == "string" and out.tb or tostring(err)
  end
  if #out.problems > 0 then
    parts[#parts + 1] = format("coil: the test left %d thing(s) behind:\n%s",
                               #out.problems,
                               indent(concat(out.problems, "\n"), "  "))
  end
  -- "file:line: " of the test body, or busted would name this file
  if #parts > 0 then fail(where .. ": " .. concat(parts, "\n")) end
end

local exit_codes = { SIGINT = 130, SIGTERM = 143, SIGHUP = 129 }

-- The function busted calls for the test.
local function runner(fn, timeout, virtual_time)
  local info = getinfo(fn, "S")
  local where = info.short_src .. ":" .. info.linedefined
  return function(...)
    local args = pack(...)
    local seconds = timeout or M.default_timeout
    local out
    if coil.current() then
      -- under `busted --lua=coil`: already inside the main task
      if coil_core.phase() ~= "run" then
        error(where .. ": coil: the test cannot start: coil is shutting down", 0)
      end
      out = run_test(fn, args, seconds, virtual_time)
    else
      -- stock busted: a coil.run of its own, which leaves the loop empty
      local ok, err = pcall(coil.run, function()
        out = run_test(fn, args, seconds, virtual_time)
        -- tasks that ignored their cancellation: only a shutdown closes
        -- them by force, and coil.run returns once they are gone
        if out.stuck then coil.shutdown() end
      end)
      if not ok and coil.is_interrupted(err) then
        -- Ctrl+C: the cleanup ran; stop the whole run, as the signal would
        io.stdout:flush()
        io.stderr:write(format("coil: %s during a test; stopping\n",
                               tostring(err.signal)))
        io.stderr:flush()
        os.exit(exit_codes[err.signal] or 1, true)
      end
      if not ok and not out then error(err, 0) end
    end
    return raise(out, where)
  end
end

local function check(fn, opts, level)
  if type(fn) ~= "function" then
    error("coil.busted: the test body must be a function, got " .. type(fn),
          level + 1)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("coil.busted: options must be a table, got " .. type(opts), level + 1)
  end
  local timeout = opts and opts.timeout
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout
                         or timeout <= 0) then
    error("coil.busted: timeout must be a positive number of seconds",
          level + 1)
  end
  local virtual_time = opts and opts.virtual_time
  if virtual_time ~= nil and type(virtual_time) ~= "boolean" then
    error("coil.busted: virtual_time must be true or false", level + 1)
  end
  for k in pairs(opts or {}) do
    if k ~= "timeout" and k ~= "virtual_time" then
      error(("coil.busted: unknown option '%s'"):format(tostring(k)), level + 1)
    end
  end
  return runner(fn, timeout, virtual_time)
end

--- Wraps a test body: `it("name", async(fn, {timeout = s}))`.
-- @tparam function fn the body; it may await
-- @tparam[opt] table opts `timeout` in seconds of real time (default
-- `M.default_timeout`); `virtual_time = true` runs the body on the virtual
-- clock (coil.now, sleep, timeout, move_on_after, call_later and wait's
-- timeout; the clock jumps whenever no task can run)
-- @return the function to give busted's `it` (or `before_each`, ...)
-- @raise (when the test runs) a busted failure naming what the body left
-- behind, or the timeout with where each task was waiting; else the body's
-- own error
function M.async(fn, opts)
  return check(fn, opts, 2)
end

return setmetatable(M, {
  __name = "coil.busted",
  __call = function(_, fn, opts) return check(fn, opts, 2) end,
})
