--- The clock coil's timers run on (SPEC §4, busted "Virtual time"): libuv's
-- real clock, or a virtual one that moves only when nothing can run
-- (Trio's MockClock with autojump, Tokio's time::pause).
--
-- In real time nothing here is used: coil.sleep keeps the C heap of
-- sleepers and the combinators use uv timers. While virtual time is on,
-- the C core (src/clock.c) hands coil.sleep and coil.now to this module,
-- the combinators take their timers from M.after, and the core's check
-- handle calls M.jump once a whole turn of the loop, its I/O poll
-- included, made no task ready while no libuv request was in flight.
--
-- Times are whole milliseconds, rounded up, exactly as the real path
-- counts them, so that deadlines tie and order the same way.
local core = require "coil.core"
local uv = require "luv"

local error, pcall, setmetatable = error, pcall, setmetatable
local ceil, huge = math.ceil, math.huge
local park, wake, current = core.park, core.wake, core.current

local M = {
  --- true while virtual time is on
  on = false,
  --- the virtual time, in milliseconds (the C core reads it for coil.now)
  ms = 0,
  --- timers pending (the C core reads it: keep the loop turning)
  count = 0,
}

-- A binary min-heap of timers keyed by (due, seq); each knows its index.
local heap, seq = {}, 0

local function before(a, b)
  return a.due < b.due or (a.due == b.due and a.seq < b.seq)
end

local function place(i, e)
  heap[i] = e
  e.i = i
end

local function sift_up(i)
  local e = heap[i]
  while i > 1 do
    local parent = i // 2
    if not before(e, heap[parent]) then break end
    place(i, heap[parent])
    i = parent
  end
  place(i, e)
end

local function sift_down(i)
  local e, n = heap[i], M.count
  while true do
    local child = 2 * i
    if child > n then break end
    if child < n and before(heap[child + 1], heap[child]) then child = child + 1 end
    if not before(heap[child], e) then break end
    place(i, heap[child])
    i = child
  end
  place(i, e)
end

local function remove(e)
  local i = e.i
  if not i then return end
  e.i = nil
  local n = M.count
  local last = heap[n]
  heap[n] = nil
  M.count = n - 1
  if i == n then return end
  place(i, last)
  if i > 1 and before(last, heap[i // 2]) then sift_up(i) else sift_down(i) end
end

-- A pending timer; it answers the calls the combinators make on a uv timer.
local Timer = { __name = "coil.virtual_timer" }
Timer.__index = Timer

function Timer:is_closing() return self.closed end
function Timer:stop() remove(self) end
function Timer:close()
  self.closed = true
  remove(self)
end

function Timer:__tostring()
  return ("coil.virtual_timer (%s, due at %.3f s)"):format(self.what, self.due / 1000)
end

--- Runs fn() after s seconds of virtual time.
-- @tparam number s seconds (checked by the caller)
-- @tparam function fn called outside any task, like a uv timer's callback
-- @tparam string what the kind of timer, for reports ("sleep", "timeout", ...)
-- @return a timer with close() (is_closing() and stop() as a uv timer's)
function M.after(s, fn, what)
  local e = setmetatable({ fn = fn, what = what or "timer", closed = false }, Timer)
  if s >= huge then
    e.due = huge -- never fires; nothing to jump to
    return e
  end
  seq = seq + 1
  e.due, e.seq = M.ms + ceil(s * 1000), seq
  local n = M.count + 1
  M.count = n
  place(n, e)
  sift_up(n)
  return e
end

--- ⏳ coil.sleep(s) while virtual time is on (s > 0, checked by the core).
function M.sleep(s)
  local me = current()
  local e = M.after(s, function() wake(me) end, "sleep")
  local ok, err = pcall(park)
  if not ok then
    e:close()
    error(err, 0)
  end
end

--- Called by the core when no task can run: moves the clock to the next
-- deadline and fires every timer due then, in (deadline, start) order.
-- Timers started by those callbacks wait for the next jump.
function M.jump()
  local first = heap[1]
  if not first then return end
  if first.due > M.ms then M.ms = first.due end
  local last_seq = seq
  while true do
    local e = heap[1]
    if not e or e.due > M.ms or e.seq > last_seq then break end
    remove(e)
    e.closed = true
    e.fn()
  end
end

--- Turns virtual time on: the clock starts at the real time of now.
-- @raise if it is on already
function M.start()
  if M.on then error("coil: virtual time is already on", 2) end
  uv.update_time()
  M.ms, M.on = uv.now(), true
  core.virtual_clock(M)
end

--- Turns virtual time off. Timers still pending are dropped.
-- @return the list of those timers (what, due), for the test helper's report
function M.stop()
  local left = {}
  for i = 1, M.count do
    local e = heap[i]
    left[i] = e
    e.i, e.closed, heap[i] = nil, true, nil
  end
  table.sort(left, before)
  M.count, M.on = 0, false
  core.virtual_clock(nil)
  return left
end

return M
