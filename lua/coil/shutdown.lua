--- The Lua side of the shutdown sequence (SPEC §3): the stopping() event, the
-- on_shutdown hooks and the driver task that runs them (step 2), on_signal,
-- and the task dump.
local core = require "coil.core"
local sync = require "coil.sync"
local uv = require "luv"

local hooks = core.hooks
local spawn, is_cancelled = core.spawn, core.is_cancelled
local setmetatable, pcall, ipairs, tostring = setmetatable, pcall, ipairs, tostring
local format, concat = string.format, table.concat

local check_self = sync.check_self
local stopping = sync.event()
local shutdown_hooks = {}
local intake_stoppers = {}

--- core.on_stop_intake(fn): fn() is called, as a plain function, at the very
-- start of step 2, before any on_shutdown hook: listeners stop accepting,
-- children are sent SIGTERM.
function core.on_stop_intake(fn)
  intake_stoppers[#intake_stoppers + 1] = fn
end

--- coil.stopping() -> event set when the shutdown begins.
function core.stopping() return stopping end

--- A new run (coil.run again): nothing of the last one carries over — a
-- fresh stopping() event, and no hook registered by a task of an earlier
-- run (a hook registered between runs, outside any task, is for this one).
function hooks.new_run()
  stopping = sync.event()
  for i = #shutdown_hooks, 1, -1 do
    if shutdown_hooks[i].from_task then table.remove(shutdown_hooks, i) end
  end
end

local Hook = { __name = "coil.shutdown_hook" }
Hook.__index = Hook

--- Removes the hook; a no-op once it ran or was removed.
function Hook:remove()
  check_self(self, Hook, "shutdown_hook:remove")
  for i = #shutdown_hooks, 1, -1 do
    if shutdown_hooks[i] == self then table.remove(shutdown_hooks, i) end
  end
end

--- coil.on_shutdown(fn) -> handle: fn runs as a task at step 2, newest
-- first, each awaited before the next.
function core.on_shutdown(fn)
  if type(fn) ~= "function" then
    error("coil: on_shutdown expects a function, got " .. type(fn), 2)
  end
  local hook = setmetatable({ fn = fn, from_task = core.current() ~= nil }, Hook)
  shutdown_hooks[#shutdown_hooks + 1] = hook
  return hook
end

--- Step 2, run by C as a task: set stopping(), run the hooks newest first,
-- then cancel everything (step 3).
function hooks.drive()
  core.current():name("shutdown")
  stopping:set()
  for _, stop in ipairs(intake_stoppers) do
    local ok, err = pcall(stop)
    if not ok and not is_cancelled(err) then
      core.report("stopping intake failed: " .. tostring(err))
    end
  end
  while #shutdown_hooks > 0 do
    local hook = table.remove(shutdown_hooks)
    local task = spawn(hook.fn)
    task:name("on_shutdown hook")
    local ok, err = pcall(task.await, task)
    if not ok and not is_cancelled(err) then
      core.report("an on_shutdown hook failed: " .. tostring(err))
    end
  end
  core.cancel_all()
end

-- Signals --------------------------------------------------------------

local handlers = {} -- name -> list of handles
local watchers = {} -- name -> the luv signal handle watching it, if any

local SignalHandle = { __name = "coil.signal_handle" }
SignalHandle.__index = SignalHandle

--- Stops the handler; for SIGINT/SIGTERM/SIGHUP the default shutdown comes
-- back once no handler is left.
function SignalHandle:close()
  check_self(self, SignalHandle, "signal_handle:close")
  local list = handlers[self.name]
  if not list then return end
  for i = #list, 1, -1 do
    if list[i] == self then table.remove(list, i) end
  end
  if #list == 0 then
    handlers[self.name] = nil
    core.override(self.name, false)
    -- the watcher belongs to the name, not to the handle that opened it
    local sig = watchers[self.name]
    watchers[self.name] = nil
    if sig and not sig:is_closing() then sig:close() end
  end
end

local function dispatch(name)
  local list = handlers[name]
  if not list then return end
  for _, handle in ipairs(list) do
    spawn(handle.fn, name):name("on_signal " .. name)
  end
end
hooks.dispatch_signal = dispatch

--- coil.on_signal(name, fn) -> handle: fn(name) runs as a task on each such
-- signal. For SIGINT/SIGTERM/SIGHUP it replaces the default shutdown.
function core.on_signal(name, fn)
  if type(name) ~= "string" or not core.signum(name) then
    error("coil: on_signal: unknown signal " .. tostring(name), 2)
  end
  if type(fn) ~= "function" then
    error("coil: on_signal expects a function, got " .. type(fn), 2)
  end
  if not name:match "^SIG" then name = "SIG" .. name end
  local handle = setmetatable({ name = name, fn = fn }, SignalHandle)
  local list = handlers[name]
  if not list then
    list = {}
    handlers[name] = list
    if not core.override(name, true) and name ~= "SIGUSR1" then
      local sig = uv.new_signal()
      sig:start(name:lower(), function() dispatch(name) end)
      sig:unref()
      watchers[name] = sig
    end
  end
  list[#list + 1] = handle
  return handle
end

--- Whether a stall is a wait for a signal rather than a deadlock.
function hooks.waiting_for_signal()
  return stopping:_waiting() > 0 or next(handlers) ~= nil
end

-- The task dump -----------------------------------------------------------

--- coil.dump() -> string: every live task, its name, state, age and where
-- it waits.
function core.dump()
  local tasks = core.tasks()
  local now = core.now()
  local lines = { format("task dump: %d task(s)", #tasks) }
  for _, task in ipairs(tasks) do
    local state, wait, _, started = core.state(task)
    if wait ~= "" then state = state .. " in " .. wait end
    lines[#lines + 1] = format("task '%s' (%s, age %.1f s)", task:name(),
                               state, now - started)
    local tb = core.traceback(task)
    if tb ~= "" then
      lines[#lines + 1] = "  " .. tb:gsub("\n", "\n  ")
    end
  end
  return concat(lines, "\n")
end

function hooks.usr1()
  core.report(core.dump())
  dispatch "SIGUSR1"
end

return { stopping = stopping }
