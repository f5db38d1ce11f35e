--- Synchronisation primitives. Waiters are served in FIFO order and a
-- cancelled waiter leaves no trace: it never swallows a set, an item or a
-- permit (a waiter is only handed something through core._wake, which
-- refuses a task that is no longer parked).
local core = require "coil"

local setmetatable, error, pcall = setmetatable, error, pcall
local current, park, wake = core.current, core._park, core._wake

local M = {}

local function need_task(what)
  local me = current()
  if not me then error("coil: " .. what .. " must be called from inside a task", 3) end
  return me
end

--- A FIFO of parked tasks; a slot is cleared when its task gives up.
local function fifo() return { head = 1, tail = 0 } end

local function push(q, task)
  local i = q.tail + 1
  q.tail = i
  q[i] = task
  return i
end

--- Parks the running task in q until woken; returns what it was woken with.
-- If it is cancelled meanwhile, its slot is cleared and Cancelled re-raised.
local function wait_in(q, me)
  local i = push(q, me)
  local ok, a, b = pcall(park)
  if not ok then
    if q[i] == me then q[i] = nil end
    error(a, 0)
  end
  return a, b
end

--- Wakes the first task still parked in q with the values; false if none.
local function wake_first(q, ...)
  for i = q.head, q.tail do
    local task = q[i]
    q[i] = nil
    q.head = i + 1
    if task and wake(task, ...) then return true end
  end
  q.head, q.tail = 1, 0
  return false
end

M.fifo, M.wait_in, M.wake_first = fifo, wait_in, wake_first

-- Events ----------------------------------------------------------------

local Event = {}
Event.__index = Event
Event.__name = "coil.event"

function Event:__tostring()
  return ("coil.event (%s)"):format(self._set and "set" or "clear")
end

--- Sets the event: every waiter wakes; later waits return at once.
function Event:set()
  if self._set then return end
  self._set = true
  local q = self._waiters
  while wake_first(q, true) do end
end

function Event:clear() self._set = false end

function Event:is_set() return self._set end

--- ⏳ Waits until the event is set.
function Event:wait()
  if self._set then return true end
  wait_in(self._waiters, need_task "event:wait")
  return true
end

--- How many tasks wait (coil uses it to tell waiting-for-a-signal from a
-- deadlock).
function Event:_waiting()
  local n, q = 0, self._waiters
  for i = q.head, q.tail do if q[i] then n = n + 1 end end
  return n
end

function M.event()
  return setmetatable({ _set = false, _waiters = fifo() }, Event)
end

core.event = M.event

return M
