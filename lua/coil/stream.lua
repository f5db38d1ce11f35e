--- coil.stream: the stream type of coil.net connections, child processes'
-- pipes and coil.io: buffered reads (read, read_line, read_exactly) and
-- buffered writes (write, drain) over a luv stream handle, or over anything
-- with the same few methods (read_start, read_stop, write, is_closing,
-- close: coil.io's file-descriptor streams).
--
-- A stream reads while a task waits for data and, between two reads, goes
-- on reading until READ_AHEAD bytes wait in its buffer (so a read loop does
-- not stop and restart the handle at every chunk, an epoll_ctl each time);
-- meanwhile the handle is unreferenced: a stream nobody waits on keeps
-- nothing alive (standard input reads only while a task waits: other
-- processes may read it too). Writes are buffered: write() returns once
-- its data is queued while less than the high-water mark waits to go out,
-- and waits otherwise, so a slow reader makes the writer wait and memory
-- stays bounded; drain() waits until everything is written.
local core = require "coil.core"
local in_task = core.in_task
local sync = require "coil.sync"
require "coil.await"

local uv_error = core.uv_error
local current, park, wake, sleep = core.current, core.park, core.wake, core.sleep
local type, error, pcall, tostring = type, error, pcall, tostring
local setmetatable = setmetatable
local concat = table.concat
local math_type = math.type
local fifo, wait_in, wake_first = sync.fifo, sync.wait_in, sync.wake_first

local M = {}

local ECANCELED = uv_error "ECANCELED"
local EOF = uv_error "EOF"
local EPIPE = uv_error "EPIPE"
local ELINE = "ELINE: line too long"

local HIGH_WATER = 64 * 1024 -- bytes queued before write() waits
local READ_AHEAD = 64 * 1024 -- bytes buffered before reading stops
local LINE_MAX = 64 * 1024   -- read_line's default limit

-- Streams ------------------------------------------------------------------

local Stream = { __name = "coil.stream" }
Stream.__index = Stream

-- Every stream, so that a method can tell one with a table lookup rather
-- than a call to getmetatable (a C call: 500 instructions, twice per echoed
-- message)
local streams = setmetatable({}, { __mode = "k" })

function Stream:__tostring()
  return ("coil.stream (%s%s)"):format(self.name, self.closed and ", closed" or "")
end

local function stop_reading(self)
  if self.reading then
    self.reading = false
    if not self.handle:is_closing() then self.handle:read_stop() end
  end
end

local function close_handle(self)
  stop_reading(self)
  if not self.handle:is_closing() then self.handle:close() end
end

-- A chunk, the end or an error arrived. A luv handle goes on reading: for
-- the task it wakes, which is likely to read again, or, when none waits,
-- until READ_AHEAD bytes are buffered. Standard input and a look-alike
-- (coil.io's descriptors, which read one chunk per read_start) stop.
-- (libuv never calls this for a closing handle: read_stop needs no
-- is_closing check here.)
local function on_read(self, err, data)
  local reader = self.reader
  if data then
    local tail = self.tail + 1
    self.tail = tail
    self.chunks[tail] = data
    local size = self.size + #data
    self.size = size
    if reader and self.read_ahead then
      -- no task waits any more: the reading handle keeps nothing alive
      self.handle:unref()
      self.unreferenced = true
    elseif size >= READ_AHEAD or not self.read_ahead then
      self.reading = false
      self.handle:read_stop()
    end
  else
    if err then self.err = uv_error(err) else self.eof = true end
    self.reading = false
    self.handle:read_stop()
    if self.close_on_eof then close_handle(self) end
  end
  if reader then
    self.reader = nil
    wake(reader)
  end
end

--- stream.new(handle, name, close_on_eof, no_read_ahead) wraps a connected
-- luv stream handle (tcp, pipe, tty) or a look-alike. `name` names it in
-- messages; `close_on_eof` closes the handle at the end of the data (the
-- read side of a child's pipe); `no_read_ahead` reads only while a task
-- waits (a descriptor other processes read too, as standard input: what
-- coil read ahead would be lost to them).
function M.new(handle, name, close_on_eof, no_read_ahead)
  local self = setmetatable({
    handle = handle, name = name or tostring(handle), close_on_eof = close_on_eof,
    chunks = {}, head = 1, tail = 0, off = 1, size = 0,
    eof = false, err = nil, reader = nil, reading = false, closed = false,
    read_ahead = not no_read_ahead and handle.unref ~= nil, unreferenced = false,
    try_write = handle.try_write ~= nil,
    queued = 0, high_water = HIGH_WATER, write_err = nil, writers = fifo(), burst = 0,
    skip_line = false,
  }, Stream)
  streams[self] = true
  self.on_read = function(err, data) on_read(self, err, data) end
  return self
end

-- Returns the current task. (name is the whole "stream:read": no string is
-- built on the good path)
local function check_stream(self, name)
  if not streams[self] then
    error("coil: " .. name .. " expects a stream (use " .. name .. "(...))", 3)
  end
  if self.closed then error("coil: " .. name .. " on a closed stream", 3) end
  return in_task(name, 3)
end

-- Waits for more data (me: the current task); false at the end, on an
-- error or once closed.
local function fill(self, what, me)
  if self.eof or self.err or self.closed then return false end
  if self.reader then
    error("coil: stream:" .. what .. ": another task is already reading this stream", 3)
  end
  -- (a handle still reading is not closing: closing stops it, and only
  -- this file closes a handle that reads)
  if not self.reading then
    if self.handle:is_closing() then return false end
    local ok, err = self.handle:read_start(self.on_read)
    if not ok then
      self.err = err
      return false
    end
    self.reading = true
  end
  if self.unreferenced then
    self.unreferenced = false
    self.handle:ref()
  end
  self.reader = me
  self.burst = 0 -- this task waits: its writes start a new run
  local ok, err = pcall(park)
  if self.reader == me then self.reader = nil end
  if not ok then
    stop_reading(self)
    error(err, 0)
  end
  return true
end

-- Removes and returns the first n buffered bytes (n <= size).
local function take(self, n)
  local chunks, parts = self.chunks, {}
  self.size = self.size - n
  while n > 0 do
    local head, off = self.head, self.off
    local chunk = chunks[head]
    local avail = #chunk - off + 1
    if avail <= n then
      parts[#parts + 1] = off == 1 and chunk or chunk:sub(off)
      chunks[head] = nil
      self.head, self.off = head + 1, 1
      n = n - avail
    else
      parts[#parts + 1] = chunk:sub(off, off + n - 1)
      self.off = off + n
      n = 0
    end
  end
  if self.head > self.tail then self.head, self.tail = 1, 0 end
  return #parts == 1 and parts[1] or concat(parts)
end

-- How many buffered bytes up to and including the first "\n" at or after
-- byte `from` (0-based count of bytes already known to hold none); nil if
-- there is none yet.
local function find_newline(self, from)
  local base, chunks = 0, self.chunks
  for i = self.head, self.tail do
    local chunk = chunks[i]
    local start = i == self.head and self.off or 1
    local len = #chunk - start + 1
    if base + len > from then
      local s = start
      if from > base then s = start + (from - base) end
      local p = chunk:find("\n", s, true)
      if p then return base + (p - start) + 1 end
    end
    base = base + len
  end
end

--- ⏳ stream:read() -> the next chunk of data as it arrived.
-- @return a string; nil at the end of the stream; nil, err on failure
-- (a closed connection is the end, a reset is "ECONNRESET: …")
-- @raise on a closed stream, or when another task is reading it already
function Stream:read()
  local me = check_stream(self, "stream:read")
  while self.size == 0 do
    if not fill(self, "read", me) then return nil, self.err end
  end
  if self.off == 1 and self.head == self.tail then
    -- the common case: one whole chunk buffered
    local chunk = self.chunks[self.head]
    self.chunks[self.head] = nil
    self.head, self.tail, self.size = 1, 0, 0
    return chunk
  end
  return take(self, #self.chunks[self.head] - self.off + 1)
end

-- Discards what is buffered up to and including the first "\n"; true once
-- one was found (the rest of an over-long line has gone).
local function skip_through_newline(self)
  local n = find_newline(self, 0)
  if n then
    take(self, n)
    return true
  end
  if self.size > 0 then take(self, self.size) end
  return false
end

--- ⏳ stream:read_line([max]) -> the next line without its "\n" or "\r\n".
-- @param max the longest line accepted, in bytes (default 65536)
-- @return a string; a last line that lacks its "\n" is returned as it is;
-- nil at the end; nil, "ELINE: line too long" for a longer line, which is
-- discarded (the next read_line starts after it, the stream stays usable);
-- nil, err on failure
function Stream:read_line(max)
  local me = check_stream(self, "stream:read_line")
  if max == nil then max = LINE_MAX
  elseif math_type(max) ~= "integer" or max < 1 then
    error("coil: stream:read_line: max must be a positive integer, got " .. tostring(max), 2)
  end
  while self.skip_line do
    if skip_through_newline(self) then
      self.skip_line = false
    elseif not fill(self, "read_line", me) then
      self.skip_line = false
      if self.err then return nil, self.err end
      return nil
    end
  end
  local scanned = 0
  while true do
    local n = find_newline(self, scanned)
    if n then
      local line = take(self, n)
      local cr = line:byte(-2) == 13
      if #line - (cr and 2 or 1) > max then return nil, ELINE end
      if cr then return line:sub(1, -3) end
      return line:sub(1, -2)
    end
    scanned = self.size
    if scanned > max + 1 then -- (a "\r" may still come before its "\n")
      take(self, scanned)
      self.skip_line = true
      return nil, ELINE
    end
    if not fill(self, "read_line", me) then
      if self.err then return nil, self.err end
      if self.size > max then
        take(self, self.size)
        return nil, ELINE
      end
      if self.size > 0 then return take(self, self.size) end
      return nil
    end
  end
end

--- ⏳ stream:read_exactly(n) -> exactly n bytes.
-- @return a string of n bytes; nil, "EOF: end of file" if the stream ends
-- first (what did arrive stays buffered for read()); nil, err on failure
-- @raise on a negative or non-integer n
function Stream:read_exactly(n)
  local me = check_stream(self, "stream:read_exactly")
  if math_type(n) ~= "integer" or n < 0 then
    error("coil: stream:read_exactly: size must be a non-negative integer, got "
          .. tostring(n), 2)
  end
  while self.size < n do
    if not fill(self, "read_exactly", me) then return nil, self.err or EOF end
  end
  if n == 0 then return "" end
  return take(self, n)
end

-- A write's callback: the data has gone (or failed). Writers waiting for
-- the queue to shrink re-check.
local function on_written(self, n, err)
  self.queued = self.queued - n
  if err and not self.write_err then self.write_err = uv_error(err) end
  if err or self.queued < self.high_water then
    while wake_first(self.writers) do end
  end
end

-- Parks until cond(self) holds or a write failed.
local function wait_writes(self, cond)
  if cond(self) or self.write_err then return end
  self.burst = 0 -- this task waits: its writes start a new run
  local me = current()
  repeat wait_in(self.writers, me) until cond(self) or self.write_err
end

local function below_high_water(self) return self.queued < self.high_water end
local function all_written(self) return self.queued == 0 end

--- ⏳ stream:write(data) -> true once data is queued. It returns at once
-- while less than the high-water mark (64 KiB, set_high_water) waits to go
-- out, and waits for the queue to shrink otherwise: a peer that reads
-- slowly makes the writer wait. Writes go out in the order they were made.
-- @return true; nil, err on failure ("EPIPE: broken pipe", …): the error of
-- an earlier write that failed after it returned comes out here, or from
-- drain() or close()
-- @raise on a closed stream or data that is not a string
function Stream:write(data)
  check_stream(self, "stream:write")
  if type(data) ~= "string" then
    error("coil: stream:write: data must be a string, got " .. type(data), 2)
  end
  if self.burst >= self.high_water then
    -- the kernel took a high-water mark's worth at once, and this task has
    -- not waited since: a loop of writes to a fast reader yields to the
    -- loop here (a checkpoint: other tasks run, a cancellation lands), as
    -- it did when every write was queued
    self.burst = 0
    sleep(0)
  end
  if self.write_err then return nil, self.write_err end
  if self.handle:is_closing() then return nil, EPIPE end
  if data == "" then return true end
  local handle = self.handle
  if self.queued == 0 and self.try_write then
    -- nothing waits to go out: the kernel may take it all at once, with no
    -- request and no callback
    local sent, err, name = handle:try_write(data)
    if sent == #data then
      self.burst = self.burst + sent
      return true
    end
    if sent then
      data = data:sub(sent + 1)
    elseif name ~= "EAGAIN" then
      self.write_err = err
      return nil, err
    end
  end
  local n = #data
  local ok, err = handle:write(data, function(e) on_written(self, n, e) end)
  if not ok then return nil, err end
  self.queued = self.queued + n
  -- cancelled while waiting here: the data stays queued (libuv cannot take
  -- a write back); close() drops what is left
  wait_writes(self, below_high_water)
  if self.write_err then return nil, self.write_err end
  return true
end

--- ⏳ stream:drain() -> true once every write made so far has gone out.
-- @return true; nil, err if a write failed
function Stream:drain()
  check_stream(self, "stream:drain")
  wait_writes(self, all_written)
  if self.write_err then return nil, self.write_err end
  return true
end

--- stream:set_high_water(n): how many queued bytes make write() wait
-- (default 65536). Returns the stream.
function Stream:set_high_water(n)
  if not streams[self] then
    error("coil: stream:set_high_water expects a stream (use stream:set_high_water(n))", 2)
  end
  if math_type(n) ~= "integer" or n < 1 then
    error("coil: stream:set_high_water: n must be a positive integer, got " .. tostring(n), 2)
  end
  self.high_water = n
  if self.queued < n then while wake_first(self.writers) do end end
  return self
end

--- stream:close() -> true, or nil, err: closes the stream at once; what is
-- still queued is dropped (drain() first to have it sent). A task waiting
-- to read it gets nil, "ECANCELED: operation canceled", a task waiting to
-- write gets the same. Returns the error of a failed write not yet
-- reported. Closing twice does nothing.
function Stream:close()
  if not streams[self] then
    error("coil: stream:close expects a stream (use stream:close())", 2)
  end
  if self.closed then return true end
  self.closed = true
  close_handle(self)
  local reader = self.reader
  if reader then
    self.reader = nil
    if not self.eof and not self.err then self.err = ECANCELED end
    wake(reader)
  end
  local err = self.write_err
  if self.queued > 0 and not err then self.write_err = ECANCELED end
  while wake_first(self.writers) do end
  if err then return nil, err end
  return true
end
Stream.__close = Stream.close

M.Stream = Stream
return M
