--- coil.net: TCP clients and servers as awaiting calls, over IPv4 and IPv6,
-- names resolved by libuv's resolver (uv_getaddrinfo). The stream type here
-- also carries a child process's pipes (coil.process).
--
-- Streams read only while a task waits for data (the handle is idle, and
-- keeps nothing alive, otherwise). Writes are buffered: write() returns once
-- its data is queued while less than the high-water mark waits to go out,
-- and waits otherwise, so a slow reader makes the writer wait and memory
-- stays bounded; drain() waits until everything is written.
local core = require "coil"
local uv = require "luv"
require "coil.await"
local sync = require "coil.sync"

local await, uv_error = core._await, core._uv_error
local current, park, wake, spawn, defer = core.current, core._park, core._wake, core.spawn, core.defer
local type, error, pcall, tostring, ipairs, pairs, next =
  type, error, pcall, tostring, ipairs, pairs, next
local setmetatable, getmetatable = setmetatable, getmetatable
local concat = table.concat
local math_type = math.type
local fifo, wait_in, wake_first = sync.fifo, sync.wait_in, sync.wake_first

local M = {}

local ECANCELED = uv_error "ECANCELED"
local EOF = uv_error "EOF"
local EPIPE = uv_error "EPIPE"
local ELINE = "ELINE: line too long"

local HIGH_WATER = 64 * 1024 -- bytes queued before write() waits
local LINE_MAX = 64 * 1024   -- read_line's default limit

-- Streams ------------------------------------------------------------------

local Stream = { __name = "coil.stream" }
Stream.__index = Stream

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

-- Reading is stopped after every event: the data waits in the buffer, and a
-- stream nobody reads is idle.
local function on_read(self, err, data)
  if err then
    self.err = uv_error(err)
  elseif data then
    local tail = self.tail + 1
    self.tail = tail
    self.chunks[tail] = data
    self.size = self.size + #data
  else
    self.eof = true
  end
  stop_reading(self)
  if (err or not data) and self.close_on_eof then close_handle(self) end
  local reader = self.reader
  if reader then
    self.reader = nil
    wake(reader)
  end
end

--- Wraps a connected luv stream handle (tcp or pipe). `name` names it in
-- messages; `close_on_eof` closes the handle at the end of the data (the
-- read side of a child's pipe). Internal: coil.process uses it.
function M._stream(handle, name, close_on_eof)
  local self = setmetatable({
    handle = handle, name = name or tostring(handle), close_on_eof = close_on_eof,
    chunks = {}, head = 1, tail = 0, off = 1, size = 0,
    eof = false, err = nil, reader = nil, reading = false, closed = false,
    queued = 0, high_water = HIGH_WATER, write_err = nil, writers = fifo(),
    skip_line = false,
  }, Stream)
  self.on_read = function(err, data) on_read(self, err, data) end
  return self
end
local new_stream = M._stream

local function check_stream(self, what)
  if getmetatable(self) ~= Stream then
    error("coil: stream:" .. what .. " expects a stream (use stream:" .. what .. "(...))", 3)
  end
  if self.closed then error("coil: stream:" .. what .. " on a closed stream", 3) end
  if not current() then
    error("coil: stream:" .. what .. " must be called from inside a task", 3)
  end
end

-- Waits for more data; false at the end, on an error or once closed.
local function fill(self, what)
  if self.eof or self.err or self.closed or self.handle:is_closing() then
    return false
  end
  if self.reader then
    error("coil: stream:" .. what .. ": another task is already reading this stream", 3)
  end
  if not self.reading then
    local ok, err = self.handle:read_start(self.on_read)
    if not ok then
      self.err = err
      return false
    end
    self.reading = true
  end
  local me = current()
  self.reader = me
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
  check_stream(self, "read")
  while self.size == 0 do
    if not fill(self, "read") then return nil, self.err end
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
  check_stream(self, "read_line")
  if max == nil then max = LINE_MAX
  elseif math_type(max) ~= "integer" or max < 1 then
    error("coil: stream:read_line: max must be a positive integer, got " .. tostring(max), 2)
  end
  while self.skip_line do
    if skip_through_newline(self) then
      self.skip_line = false
    elseif not fill(self, "read_line") then
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
    if not fill(self, "read_line") then
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
  check_stream(self, "read_exactly")
  if math_type(n) ~= "integer" or n < 0 then
    error("coil: stream:read_exactly: size must be a non-negative integer, got "
          .. tostring(n), 2)
  end
  while self.size < n do
    if not fill(self, "read_exactly") then return nil, self.err or EOF end
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
  local me = current()
  while not cond(self) and not self.write_err do
    wait_in(self.writers, me)
  end
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
  check_stream(self, "write")
  if type(data) ~= "string" then
    error("coil: stream:write: data must be a string, got " .. type(data), 2)
  end
  if self.write_err then return nil, self.write_err end
  if self.handle:is_closing() then return nil, EPIPE end
  if data == "" then return true end
  local n = #data
  local ok, err = self.handle:write(data, function(e) on_written(self, n, e) end)
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
  check_stream(self, "drain")
  wait_writes(self, all_written)
  if self.write_err then return nil, self.write_err end
  return true
end

--- stream:set_high_water(n): how many queued bytes make write() wait
-- (default 65536). Returns the stream.
function Stream:set_high_water(n)
  if getmetatable(self) ~= Stream then
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
  if getmetatable(self) ~= Stream then
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

-- Addresses ------------------------------------------------------------------

local function check_port(port, what)
  if math_type(port) ~= "integer" or port < 0 or port > 65535 then
    error(("coil: net.%s: port must be an integer from 0 to 65535, got %s")
          :format(what, tostring(port)), 3)
  end
end

local function check_host(host, what)
  if type(host) ~= "string" or host == "" then
    error(("coil: net.%s: host must be a non-empty string, got %s")
          :format(what, type(host) == "string" and '""' or type(host)), 3)
  end
end

-- A literal address needs no resolver: "1.2.3.4", "::1", "[::1]".
local function literal(host)
  if host:match "^%d+%.%d+%.%d+%.%d+$" then return host end
  local inner = host:match "^%[(.*)%]$" or host
  if inner:find(":", 1, true) then return inner end
end

--- ⏳ The addresses of host, in the resolver's order, without repeats.
local function resolve(host)
  local ip = literal(host)
  if ip then return { ip } end
  local err, res = await(nil, nil, uv.getaddrinfo, host, nil, { socktype = "stream" })
  if err then return nil, uv_error(err) end
  local list, seen = {}, {}
  for _, ai in ipairs(res or {}) do
    if ai.addr and not seen[ai.addr] then
      seen[ai.addr] = true
      list[#list + 1] = ai.addr
    end
  end
  if #list == 0 then return nil, uv_error "EAI_NONAME" end
  return list
end

local function address_name(a)
  if not a then return "?" end
  if a.family == "inet6" then return ("[%s]:%d"):format(a.ip, a.port) end
  return ("%s:%d"):format(a.ip, a.port)
end

-- Clients --------------------------------------------------------------------

--- net.connect(host, port) ⏳ -> stream, or nil, err.
-- Every address of host is tried in turn; the error is the last one's
-- ("ECONNREFUSED: connection refused", "EAI_NONAME: unknown node or
-- service", …). The stream is the caller's to close (stream:close() or a
-- `<close>` variable); the shutdown closes any left open.
function M.connect(host, port)
  if not current() then error("coil: net.connect must be called from inside a task", 2) end
  check_host(host, "connect")
  check_port(port, "connect")
  local addrs, err = resolve(host)
  if not addrs then return nil, err end
  for _, ip in ipairs(addrs) do
    local tcp = uv.new_tcp()
    local closer = function() if not tcp:is_closing() then tcp:close() end end
    local ok, e = pcall(await, nil, closer, tcp.connect, tcp, ip, port)
    if not ok then
      closer()
      error(e, 0)
    end
    if e == nil then
      return new_stream(tcp, address_name(tcp:getpeername()) or (ip .. ":" .. port))
    end
    closer()
    err = uv_error(e)
  end
  return nil, err
end

-- Servers --------------------------------------------------------------------

local Server = { __name = "coil.server" }
Server.__index = Server

function Server:__tostring()
  return ("coil.server (%s%s)"):format(self.name, self.closed and ", closed" or "")
end

-- Open servers, closed first thing when the shutdown begins (step 2, before
-- any on_shutdown hook).
local servers = {}

core._on_stop_intake(function()
  local list = {}
  for server in pairs(servers) do list[#list + 1] = server end
  for _, server in ipairs(list) do server:close() end
end)

local function track(server) servers[server] = true end
local function untrack(server) servers[server] = nil end

-- A connection's task: the stream is closed after everything the handler
-- left to run (its defers, its `<close>` variables) has run.
local function finish(stream)
  if not stream.closed then pcall(stream.drain, stream) end
  stream:close()
end

local function serve(stream, handler)
  defer(finish, stream)
  return handler(stream)
end

-- Running out of file descriptors is a state, not a failure: libuv's reserve
-- fd refuses the connections that arrive meanwhile (so the listener neither
-- spins nor dies), the server says so once, and says it again once it could
-- accept a connection again.
local function out_of_fds(self, err)
  if not self.starved then
    self.starved = true
    core._report(("%s: out of file descriptors (%s): pausing accepts until one is free")
                 :format(tostring(self), err))
  end
end

local function on_connection(self, err)
  if self.closed then return end
  if err then
    err = uv_error(err)
    if err:match "^E[MN]FILE" then return out_of_fds(self, err) end
    core._report(("%s: accepting a connection failed: %s"):format(tostring(self), err))
    return
  end
  local client = self.new_client()
  local ok, e = self.handle:accept(client)
  if not ok then
    client:close()
    if tostring(e):match "^E[MN]FILE" then return out_of_fds(self, e) end
    core._report(("%s: accepting a connection failed: %s"):format(tostring(self), e))
    return
  end
  if self.starved then
    self.starved = false
    core._report(("%s: accepting again"):format(tostring(self)))
  end
  local name = self.peer_name(client)
  spawn(serve, new_stream(client, name), self.handler):name(name)
end

local function tcp_peer(tcp) return address_name(tcp:getpeername()) end

local function new_server(handle, handler, name, backlog, new_client, peer_name)
  local self = setmetatable({ handle = handle, handler = handler, closed = false,
                              name = name, new_client = new_client,
                              peer_name = peer_name }, Server)
  local ok, err = handle:listen(backlog, function(status) on_connection(self, status) end)
  if not ok then return nil, err end
  track(self)
  return self
end

local LISTEN_OPTS = { reuseport = "boolean", backlog = "number" }

local function check_opts(opts, known, what)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("coil: net.%s: opts must be a table, got %s"):format(what, type(opts)), 3)
  end
  for k, v in pairs(opts) do
    local want = known[k]
    if not want then
      error(("coil: net.%s: unknown option %s"):format(what, tostring(k)), 3)
    end
    if type(v) ~= want then
      error(("coil: net.%s: opts.%s must be a %s, got %s")
            :format(what, k, want, type(v)), 3)
    end
  end
  if opts.backlog ~= nil and (math_type(opts.backlog) ~= "integer" or opts.backlog < 1) then
    error(("coil: net.%s: opts.backlog must be a positive integer, got %s")
          :format(what, tostring(opts.backlog)), 3)
  end
  return opts
end

local BACKLOG = 511 -- as Node: the kernel caps it at somaxconn

--- net.listen(host, port, handler [, opts]) ⏳ -> server, or nil, err.
-- Listens on the first address of host that can be bound (port 0: any free
-- port, see server:address()). Each connection runs `handler(stream)` in a
-- task of its own named after the peer ("127.0.0.1:50312", "[::1]:50312");
-- its stream is closed when that task ends. The server keeps the process
-- alive until server:close() or the shutdown, which closes it before any
-- task is cancelled.
-- opts: `reuseport = true` sets SO_REUSEPORT, so several processes can
-- listen on one port and the kernel spreads the connections; `backlog`, the
-- length of the queue of connections not yet accepted (default 511).
-- @raise on a bad host, port, handler or option (an unknown one too)
function M.listen(host, port, handler, opts)
  if not current() then error("coil: net.listen must be called from inside a task", 2) end
  check_host(host, "listen")
  check_port(port, "listen")
  if type(handler) ~= "function" then
    error("coil: net.listen: handler must be a function, got " .. type(handler), 2)
  end
  opts = check_opts(opts, LISTEN_OPTS, "listen")
  local addrs, err = resolve(host)
  if not addrs then return nil, err end
  for _, ip in ipairs(addrs) do
    -- with a family the socket exists at once, so options go on before bind
    local tcp = uv.new_tcp(ip:find(":", 1, true) and "inet6" or "inet")
    local ok, e = true, nil
    if opts.reuseport then ok, e = core._reuseport(tcp:fileno()) end
    if ok then ok, e = tcp:bind(ip, port) end
    local self
    if ok then
      self, e = new_server(tcp, handler, ip .. ":" .. port, opts.backlog or BACKLOG,
                           uv.new_tcp, tcp_peer)
    end
    if self then
      self.name = address_name(tcp:getsockname())
      return self
    end
    tcp:close()
    err = e
  end
  return nil, err
end

--- net.listen_fd(fd, handler [, opts]) -> server, or nil, err.
-- Serves a socket that is already bound and listening (one passed by
-- systemd's socket activation, see coil.service.listen_fds()) like
-- net.listen does: TCP (IPv4, IPv6) or a Unix domain stream socket. The
-- server owns the fd from then on: server:close() closes it.
-- opts: `backlog` (default 511).
-- @return a server; nil, err when fd is not a stream socket
-- @raise on a bad fd, handler or option
function M.listen_fd(fd, handler, opts)
  if math_type(fd) ~= "integer" or fd < 0 then
    error("coil: net.listen_fd: fd must be a non-negative integer, got " .. tostring(fd), 2)
  end
  if type(handler) ~= "function" then
    error("coil: net.listen_fd: handler must be a function, got " .. type(handler), 2)
  end
  opts = check_opts(opts, { backlog = "number" }, "listen_fd")
  local family, kind = core._socket_info(fd)
  if not family then return nil, kind end
  if kind ~= "stream" or family == "other" then
    return nil, uv_error "ENOTSUP" .. " (fd " .. fd .. " is not a stream socket)"
  end
  local handle, new_client, peer_name
  if family == "unix" then
    handle, new_client = uv.new_pipe(false), function() return uv.new_pipe(false) end
    peer_name = function() return "unix:fd" .. fd end
  else
    handle, new_client, peer_name = uv.new_tcp(), uv.new_tcp, tcp_peer
  end
  local ok, e = handle:open(fd)
  if not ok then
    handle:close()
    return nil, e
  end
  local self
  self, e = new_server(handle, handler, "fd " .. fd, opts.backlog or BACKLOG,
                       new_client, peer_name)
  if not self then
    handle:close()
    return nil, e
  end
  if family ~= "unix" then self.name = address_name(handle:getsockname()) .. " (fd " .. fd .. ")" end
  return self
end

local function check_server(self, what)
  if getmetatable(self) ~= Server then
    error("coil: server:" .. what .. " expects a server (use server:" .. what .. "())", 3)
  end
end

--- server:address() -> ip, port (the real port when 0 was asked).
-- @raise once the server is closed
function Server:address()
  check_server(self, "address")
  if self.closed then error("coil: server:address on a closed server", 2) end
  local a = self.handle:getsockname()
  if type(a) == "string" then return a end -- a Unix domain socket's path
  return a.ip, a.port
end

--- server:close(): stops accepting at once. Connections already accepted go
-- on in their tasks. Closing twice does nothing.
function Server:close()
  check_server(self, "close")
  if self.closed then return true end
  self.closed = true
  if not self.handle:is_closing() then self.handle:close() end
  untrack(self)
  return true
end
Server.__close = Server.close

return M
