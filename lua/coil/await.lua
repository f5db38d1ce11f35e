--- coil.await: turns a luv call that takes a callback into an awaiting call.
-- The task parks until the callback fires and gets the callback's arguments.
-- A task cancelled meanwhile cancels the request where libuv can (uv_cancel
-- for fs, getaddrinfo and work requests still queued); the callback that
-- comes later anyway (libuv always calls it exactly once) is then swallowed,
-- or handed to a `late` function that releases what it brings (an fd a
-- cancelled fs_open still opened, say). It never resumes a task that stopped
-- waiting for it.
local core = require "coil"
local uv = require "luv"

local current, park, wake = core.current, core._park, core._wake
local type, select, error, pcall, tostring = type, select, error, pcall, tostring
local pack, unpack = table.pack, table.unpack

-- Requests started through here whose callback has not fired yet (the
-- specs check that cancelling leaves none behind).
local in_flight = 0

-- libuv's messages (UV_ERRNO_MAP), to turn the bare error names luv gives
-- stream, connect and getaddrinfo callbacks ("ECONNREFUSED") into the
-- "NAME: message" strings its synchronous failures give.
local messages = {
  E2BIG = "argument list too long", EACCES = "permission denied",
  EADDRINUSE = "address already in use",
  EADDRNOTAVAIL = "address not available",
  EAFNOSUPPORT = "address family not supported",
  EAGAIN = "resource temporarily unavailable",
  EAI_ADDRFAMILY = "address family not supported",
  EAI_AGAIN = "temporary failure", EAI_BADFLAGS = "bad ai_flags value",
  EAI_BADHINTS = "invalid value for hints", EAI_CANCELED = "request canceled",
  EAI_FAIL = "permanent failure", EAI_FAMILY = "ai_family not supported",
  EAI_MEMORY = "out of memory", EAI_NODATA = "no address",
  EAI_NONAME = "unknown node or service",
  EAI_OVERFLOW = "argument buffer overflow",
  EAI_PROTOCOL = "resolved protocol is unknown",
  EAI_SERVICE = "service not available for socket type",
  EAI_SOCKTYPE = "socket type not supported",
  EALREADY = "connection already in progress", EBADF = "bad file descriptor",
  EBUSY = "resource busy or locked", ECANCELED = "operation canceled",
  ECHARSET = "invalid Unicode character",
  ECONNABORTED = "software caused connection abort",
  ECONNREFUSED = "connection refused", ECONNRESET = "connection reset by peer",
  EDESTADDRREQ = "destination address required",
  EEXIST = "file already exists",
  EFAULT = "bad address in system call argument", EFBIG = "file too large",
  EHOSTUNREACH = "host is unreachable", EINTR = "interrupted system call",
  EINVAL = "invalid argument", EIO = "i/o error",
  EISCONN = "socket is already connected",
  EISDIR = "illegal operation on a directory",
  ELOOP = "too many symbolic links encountered",
  EMFILE = "too many open files", EMSGSIZE = "message too long",
  ENAMETOOLONG = "name too long", ENETDOWN = "network is down",
  ENETUNREACH = "network is unreachable", ENFILE = "file table overflow",
  ENOBUFS = "no buffer space available", ENODEV = "no such device",
  ENOENT = "no such file or directory", ENOMEM = "not enough memory",
  ENONET = "machine is not on the network",
  ENOPROTOOPT = "protocol not available",
  ENOSPC = "no space left on device", ENOSYS = "function not implemented",
  ENOTCONN = "socket is not connected", ENOTDIR = "not a directory",
  ENOTEMPTY = "directory not empty",
  ENOTSOCK = "socket operation on non-socket",
  ENOTSUP = "operation not supported on socket",
  EOVERFLOW = "value too large for defined data type",
  EPERM = "operation not permitted", EPIPE = "broken pipe",
  EPROTO = "protocol error", EPROTONOSUPPORT = "protocol not supported",
  EPROTOTYPE = "protocol wrong type for socket", ERANGE = "result too large",
  EROFS = "read-only file system",
  ESHUTDOWN = "cannot send after transport endpoint shutdown",
  ESPIPE = "invalid seek", ESRCH = "no such process",
  ETIMEDOUT = "connection timed out", ETXTBSY = "text file is busy",
  EXDEV = "cross-device link not permitted", UNKNOWN = "unknown error",
  EOF = "end of file", ENXIO = "no such device or address",
  EMLINK = "too many links", EHOSTDOWN = "host is down",
  EREMOTEIO = "remote I/O error", ENOTTY = "inappropriate ioctl for device",
  EFTYPE = "inappropriate file type or format",
  EILSEQ = "illegal byte sequence",
  ESOCKTNOSUPPORT = "socket type not supported",
}

--- core._uv_error(err) -> "NAME: message" for a bare libuv error name;
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

--- core._await(late, on_cancel, fn, ...) ⏳: the engine of coil.await.
-- `late(...)`, if given, receives the arguments of a callback that fired
-- after the task stopped waiting (to release what it brings); `on_cancel(req)`,
-- if given, replaces the default uv_cancel of the request when the task is
-- cancelled (closing a handle cancels its connect or write requests); false
-- leaves the request alone (a write, which libuv cannot cancel).
local function await(late, on_cancel, fn, ...)
  local me = current()
  if not me then
    error("coil: await must be called from inside a task", 2)
  end
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
      if not ok then core._report("a late I/O callback failed: " .. tostring(err)) end
    end
  end
  local n = select("#", ...)
  local args = pack(...)
  args[n + 1] = callback
  local req, err, name = fn(unpack(args, 1, n + 1))
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
      if not ok then core._report("cancelling an I/O request failed: " .. tostring(e)) end
    elseif on_cancel == nil then
      cancel_request(req)
    end
  end
  error(results[2], 0)
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
  if not current() then
    error("coil: await must be called from inside a task", 2)
  end
  if type(fn) ~= "function" then
    error("coil: await expects a function, got " .. type(fn), 2)
  end
  return await(nil, nil, fn, ...)
end

core._await = await
core._uv_error = uv_error
--- core._requests() -> number of coil.await requests still in flight.
function core._requests() return in_flight end

return coil_await
