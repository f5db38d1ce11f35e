--- Synchronisation primitives: events, queues, semaphores and locks.
-- Waiters are served in FIFO order and a cancelled waiter leaves no trace:
-- it never swallows a set, an item or a permit. The rule behind it: a waiter
-- is only ever handed something through core.wake, which refuses a task
-- that is no longer parked (already woken, or cancelled and not yet run);
-- the giver then hands the thing to the next waiter, or keeps it.
local core = require "coil.core"
local in_task = core.in_task

local setmetatable, error, pcall, type, tostring, rawget =
  setmetatable, error, pcall, type, tostring, rawget
-- the raw metatable: a table whose __metatable field imitates a coil
-- object's must not pass for one
local getmetatable = debug.getmetatable
local huge, floor = math.huge, math.floor
local math_type, tointeger = math.type, math.tointeger
local park, wake = core.park, core.wake

local M = {}

local function need_task(what)
  return in_task(what, 3)
end

--- The name a value goes by in messages: its metatable's __name, else its
-- type.
local function kind(v)
  local mt = getmetatable(v)
  local name = type(mt) == "table" and rawget(mt, "__name")
  return type(name) == "string" and name or type(v)
end

--- Raises `coil: bad self to <what> (a <expected> expected, got <kind>)`
-- unless v's metatable is mt: a method called with a dot, or on something
-- else, gets a clear message instead of coil's internals.
local function check_self(v, mt, what)
  if getmetatable(v) ~= mt then
    error(("coil: bad self to %s (a %s expected, got %s)")
          :format(what, rawget(mt, "__name"), kind(v)), 3)
  end
end
M.check_self = check_self

--- A weak set of the objects a constructor made: telling one of them from
-- another value is then a table lookup, where check_self calls
-- debug.getmetatable (a C call, ten times the cost) — on the paths taken
-- per message or per permit, that is most of what a method costs.
local function object_set() return setmetatable({}, { __mode = "k" }) end

-- FIFO wait lists -------------------------------------------------------

--- A FIFO of parked tasks; a slot is cleared when its task gives up. A slot
-- may carry a payload (q.payload[i]: the item of a waiting putter).
local function fifo() return { head = 1, tail = 0, payload = {} } end

local function push(q, task)
  local i = q.tail + 1
  q.tail = i
  q[i] = task
  return i
end

--- Parks the running task in q until woken; returns what it was woken with.
-- If it is cancelled meanwhile, its slot (and payload) is cleared and the
-- Cancelled re-raised: nobody can hand it anything any more.
local function wait_in(q, me, payload)
  local i = push(q, me)
  if payload ~= nil then q.payload[i] = payload end
  local ok, a, b = pcall(park)
  if not ok then
    if q[i] == me then
      q[i] = nil
      q.payload[i] = nil
    end
    error(a, 0)
  end
  return a, b
end

--- Takes the first task still parked in q, waking it with the values;
-- returns true and its payload, or false when no task is left.
local function wake_first(q, ...)
  local payload = q.payload
  for i = q.head, q.tail do
    local task, item = q[i], payload[i]
    q[i] = nil
    payload[i] = nil
    q.head = i + 1
    if task and wake(task, ...) then return true, item end
  end
  q.head, q.tail = 1, 0
  return false
end

--- How many tasks still wait in q.
local function waiting(q)
  local n = 0
  for i = q.head, q.tail do if q[i] then n = n + 1 end end
  return n
end

M.fifo, M.wait_in, M.wake_first, M.waiting = fifo, wait_in, wake_first, waiting

-- Events ----------------------------------------------------------------

local Event = {}
Event.__index = Event
local events = object_set()
Event.__name = "coil.event"

function Event:__tostring()
  check_self(self, Event, "event:__tostring")
  return ("coil.event (%s)"):format(self._set and "set" or "clear")
end

--- Sets the event: every waiter wakes; later waits return at once.
function Event:set()
  if not events[self] then check_self(self, Event, "event:set") end
  if self._set then return end
  self._set = true
  local q = self._waiters
  while wake_first(q, true) do end
end

--- Clears the event: later waits block until the next set.
function Event:clear()
  if not events[self] then check_self(self, Event, "event:clear") end
  self._set = false
end

--- @return boolean whether the event is set
function Event:is_set()
  if not events[self] then check_self(self, Event, "event:is_set") end
  return self._set
end

--- ⏳ Waits until the event is set.
-- @return true
-- @raise Cancelled if the task is cancelled while it waits
function Event:wait()
  if not events[self] then check_self(self, Event, "event:wait") end
  local me = need_task "event:wait"
  if self._set then return true end
  wait_in(self._waiters, me)
  return true
end

--- How many tasks wait (coil uses it to tell waiting-for-a-signal from a
-- deadlock).
function Event:_waiting() return waiting(self._waiters) end

--- coil.event() -> a new event, clear.
function M.event()
  local e = setmetatable({ _set = false, _waiters = fifo() }, Event)
  events[e] = true
  return e
end

-- Queues ----------------------------------------------------------------

local Queue = {}
Queue.__index = Queue
local queues = object_set()
Queue.__name = "coil.queue"

function Queue:__tostring()
  check_self(self, Queue, "queue:__tostring")
  return ("coil.queue (%d item(s)%s%s)"):format(
    self._tail - self._head + 1,
    self._max < huge and ", max " .. self._max or "",
    self._closed and ", closed" or "")
end

local function closed_error(what)
  error("coil: " .. what .. " on a closed queue", 3)
end

local function append(self, item)
  local t = self._tail + 1
  self._tail = t
  self._items[t] = item
end

-- Takes the oldest item; then, since a place is free, moves the item of the
-- first putter still waiting into the queue and lets that putter go.
local function take(self)
  local h, items = self._head, self._items
  local item = items[h]
  items[h] = nil
  if h == self._tail then
    self._head, self._tail = 1, 0
  else
    self._head = h + 1
  end
  local ok, moved = wake_first(self._putters, true)
  if ok then append(self, moved) end
  return item
end

--- ⏳ Puts an item at the end, waiting while the queue is full.
-- @param item any value but nil
-- @return true
-- @raise "coil: put on a closed queue" if the queue is (or gets) closed;
--   Cancelled if the task is cancelled while it waits (the item is then not
--   in the queue)
function Queue:put(item)
  if not queues[self] then check_self(self, Queue, "queue:put") end
  local me = need_task "queue:put"
  if item == nil then error("coil: queue:put: the item must not be nil", 2) end
  if self._closed then closed_error "put" end
  if wake_first(self._getters, item) then return true end
  if self._tail - self._head + 1 < self._max then
    append(self, item)
    return true
  end
  if not wait_in(self._putters, me, item) then closed_error "put" end
  return true
end

--- Puts an item if there is room, without waiting.
-- @return true, or false when the queue is full
-- @raise "coil: try_put on a closed queue"
function Queue:try_put(item)
  if not queues[self] then check_self(self, Queue, "queue:try_put") end
  if item == nil then error("coil: queue:try_put: the item must not be nil", 2) end
  if self._closed then closed_error "try_put" end
  if wake_first(self._getters, item) then return true end
  if self._tail - self._head + 1 < self._max then
    append(self, item)
    return true
  end
  return false
end

--- ⏳ Takes the oldest item, waiting while the queue is empty.
-- @return the item; or nil, "closed" once the queue is closed and empty
-- @raise Cancelled if the task is cancelled while it waits (no item is lost)
function Queue:get()
  if not queues[self] then check_self(self, Queue, "queue:get") end
  local me = need_task "queue:get"
  if self._tail >= self._head then return take(self) end
  if self._closed then return nil, "closed" end
  return wait_in(self._getters, me)
end

--- Takes the oldest item without waiting.
-- @return the item; or nil, "empty"; or nil, "closed" (closed and empty)
function Queue:try_get()
  if not queues[self] then check_self(self, Queue, "queue:try_get") end
  if self._tail >= self._head then return take(self) end
  return nil, self._closed and "closed" or "empty"
end

--- @return the number of items in the queue (putters still waiting with
-- theirs not counted)
function Queue:size()
  if not queues[self] then check_self(self, Queue, "queue:size") end
  return self._tail - self._head + 1
end

--- @return whether close was called
function Queue:is_closed()
  if not queues[self] then check_self(self, Queue, "queue:is_closed") end
  return self._closed
end

--- Closes the queue: no put succeeds any more (a waiting putter raises),
-- gets drain what is left and then return nil, "closed". Idempotent.
function Queue:close()
  if not queues[self] then check_self(self, Queue, "queue:close") end
  if self._closed then return end
  self._closed = true
  while wake_first(self._getters, nil, "closed") do end
  while wake_first(self._putters, false) do end
end

--- coil.queue([maxsize]) -> a FIFO queue; no maxsize (or 0) = unbounded.
function M.queue(maxsize)
  if maxsize == nil or maxsize == 0 then
    maxsize = huge
  elseif type(maxsize) ~= "number" or maxsize ~= maxsize or maxsize < 0
      or (maxsize ~= huge and maxsize ~= floor(maxsize)) then
    error("coil: queue: maxsize must be a non-negative integer, got "
          .. tostring(maxsize), 2)
  end
  local q = setmetatable({
    _items = {}, _head = 1, _tail = 0, _max = maxsize, _closed = false,
    _getters = fifo(), _putters = fifo(),
  }, Queue)
  queues[q] = true
  return q
end

-- Semaphores and locks -----------------------------------------------------

local Guard = { __close = function(g) g.sem:release() end }

-- The semaphores (and locks) made by new_semaphore, per metatable
local made = {}

--- Fills mt with the methods of a semaphore (what = "semaphore") or a lock
-- (what = "lock"): the same code, each set checking its own self.
local function semaphore_methods(mt, what)
  local mine = object_set()
  made[mt] = mine
  local function name(method) return what .. ":" .. method end
  local n_acquire, n_try, n_release, n_with, n_value =
    name "acquire", name "try_acquire", name "release", name "with", name "value"

  --- ⏳ Takes a permit, waiting (FIFO) while none is free.
  -- @return true
  -- @raise Cancelled if the task is cancelled while it waits (no permit is
  --   taken then)
  function mt:acquire()
    if not mine[self] then check_self(self, mt, n_acquire) end
    local me = need_task(n_acquire)
    local v = self._value
    if v > 0 then
      self._value = v - 1
      return true
    end
    -- woken with true: a releaser handed its permit straight to this task
    wait_in(self._waiters, me)
    return true
  end

  --- Takes a permit if one is free, without waiting.
  -- @return true, or false when none is free
  function mt:try_acquire()
    if not mine[self] then check_self(self, mt, n_try) end
    local v = self._value
    if v > 0 then
      self._value = v - 1
      return true
    end
    return false
  end

  --- Gives a permit back: to the first task still waiting, else to the pool.
  -- @raise if there is no permit out to give back
  function mt:release()
    if not mine[self] then check_self(self, mt, n_release) end
    if self._value >= self._n then
      error(what == "lock"
            and "coil: lock:release() on a lock that is not held"
            or ("coil: semaphore:release() without a matching acquire "
                .. "(all %d permit(s) are already free)"):format(self._n), 2)
    end
    if wake_first(self._waiters, true) then return end
    self._value = self._value + 1
  end

  --- ⏳ Runs fn(...) holding a permit; the permit is given back however fn
  -- ends (returned, raised, cancelled, closed by force).
  -- @return fn's results
  function mt:with(fn, ...)
    if not mine[self] then check_self(self, mt, n_with) end
    local fmt = getmetatable(fn)
    if type(fn) ~= "function" and not (type(fmt) == "table" and rawget(fmt, "__call")) then
      error("coil: " .. n_with .. " expects a function, got " .. type(fn), 2)
    end
    self:acquire()
    local guard <close> = self._guard -- luacheck: ignore (held for its __close)
    return fn(...)
  end

  --- Free permits.
  function mt:value()
    if not mine[self] then check_self(self, mt, n_value) end
    return self._value
  end
end

local function new_semaphore(n, mt)
  local s = setmetatable({ _value = n, _n = n, _waiters = fifo() }, mt)
  s._guard = setmetatable({ sem = s }, Guard)
  local mine = made[mt]
  mine[s] = true
  return s
end

local Semaphore = { __name = "coil.semaphore" }
Semaphore.__index = Semaphore
semaphore_methods(Semaphore, "semaphore")

function Semaphore:__tostring()
  check_self(self, Semaphore, "semaphore:__tostring")
  return ("coil.semaphore (%d of %d free, %d waiting)"):format(
    self._value, self._n, waiting(self._waiters))
end

--- coil.semaphore(n) -> a semaphore with n permits (a non-negative integer).
function M.semaphore(n)
  local count = math_type(n) and tointeger(n) -- 2.0 is 2; 2^63 is no integer
  if not count or count < 0 then
    error("coil: semaphore: n must be a non-negative integer, got " .. tostring(n), 2)
  end
  return new_semaphore(count, Semaphore)
end

local Lock = { __name = "coil.lock" }
Lock.__index = Lock
semaphore_methods(Lock, "lock")

function Lock:__tostring()
  check_self(self, Lock, "lock:__tostring")
  return ("coil.lock (%s, %d waiting)"):format(
    self._value == 0 and "held" or "free", waiting(self._waiters))
end

--- @return whether the lock is held
function Lock:locked()
  check_self(self, Lock, "lock:locked")
  return self._value == 0
end

--- coil.lock() -> a lock: a semaphore of one permit.
function M.lock() return new_semaphore(1, Lock) end

core.event, core.queue, core.semaphore, core.lock = M.event, M.queue, M.semaphore, M.lock

return M
