--- coil.io: the process's standard streams as coil streams, whatever they
-- are. Standard input is read through a luv handle when it is a terminal,
-- a pipe or a socket (non-blocking: a read never blocks the other tasks,
-- and a task waiting in it is cancelled at once on shutdown); a regular
-- file (or /dev/null) cannot be polled, so it is read with fs requests on
-- the thread pool, which never wait long for a file. Standard output and
-- error are written with fs requests, one at a time and in order, so the
-- descriptors keep their blocking mode and print() / io.write go on
-- working beside them.
local core = require "coil.core"
local uv = require "luv"
local stream_mod = require "coil.stream"

local setmetatable, pairs, pcall, tostring, error = setmetatable, pairs, pcall, tostring, error

local M = {}

local CHUNK = 64 * 1024

-- A look-alike of a luv stream handle over a file descriptor, driven by fs
-- requests: what coil.stream needs (read_start, read_stop, write,
-- is_closing, close). The descriptor itself is never closed (it is one of
-- the process's standard ones).
local Fd = { __name = "coil.fd" }
Fd.__index = Fd

function Fd:__tostring() return ("coil.fd (%d)"):format(self.fd) end

local function new_fd(fd, readable)
  return setmetatable({ fd = fd, readable = readable, closing = false,
                        reading = false, busy = false,
                        on_read = nil, writes = {}, whead = 1, wtail = 0,
                        writing = false }, Fd)
end

local function issue_read(self)
  self.busy = true
  local ok, err = uv.fs_read(self.fd, CHUNK, -1, function(err, data)
    self.busy = false
    if self.closing then return end
    -- delivered even after read_stop: coil.stream keeps it for the next read
    if err then self.on_read(err)
    elseif data == "" then self.on_read(nil, nil)
    else self.on_read(nil, data) end
  end)
  if not ok then
    self.busy = false
    return nil, err
  end
  return true
end

function Fd:read_start(cb)
  if not self.readable then return nil, core.uv_error "EBADF" .. " (not readable)" end
  self.on_read, self.reading = cb, true
  if self.busy then return true end
  return issue_read(self)
end

function Fd:read_stop() self.reading = false return true end
function Fd:is_closing() return self.closing end
function Fd:close() self.closing = true end

local pump

-- EAGAIN: the descriptor is non-blocking after all (a socket shared with a
-- standard input that libuv made non-blocking): try again shortly.
local function retry_later(self)
  local timer = uv.new_timer()
  core.untrack(timer)
  timer:start(5, 0, function()
    timer:close()
    pump(self)
  end)
end

-- Writes the queued data one request at a time, in order.
function pump(self)
  local w = self.writes[self.whead]
  if not w or self.closing then
    self.writing = false
    return
  end
  self.writing = true
  local ok, err = uv.fs_write(self.fd, w.data, -1, function(err, n)
    if not err and n < #w.data then
      w.data = w.data:sub(n + 1)
      return pump(self)
    end
    if err and tostring(err):match "^EAGAIN" then return retry_later(self) end
    self.writes[self.whead] = nil
    self.whead = self.whead + 1
    w.cb(err)
    pump(self)
  end)
  if not ok then
    self.writes[self.whead] = nil
    self.whead = self.whead + 1
    w.cb(err)
    return pump(self)
  end
end

function Fd:write(data, cb)
  if self.closing then return nil, core.uv_error "EPIPE" end
  self.wtail = self.wtail + 1
  self.writes[self.wtail] = { data = data, cb = cb }
  if not self.writing then pump(self) end
  return true
end

-- The open standard streams: closed with the handles at the end of the run.
local open = {}

local function make(fd, name)
  local kind = uv.guess_handle(fd)
  local handle
  if fd == 0 then
    if kind == "tty" then handle = uv.new_tty(fd, true)
    elseif kind == "pipe" then
      handle = uv.new_pipe(false)
      if not handle:open(fd) then handle:close() handle = nil end
    elseif kind == "tcp" then
      handle = uv.new_tcp()
      if not handle:open(fd) then handle:close() handle = nil end
    end
    -- the standard streams last as long as the run: not the script's
    if handle then core.untrack(handle) end
  end
  local s = stream_mod.new(handle or new_fd(fd, fd == 0), name, false, true)
  if handle then
    -- libuv made the descriptor non-blocking; a pipe's other readers (the
    -- shell's next command) share that flag: give it back on close
    s.close = function(self)
      local ok, err = stream_mod.Stream.close(self)
      core.fd_blocking(fd)
      return ok, err
    end
  end
  open[name] = s
  return s
end

local close_handles = core.hooks.close_handles
function core.hooks.close_handles(...)
  for name, s in pairs(open) do
    open[name] = nil
    pcall(s.close, s)
  end
  return close_handles(...)
end

local FDS = { stdin = 0, stdout = 1, stderr = 2 }

--- coil.io.stdin, coil.io.stdout, coil.io.stderr: streams (see coil.net):
-- stdin has read, read_line and read_exactly; stdout and stderr write,
-- drain and set_high_water. Made on first use; closing one only closes the
-- stream (the descriptor stays open), and the next use makes a new one.
setmetatable(M, {
  __index = function(_, key)
    local fd = FDS[key]
    if not fd then return nil end
    local s = open[key]
    if s and not s.closed and not s.handle:is_closing() then return s end
    return make(fd, key)
  end,
  __newindex = function(_, key)
    error("coil: coil.io." .. tostring(key) .. " cannot be assigned", 2)
  end,
})

return M
