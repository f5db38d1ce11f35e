--- Raw luv signal watchers on SIGINT, SIGTERM and SIGHUP take the signal
-- over as `coil.on_signal` does (SPEC §4), and closing or stopping them gives
-- the default shutdown back. libuv's own watcher would replace coil's
-- handler for the whole process and, once stopped, reset the signal to its
-- default action; so such a watcher is never started in libuv: coil's
-- handler dispatches to it instead. Other signals go to libuv unchanged.
local core = require "coil.core"
local uv = require "luv"

local setmetatable, getmetatable, type = setmetatable, getmetatable, type

local TAKEN = { SIGINT = "sigint", SIGTERM = "sigterm", SIGHUP = "sighup" }
local BY_NUMBER = { [2] = "SIGINT", [15] = "SIGTERM", [1] = "SIGHUP" }

local taken = setmetatable({}, { __mode = "k" }) -- handle -> on_signal handle

--- "sigint", "SIGINT", "INT" or 2 -> "SIGINT"; nil for other signals.
local function taken_name(signum)
  if type(signum) == "number" then return BY_NUMBER[signum] end
  if type(signum) ~= "string" then return nil end
  local name = signum:upper()
  if not name:match "^SIG" then name = "SIG" .. name end
  return TAKEN[name] and name or nil
end

local function release(handle)
  local listener = taken[handle]
  if listener then
    taken[handle] = nil
    listener:close()
    return true
  end
end

local function wrap_start(raw_start, oneshot)
  return function(handle, signum, callback, ...)
    local name = taken_name(signum)
    if not name or type(callback) ~= "function" and
        not (type(callback) == "table" and getmetatable(callback)) then
      release(handle)
      return raw_start(handle, signum, callback, ...)
    end
    release(handle)
    local luv_name = TAKEN[name]
    taken[handle] = core.on_signal(name, function()
      if oneshot then release(handle) end
      callback(luv_name)
    end)
    return 0
  end
end

local raw_stop, raw_close, raw_is_active =
  uv.signal_stop, uv.close, uv.is_active

local function stop(handle, ...)
  if release(handle) then return 0 end
  return raw_stop(handle, ...)
end

local function close(handle, ...)
  release(handle)
  return raw_close(handle, ...)
end

local function is_active(handle, ...)
  if taken[handle] then return true end
  return raw_is_active(handle, ...)
end

uv.signal_start = wrap_start(uv.signal_start, false)
uv.signal_start_oneshot = wrap_start(uv.signal_start_oneshot, true)
uv.signal_stop = stop
uv.close = close
uv.is_active = is_active

-- the methods of signal handles are the same functions
-- (luv registers the metatable by its name: no probe handle is opened, whose
-- close callback would still be pending if the runtime were freed unrun)
do
  local methods = debug.getregistry().uv_signal.__index
  methods.start, methods.start_oneshot = uv.signal_start,
    uv.signal_start_oneshot
  methods.stop, methods.close, methods.is_active = stop, close, is_active
end

-- (a taken watcher is active: the loop emulation and uv.walk count it as
-- libuv would count a started one)
return taken
