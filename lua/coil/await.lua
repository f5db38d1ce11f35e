--- coil.await: turns a luv call that takes a callback into an awaiting call.
-- The task parks until the callback fires and gets the callback's arguments.
-- A task cancelled meanwhile cancels the request where libuv can (uv_cancel
-- for fs, getaddrinfo and work requests still queued); the callback that
-- comes later anyway (libuv always calls it exactly once) is then swallowed,
-- or handed to a `late` function that releases what it brings (an fd a
-- cancelled fs_open still opened, say). It never resumes a task that stopped
-- waiting for it.
local core = require "coil.core"
local in_task = core.in_task
local uv = require "luv"

local park, wake = core.park, core.wake
local type, select, error, pcall, tostring = type, select, error, pcall, tostring
local pack, unpack = table.pack, table.unpack

-- Requests started through here whose callback has not fired yet (the
-- specs check that cancelling leaves none behind).
local in_flight = 0

-- libuv's messages by error name, from libuv itself, to turn the bare names
-- luv gives stream, connect and getaddrinfo callbacks ("ECONNREFUSED") into
-- the "NAME: message" strings its synchronous failures give.
local messages = core.uv_errors()

--- core.uv_error(err) -> "NAME: message" for a bare libuv error name;
-- anything else (nil, an already full message) is returned unchanged.
local function uv_error(err)
  local message = type(err) == "string" and messages[err]
  if message then return err .. ": " .. message end
  return err
end

local function cancel_request(req)
  if type(req) == "userdata" then
    -- libuv cancels only what still waits in the threadpool's queue; a
    -- request already running finishes and its callback comes anyway
    pcall(uv.cancel, req)
  end
end

--- core.await_request(late, on_cancel, fn, ...) ⏳: the engine of coil.await.
-- `late(...)`, if given, receives the arguments of a callback that fired
-- after the task stopped waiting (to release what it brings); `on_cancel(req)`,
-- if given, replaces the default uv_cancel of the request when the task is
-- cancelled (closing a handle cancels its connect or write requests); false
-- leaves the request alone (a write, which libuv cannot cancel).
local function await_at(late, on_cancel, at, fn, ...)
  local me = in_task("await", 2)
  -- state: "start" until parked, then "parked"; "early" if the callback
  -- fired before we parked; "done" once we took the results; "gone" when
  -- the task stopped waiting.
  local state, early, fired = "start", nil, false
  local function callback(...)
    -- only the first call counts (a repeating timer's next ones are ignored)
    if fired then return end
    fired = true
    in_flight = in_flight - 1
    if state == "parked" then
      if wake(me, ...) then
        state = "done"
        return
      end
      -- cancelled, not yet resumed: it will not take these results
      state = "gone"
    elseif state == "start" then
      state, early = "early", pack(...)
      return
    end
    if late then
      local ok, err = pcall(late, ...)
      if not ok then core.report("a late I/O callback failed: " .. tostring(err)) end
    end
  end
  local args = pack(...)
  args[at] = callback
  local req, err, name = fn(unpack(args, 1, at))
  if req == nil and err ~= nil then
    -- failed at once: libuv never calls the callback then
    state = "done"
    return err, name
  end
  in_flight = in_flight + 1 -- (a callback that already fired took one off)
  if state == "early" then
    state = "done"
    return unpack(early, 1, early.n)
  end
  state = "parked"
  local results
  repeat
    results = pack(pcall(park))
    -- a wake-up that did not come from the callback is not ours: wait on
  until not results[1] or state == "done"
  if results[1] then return unpack(results, 2, results.n) end
  if state == "parked" then
    state = "gone"
    if on_cancel then
      local ok, e = pcall(on_cancel, req)
      if not ok then core.report("cancelling an I/O request failed: " .. tostring(e)) end
    elseif on_cancel == nil then
      cancel_request(req)
    end
  end
  error(results[2], 0)
end

local function await(late, on_cancel, fn, ...)
  return await_at(late, on_cancel, select("#", ...) + 1, fn, ...)
end

--- coil.await(fn, ...) ⏳ calls `fn(..., callback)` and waits for the
-- callback; returns the callback's arguments.
-- @tparam function fn a luv function whose last argument is a callback
-- @return the arguments the callback received. If `fn` fails at once
-- (returns `nil, err`), its callback never fires and `err, name` is returned
-- in the callback's first position, as luv's err-first callbacks would get it.
-- @raise `Cancelled` if the task is cancelled meanwhile: the request is
-- cancelled where libuv allows it and its callback is ignored when it fires.
local function coil_await(fn, ...)
  in_task("await", 2)
  if type(fn) ~= "function" then
    error("coil: await expects a function, got " .. type(fn), 2)
  end
  return await(nil, nil, fn, ...)
end

--- coil.await_at(n, fn, ...) ⏳ like coil.await, with the callback as
-- the n-th argument of fn: the arguments between the last one given and n
-- are nil (`coil.await_at(4, uv.fs_open, path, "r")` calls
-- `uv.fs_open(path, "r", nil, callback)`).
-- @raise if n is not an integer above the number of arguments given
function core.await_at(n, fn, ...)
  in_task("await_at", 2)
  if math.type(n) ~= "integer" or n <= select("#", ...) then
    error(("coil: await_at: n must be an integer above the %d argument(s) given, got %s")
          :format(select("#", ...), tostring(n)), 2)
  end
  if type(fn) ~= "function" then
    error("coil: await_at expects a function, got " .. type(fn), 2)
  end
  return await_at(nil, nil, n, fn, ...)
end

core.await_request = await
core.uv_error = uv_error
--- core.requests() -> number of coil.await requests still in flight.
function core.requests() return in_flight end

return coil_await
