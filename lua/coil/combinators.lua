--- Combinators (SPEC §4 "Time and combinators"): gather, wait, race,
-- timeout, move_on_after and call_later. coil.shield is in the C core;
-- coil.group is in group.lua, built on the cancel scopes below.
--
-- All of them watch tasks with task:on_done and suspend the caller with
-- core.park; a watcher only wakes the caller while the call is still
-- active, so a late callback can never wake a task that has moved on to wait
-- for something else. Owning combinators (gather, race) cancel their
-- children and then wait for every child to be done before they return or
-- raise, as task:await does: an owner's cleanup always sees its children's
-- cleanup finished.
local core = require "coil.core"
local in_task = core.in_task
local uv = require "luv"
local clock = require "coil.clock"

local error, pcall, pairs, select, type, tostring, rawequal, setmetatable, getmetatable =
  error, pcall, pairs, select, type, tostring, rawequal, setmetatable, getmetatable
local unpack, pack, move = table.unpack, table.pack, table.move
local huge, ceil, min = math.huge, math.ceil, math.min

local spawn, current, wake = core.spawn, core.current, core.wake
local cancel_with, uncancel, withdraw = core.cancel, core.uncancel, core.withdraw
local cancels = core.cancels
local phase, is_cancelled = core.phase, core.is_cancelled
local waitset, waitset_notify = core.waitset, core.waitset_notify
local waitset_wait, waitset_state, waitset_close =
  core.waitset_wait, core.waitset_state, core.waitset_close
local gather_results, task_list = core.gather_results, core.task_list
local Cancelled, Timeout = core.Cancelled, core.Timeout
local check_self = require("coil.sync").check_self

local task_mt = debug.getregistry()["coil.task"]
local methods = task_mt.__index
local ipairs = ipairs
local result_of, done_of, on_done, error_of =
  methods.result, methods.done, methods.on_done, methods.error
local c_cancel = methods.cancel

local M = {}

-- Helpers -----------------------------------------------------------------

local function need_task(what)
  return in_task(what, 3)
end

local function is_task(v) return getmetatable(v) == task_mt end

local function is_callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

--- Checks a number of seconds (level: where the error points).
local function check_seconds(what, s, level)
  if type(s) ~= "number" then
    error(("coil: %s expects a number of seconds, got %s"):format(what, type(s)), level + 1)
  end
  if s ~= s or s < 0 then
    error(("coil: %s expects a non-negative number of seconds, got %s")
          :format(what, tostring(s)), level + 1)
  end
end

--- Seconds to the whole milliseconds a uv timer takes, never early.
local function to_ms(s) return min(ceil(s * 1000), 2 ^ 52) end

--- A one-shot timer: fn() runs after s seconds, outside any task. On the
-- virtual clock while virtual time is on (`what` names it in reports).
local function new_timer(s, fn, what)
  if clock.on then return clock.after(s, fn, what) end
  local timer = uv.new_timer()
  -- the loop's cached time may be stale (a long drain): count from now
  uv.update_time()
  timer:start(to_ms(s), 0, fn)
  return timer
end

local function close_timer(timer)
  if timer and not timer:is_closing() then
    timer:stop()
    timer:close()
  end
end

--- Whether the shutdown has cancelled every task already (§3 step 3): an
-- owner must not cancel its children a second time then, which would cut
-- their cleanup short.
local function shutting_down()
  local p = phase()
  return p == "cancel" or p == "closing" or p == "closed"
end

local function check_opts(what, opts, known)
  if opts == nil then return end
  if type(opts) ~= "table" then
    error(("coil: %s: options must be a table, got %s"):format(what, type(opts)), 3)
  end
  for k in pairs(opts) do
    if not known[k] then
      error(("coil: %s: unknown option '%s'"):format(what, tostring(k)), 3)
    end
  end
end

--- Reads the tasks of f(t1, t2, ...) or f(list[, opts]): returns the tasks
-- (functions already spawned, in order), their count, whether a list was
-- given, and the options. Checks everything before spawning anything.
local function collect(what, ...)
  local nargs = select("#", ...)
  local first = ...
  local list, n, as_list, opts
  if nargs >= 1 and type(first) == "table" and not is_task(first) then
    if nargs > 2 then
      error(("coil: %s: give either tasks as arguments or one list (and options)")
            :format(what), 3)
    end
    -- a copy: the caller may change its list while we wait; we own, cancel
    -- and report the tasks it held at the call
    n, as_list, opts = #first, true, (select(2, ...))
    list = task_list(first, n) -- the usual case, in C
    if list then return list, n, as_list, opts end
    list = move(first, 1, n, 1, {})
  else
    list, n = { ... }, nargs
  end
  local fns = false
  for i = 1, n do
    local v = list[i]
    if not is_task(v) then
      if is_callable(v) then
        fns = true
      else
        error(("coil: %s expects tasks or functions, got %s at position %d")
              :format(what, v == nil and "nil" or type(v), i), 3)
      end
    end
  end
  if fns then
    local tasks = {}
    for i = 1, n do
      local v = list[i]
      tasks[i] = is_task(v) and v or spawn(v)
    end
    list = tasks
  end
  return list, n, as_list, opts
end

-- Cancelling -----------------------------------------------------------------

local stronger -- which of two cancellations to raise (cancel scopes, below)

--- Cancels task with the error object err, or a new Cancelled.
local function cancel(task, err)
  if err == nil then return c_cancel(task) end
  return cancel_with(task, err)
end

--- Cancels every task of the list not done yet (with err when given).
local function cancel_rest(tasks, n, err)
  if shutting_down() then return end
  for i = 1, n do
    local t = tasks[i]
    if not done_of(t) then cancel(t, err) end
  end
end

-- Watching ----------------------------------------------------------------
--
-- gather, wait and race watch their tasks through a core waitset: a pointer
-- in each task and counters in the waitset, so a child costs no closure and
-- no callback. A task already watched by another call is watched with
-- on_done instead, reported to the waitset by hand.

local function watch(tasks, n)
  local ws, shared = waitset(tasks, n)
  if shared then
    for _, i in ipairs(shared) do
      on_done(tasks[i], function() if ws then waitset_notify(ws, i) end end)
    end
  end
  return ws
end

--- Waits (as an owner) until every task is done, cancelling the rest once
-- one of them is "bad" (failed, or cancelled, for gather) or has finished
-- (race), or once the waiting task itself is cancelled. Returns the
-- Cancelled of the waiting task, if it was.
local function own_until_done(ws, tasks, n, trigger)
  local own, cancelled = nil, false
  while true do
    local ndone, first_done, _, first_bad = waitset_state(ws)
    if ndone == n then break end
    local triggered = own ~= nil or (trigger == "first" and first_done)
                      or (trigger == "bad" and first_bad)
    if triggered and not cancelled then
      cancelled = true
      cancel_rest(tasks, n, own)
    end
    local ok, err = pcall(waitset_wait, ws, cancelled and "all" or trigger)
    if not ok then
      if not is_cancelled(err) then
        waitset_close(ws)
        error(err, 0)
      end
      -- our own cancellation: pass it on, wait for the children's cleanup;
      -- further ones until then collapse into this one (a real one wins
      -- over a deadline's)
      own = stronger(current(), own, err)
    end
  end
  waitset_close(ws)
  return own
end

-- gather -------------------------------------------------------------------

local GATHER_OPTS = { return_errors = true }

--- ⏳ coil.gather(t1, t2, ...) / coil.gather(list[, opts]): waits for all.
-- @return each one's first result (varargs in, varargs out; a list in, a
--   list out)
-- @raise the first child error, after the others were cancelled and their
--   cleanup finished; Cancelled if the gathering task is cancelled (after
--   every child was cancelled and is done)
function M.gather(...)
  need_task "gather"
  local tasks, n, as_list, opts = collect("gather", ...)
  check_opts("gather", opts, GATHER_OPTS)
  local return_errors = opts ~= nil and opts.return_errors and true or false
  -- a failure cancels the rest, unless the errors are to be returned
  local ws = watch(tasks, n)
  local own = own_until_done(ws, tasks, n, return_errors and "all" or "bad")
  if own ~= nil then error(own, 0) end
  local first_bad = not return_errors and select(4, waitset_state(ws))
  if first_bad then error(error_of(tasks[first_bad]), 0) end
  local res = gather_results(tasks, n, return_errors) -- the usual case, in C
  if not res then
    res = {}
    for i = 1, n do
      local ok, v = pcall(result_of, tasks[i])
      if not ok and not return_errors then error(v, 0) end
      res[i] = v
    end
  end
  if as_list then return res end
  return unpack(res, 1, n)
end

-- wait ---------------------------------------------------------------------

local WAIT_OPTS = { timeout = true, return_when = true }
local WHEN = { all = "all", first = "first", error = "error" }

--- ⏳ coil.wait(list, {timeout = s, return_when = "all"|"first"|"error"}):
-- waits without owning; never cancels the tasks.
-- @return done, pending: lists in the order of list
-- @raise Cancelled if the waiting task is cancelled (the tasks go on)
function M.wait(list, opts)
  local me = need_task "wait"
  if type(list) ~= "table" or is_task(list) then
    error("coil: wait expects a list of tasks, got " .. (is_task(list) and "a task" or type(list)), 2)
  end
  local n = #list
  list = move(list, 1, n, 1, {}) -- the tasks as they are now: ours to report
  for i = 1, n do
    if not is_task(list[i]) then
      error(("coil: wait expects a list of tasks, got %s at position %d")
            :format(type(list[i]), i), 2)
    end
  end
  check_opts("wait", opts, WAIT_OPTS)
  local timeout, when = opts and opts.timeout, opts and opts.return_when or "all"
  if timeout ~= nil then check_seconds("wait: timeout", timeout, 2) end
  if not WHEN[when] then
    error(("coil: wait: return_when must be \"all\", \"first\" or \"error\", got %s")
          :format(tostring(when)), 2)
  end

  local ws = watch(list, n)
  local ok, err = true, nil
  if timeout ~= 0 then
    local timer = timeout and timeout < huge and new_timer(timeout, function()
      wake(me)
    end, "wait")
    ok, err = pcall(waitset_wait, ws, when)
    close_timer(timer)
  end
  waitset_close(ws)
  if not ok then error(err, 0) end

  local done, pending = {}, {}
  for i = 1, n do
    local t = list[i]
    if done_of(t) then done[#done + 1] = t else pending[#pending + 1] = t end
  end
  return done, pending
end

-- race ---------------------------------------------------------------------

--- ⏳ coil.race(t1, t2, ...) (or a list): the first to finish wins.
-- @return i, the winner's results
-- @raise the winner's error; Cancelled if the racing task is cancelled.
--   Either way the others are cancelled and done first.
function M.race(...)
  need_task "race"
  local tasks, n, _, opts = collect("race", ...)
  if opts ~= nil then error("coil: race takes no options", 2) end
  if n == 0 then error("coil: race needs at least one task or function", 2) end
  local ws = watch(tasks, n)
  local own = own_until_done(ws, tasks, n, "first")
  if own ~= nil then error(own, 0) end
  local winner = select(2, waitset_state(ws))
  return winner, result_of(tasks[winner])
end

-- Cancel scopes: timeout, move_on_after, a group's body ----------------------
--
-- A scope cancels its own task with an error object of its own, as a *soft*
-- cancellation (core.cancel(task, obj, true)), and recognises that object
-- when it comes back. The core lets a real cancellation that arrives before
-- delivery replace a soft one, so a real cancellation (task:cancel, an
-- owner's, the shutdown's) never turns into a Timeout. If the work ends on
-- its own before ours is delivered, ours is taken back (core.withdraw).
--
-- Per task we keep the stack of active scopes (nested ones) and which one's
-- cancellation is pending: an outer scope expiring while an inner one's is
-- pending would be absorbed by it, so it is marked `absorbed` and raised as
-- soon as the inner one comes back (or armed when the inner one ends
-- without it).

local states = setmetatable({}, { __mode = "k" }) -- task -> {top, pending}

local function arm(st, rec)
  st.pending = rec
  rec.absorbed = false
  cancel_with(rec.task, rec.obj, true)
end

--- Cancels the scope's work (soft), once; a no-op once the scope was left.
local function expire(rec)
  if rec.finished or rec.expired then return end
  rec.expired = true
  local st = states[rec.task]
  if not st then return end
  if st.pending then
    rec.absorbed = true -- ours would be absorbed by the one pending
  else
    arm(st, rec)
  end
end

local function outermost_absorbed(st)
  local found
  local r = st.top
  while r do
    if r.absorbed then found = r end
    r = r.prev
  end
  return found
end

--- Opens a scope in task me whose cancellation raises obj.
local function enter(me, obj)
  local st = states[me]
  if not st then
    st = {}
    states[me] = st
  end
  local rec = { task = me, prev = st.top, obj = obj, cancels = cancels(me) }
  st.top = rec
  return rec
end

--- Closes the scope rec once its work ended (ok, first: how pcall ended).
-- @return true if the work ended by the scope's own cancellation (consumed
--   here); false otherwise
-- @raise an outer scope's object when that one expired meanwhile and ours
--   came back: the outer scope consumes it
local function leave(rec, ok, first)
  local me = rec.task
  local st = states[me]
  rec.finished = true
  local mine = not ok and rawequal(first, rec.obj)
  if st.pending == rec then
    st.pending = nil
    -- the work ended on its own before ours was delivered: take it back
    if not mine then withdraw(rec.obj) end
  end
  st.top = rec.prev
  local outer = outermost_absorbed(st)
  if st.top == nil then states[me] = nil end

  if mine then
    if outer then
      -- an outer scope expired too: that level gets the cancellation (our
      -- delivery is its to consume)
      outer.absorbed = false
      st.pending = outer
      error(outer.obj, 0)
    end
    uncancel(me) -- ours, consumed: not a swallowed cancellation
    if cancels(me) > rec.cancels then
      -- the work caught a real cancellation and went on until ours came:
      -- that one still cancels (asyncio's Task.cancelling rule)
      error(Cancelled(), 0)
    end
    return true
  end
  if outer and st.pending == nil then arm(st, outer) end
  return false
end

--- Of two cancellations that reached task me while it waits for its
-- children (the first is kept so far), the one to raise: a real one
-- (task:cancel, an owner's, the shutdown's) wins over a scope's own (soft)
-- one delivered before it, which the scope would otherwise consume and so
-- swallow the real one.
function stronger(me, kept, new)
  if kept == nil then return new end
  if rawequal(kept, new) then return kept end
  local st = states[me]
  local r = st and st.top
  while r do
    if rawequal(r.obj, kept) then return new end
    r = r.prev
  end
  return kept
end

M._enter, M._expire, M._leave, M._stronger = enter, expire, leave, stronger

-- timeout ------------------------------------------------------------------

local function after_timeout(rec, timer, s, ok, ...)
  close_timer(timer)
  if leave(rec, ok, (...)) then error(Timeout(s), 0) end
  if ok then return ... end
  error((...), 0)
end

--- ⏳ coil.timeout(s, fn, ...): runs fn(...) in this task with a deadline.
-- @return fn's results
-- @raise coil.Timeout(s) once the work was cancelled at the deadline and its
--   cleanup ran; fn's own errors; Cancelled for a cancellation from outside
function M.timeout(s, fn, ...)
  check_seconds("timeout", s, 2)
  if not is_callable(fn) then
    error("coil: timeout expects a function, got " .. type(fn), 2)
  end
  local me = need_task "timeout"
  if s == huge then return fn(...) end
  local rec = enter(me, Cancelled(("timeout after %g s"):format(s)))
  local timer = new_timer(s, function() expire(rec) end, "timeout")
  return after_timeout(rec, timer, s, pcall(fn, ...))
end

-- move_on_after ------------------------------------------------------------

local function after_move_on(rec, timer, ok, ...)
  close_timer(timer)
  if leave(rec, ok, (...)) then return false end
  if ok then return true, ... end
  error((...), 0)
end

--- ⏳ coil.move_on_after(s, fn, ...): runs fn(...) in this task with a
-- deadline that ends the work quietly (Trio's move_on_after).
-- @return true, fn's results if it finished in time; false if it was
--   cancelled at the deadline (its cleanup ran)
-- @raise fn's own errors; Cancelled for a cancellation from outside (it
--   never turns into `false`)
function M.move_on_after(s, fn, ...)
  check_seconds("move_on_after", s, 2)
  if not is_callable(fn) then
    error("coil: move_on_after expects a function, got " .. type(fn), 2)
  end
  local me = need_task "move_on_after"
  if s == huge then return true, fn(...) end
  local rec = enter(me, Cancelled(("moved on after %g s"):format(s)))
  local timer = new_timer(s, function() expire(rec) end, "move_on_after")
  return after_move_on(rec, timer, pcall(fn, ...))
end

-- call_later -----------------------------------------------------------------

local Later = { __name = "coil.call_later" }
Later.__index = Later

function Later:__tostring()
  check_self(self, Later, "call_later:__tostring")
  return ("coil.call_later (%s)"):format(
    self._task and "started" or self._timer and "pending" or "cancelled")
end

--- Stops the call if it has not started.
-- @return true if this prevented it; false if it already started or was
--   cancelled before
function Later:cancel()
  check_self(self, Later, "call_later:cancel")
  local timer = self._timer
  if not timer then return false end
  self._timer = nil
  close_timer(timer)
  return true
end

--- @return the task running fn once it started, else nil
function Later:task()
  check_self(self, Later, "call_later:task")
  return self._task
end

--- coil.call_later(s, fn, ...) -> handle: runs fn(...) as a task after s
-- seconds (unless handle:cancel() came first, or the shutdown reached its
-- cancel step).
function M.call_later(s, fn, ...)
  check_seconds("call_later", s, 2)
  if not is_callable(fn) then
    error("coil: call_later expects a function, got " .. type(fn), 2)
  end
  local p = phase()
  if p == "closing" or p == "closed" then
    error("coil: the runtime is closing; call_later cannot start anything", 2)
  end
  local args = pack(...)
  local h = setmetatable({}, Later)
  local timer
  timer = new_timer(s, function()
    if h._timer ~= timer then return end
    h._timer = nil
    close_timer(timer)
    if shutting_down() then return end
    h._task = spawn(fn, unpack(args, 1, args.n))
  end, "call_later")
  h._timer = timer
  return h
end

core.gather, core.wait, core.race = M.gather, M.wait, M.race
core.timeout, core.call_later = M.timeout, M.call_later
core.move_on_after = M.move_on_after
-- helpers group.lua shares
M._need_task, M._is_callable, M._shutting_down = need_task, is_callable, shutting_down
package.loaded["coil.combinators"] = M
core.group = require("coil.group").group

return M
