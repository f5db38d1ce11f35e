--- `uv.run`, `uv.stop`, `uv.loop_alive` and `uv.loop_close` as a plain luv
-- program expects them, on a loop that coil runs (SPEC §7). Inside a task,
-- `uv.run()` suspends the task until nothing of the script's would keep a
-- plain luv loop alive, or until `uv.stop()`; outside coil's loop (stock Lua
-- before or after `coil.run`) luv's own functions run unchanged.
local core = require "coil.core"
local uv = require "luv"

local pairs, ipairs, next, error = pairs, ipairs, next, error
local current, park, wake, state, tasks, loop_info =
  core.current, core.park, core.wake, core.state, core.tasks,
  core.loop_info

local uv_run, uv_stop, uv_loop_alive, uv_loop_close, loop_mode =
  uv.run, uv.stop, uv.loop_alive, uv.loop_close, uv.loop_mode

local MODES = { default = true, once = true, nowait = true }

local waiters = {}      -- task -> {mode =, seen = callback count}
local stop_pending = false
local prepare            -- runs before each poll while a uv.run waits
local busy = core.hooks.busy -- the script's handles keep the loop alive

--- Whether coil drives the loop now (the `coil` command, coil.run, a host's
-- loop): luv's context then names a run mode.
local function coil_runs_loop() return loop_mode() ~= nil end

--- A task other than the uv.run callers that can still run by itself.
local function others_can_run()
  for _, task in ipairs(tasks()) do
    if not waiters[task] then
      local s, wait = state(task)
      if s ~= "suspended" or wait == "sleep" then return true end
    end
  end
  return false
end

--- What would keep a plain luv loop alive: the script's referenced active
-- handles and the pending requests.
local function loop_alive()
  return busy() or (loop_info()) > 0
end

local function wake_all(stopped)
  for task in pairs(waiters) do
    waiters[task] = nil
    wake(task, stopped)
  end
end

local function before_poll()
  local _, callbacks = loop_info()
  local alive = loop_alive()
  local keep = alive or others_can_run()
  for task, w in pairs(waiters) do
    -- this callback is one; any other one means an event was handled
    local handled = callbacks > w.seen + 1
    w.seen = callbacks
    if not keep or (w.mode == "once" and (handled or not alive)) then
      waiters[task] = nil
      wake(task, false)
    end
  end
  if not next(waiters) then prepare:stop() end
end

--- Suspends the calling task as luv's uv_run would block it.
local function wait(mode)
  if stop_pending then
    stop_pending = false
    return loop_alive()
  end
  if mode == "nowait" then
    core.sleep(0)
    return loop_alive()
  end
  if not loop_alive() and not others_can_run() then return false end
  if not prepare or prepare:is_closing() then
    prepare = uv.new_prepare()
    core.untrack(prepare) -- coil's, not the script's
  end
  local me = current()
  local _, callbacks = loop_info()
  waiters[me] = { mode = mode, seen = callbacks }
  if not prepare:is_active() then prepare:start(before_poll) end
  local ok, stopped = pcall(park)
  waiters[me] = nil
  if not next(waiters) and prepare:is_active() then prepare:stop() end
  if not ok then error(stopped, 0) end
  if stopped then return loop_alive() end
  return mode ~= "default" and loop_alive()
end

--- uv.run([mode]) -> bool: see the top of this file.
function uv.run(mode)
  if mode == nil then mode = "default" end
  if not MODES[mode] then
    return uv_run(mode) -- luv's own argument error
  end
  if current() then return wait(mode) end
  if coil_runs_loop() then return nil, "loop already running" end
  return uv_run(mode)
end

--- uv.stop(): the waiting uv.run calls return; with none, the next one
-- returns at once (libuv's stop flag).
function uv.stop()
  if next(waiters) then return wake_all(true) end
  if coil_runs_loop() or current() then
    stop_pending = true
    return
  end
  return uv_stop()
end

--- uv.loop_mode(): task code is not inside a uv.run; callbacks run inside
-- the one that waits (or coil's own "default").
function uv.loop_mode()
  if current() then return nil end
  local _, w = next(waiters)
  if w then return w.mode end
  return loop_mode()
end

function uv.loop_alive()
  if coil_runs_loop() or current() then return loop_alive() end
  return uv_loop_alive()
end

--- uv.loop_close(): coil closes its loop itself (SPEC §3 step 7); inside it,
-- this answers as luv would for the script's handles, and closes nothing.
function uv.loop_close()
  if coil_runs_loop() or current() then
    if loop_alive() or #core.open_handles() > 0 then
      return nil, "EBUSY: resource busy or locked", "EBUSY"
    end
    return 0
  end
  return uv_loop_close()
end

--- A uv.run waiting is not a deadlock: the prepare handle wakes it on the
-- next turn of the loop if nothing is left.
function core.hooks.busy()
  return next(waiters) ~= nil or busy()
end

--- The prepare handle goes with the script's handles at the end of a run.
local close_handles = core.hooks.close_handles
function core.hooks.close_handles(...)
  if prepare and not prepare:is_closing() then
    wake_all(false)
    prepare:close()
  end
  prepare = nil
  return close_handles(...)
end

return {}
