--- coil.net: TCP clients and servers as awaiting calls, over IPv4 and IPv6,
-- names resolved by libuv's resolver (uv_getaddrinfo). Connections are
-- coil.stream streams (lua/coil/stream.lua).
local core = require "coil.core"
local in_task = core.in_task
local uv = require "luv"
require "coil.await"
local stream_mod = require "coil.stream"

local await, uv_error = core.await_request, core.uv_error
local spawn, defer = core.spawn, core.defer
local park, wake = core.park, core.wake
local ECANCELED = uv_error "ECANCELED"
local type, error, pcall, tostring, ipairs, pairs =
  type, error, pcall, tostring, ipairs, pairs
local setmetatable, getmetatable = setmetatable, getmetatable
local math_type = math.type
local new_stream = stream_mod.new

local M = {}

--- Internal: coil.process wraps its pipes with it.
M._stream = new_stream

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
-- A valid dotted-quad IPv4 address needs no resolver; anything else (IPv6
-- too: luv raises on an address it cannot parse) goes through getaddrinfo,
-- which answers a bad one with nil, err.
local function literal(host)
  local a, b, c, d = host:match "^(%d+)%.(%d+)%.(%d+)%.(%d+)$"
  if a and tonumber(a) < 256 and tonumber(b) < 256 and tonumber(c) < 256
     and tonumber(d) < 256 then
    return host
  end
end

--- ⏳ The addresses of host, in the resolver's order, without repeats.
local function resolve(host)
  local ip = literal(host)
  if ip then return { ip } end
  host = host:match "^%[(.*)%]$" or host
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

-- Options tables: an unknown key or a value of the wrong type raises. Returns
-- a copy: the caller's table (its metamethods included) is read once, here,
-- before anything is opened.
local function check_opts(opts, known, what)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("coil: net.%s: opts must be a table, got %s"):format(what, type(opts)), 3)
  end
  local copy = {}
  for k, v in pairs(opts) do
    local want = known[k]
    if not want then
      error(("coil: net.%s: unknown option %s"):format(what, tostring(k)), 3)
    end
    if type(v) ~= want then
      error(("coil: net.%s: opts.%s must be a %s, got %s")
            :format(what, k, want, type(v)), 3)
    end
    copy[k] = v
  end
  opts = copy
  if opts.backlog ~= nil and (math_type(opts.backlog) ~= "integer" or opts.backlog < 1) then
    error(("coil: net.%s: opts.backlog must be a positive integer, got %s")
          :format(what, tostring(opts.backlog)), 3)
  end
  return opts
end

-- Clients --------------------------------------------------------------------

-- A to-be-closed guard that runs closer on every exit (a task closed by
-- force included) unless the handle found an owner (guard.closer = nil).
local unowned_mt = { __close = function(g) if g.closer then g.closer() end end }
local function unowned(closer) return setmetatable({ closer = closer }, unowned_mt) end

local CONNECT_OPTS = { nodelay = "boolean" }

--- net.connect(host, port [, opts]) ⏳ -> stream, or nil, err.
-- Every address of host is tried in turn; the error is the last one's
-- ("ECONNREFUSED: connection refused", "EAI_NONAME: unknown node or
-- service", …). The stream is the caller's to close (stream:close() or a
-- `<close>` variable); the shutdown closes any left open.
-- opts: `nodelay = false` leaves Nagle's algorithm on (by default coil sets
-- TCP_NODELAY: a small write goes out at once).
-- @raise on a bad host, port or option (an unknown one too)
function M.connect(host, port, opts)
  in_task("net.connect", 2)
  check_host(host, "connect")
  check_port(port, "connect")
  opts = check_opts(opts, CONNECT_OPTS, "connect")
  local addrs, err = resolve(host)
  if not addrs then return nil, err end
  for _, ip in ipairs(addrs) do
    local tcp = uv.new_tcp()
    local closer = function() if not tcp:is_closing() then tcp:close() end end
    local guard <close> = unowned(closer) -- a task closed by force too
    local ok, e = pcall(await, nil, closer, tcp.connect, tcp, ip, port)
    if not ok then error(e, 0) end
    if e == nil then
      guard.closer = nil
      if opts.nodelay ~= false then tcp:nodelay(true) end
      return new_stream(tcp, address_name(tcp:getpeername()) or (ip .. ":" .. port))
    end
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

core.on_stop_intake(function()
  local list = {}
  for server in pairs(servers) do list[#list + 1] = server end
  for _, server in ipairs(list) do server:close() end
end)

local function track(server) servers[server] = true end
local function untrack(server) servers[server] = nil end

-- A connection's task: the stream is closed after everything the handler
-- left to run (its defers, its `<close>` variables) has run.
-- Accepting ---------------------------------------------------------------
--
-- coil accepts by itself (a poll handle on the listening socket, accept4 in
-- coil_core.accept) rather than through uv_listen: when the process runs out of
-- file descriptors, libuv's listener accepts and closes the waiting
-- connections with a descriptor it keeps in reserve, without telling
-- anyone. coil instead stops polling: the connections wait in the kernel's
-- queue, the server says so once, and it polls again when a connection of
-- its own ends, or every RETRY_MS, whichever comes first.

local RETRY_MS = 100
local ACCEPT_BATCH = 64 -- per poll event: the loop's other work goes on

local resume

local function finish(stream, server)
  if not stream.closed then pcall(stream.drain, stream) end
  stream:close()
  if server.paused then resume(server) end
end

local function serve(stream, handler, server)
  defer(finish, stream, server)
  return handler(stream)
end

local function pause(self, err)
  if not self.paused then
    self.paused = true
    self.poll:stop()
    self.retry:start(RETRY_MS, 0, function() resume(self) end)
  end
  if not self.starved then
    self.starved = true
    core.report(("%s: out of file descriptors (%s): pausing accepts until one is free")
                 :format(tostring(self), err))
  end
end

local function accept_ready(self)
  for _ = 1, ACCEPT_BATCH do
    if self.closed or self.paused then return end
    local fd, err = core.accept(self.fd, self.nodelay)
    if not fd then
      if err:match "^EAGAIN" or err:match "^EWOULDBLOCK" then return end
      if err:match "^ECONNABORTED" or err:match "^EINTR" then goto continue end
      if err:match "^E[MN]FILE" or err:match "^ENOBUFS" or err:match "^ENOMEM" then
        return pause(self, err)
      end
      core.report(("%s: accepting a connection failed: %s"):format(tostring(self), err))
      return
    end
    do
      if self.starved then
        self.starved = false
        core.report(("%s: accepting again"):format(tostring(self)))
      end
      local client = self.new_client()
      local ok, e = client:open(fd)
      if not ok then
        client:close()
        core.close_fd(fd)
        core.report(("%s: accepting a connection failed: %s"):format(tostring(self), e))
        return
      end
      local name = self.peer_name(client)
      spawn(serve, new_stream(client, name), self.handler, self):name(name)
    end
    ::continue::
  end
end

function resume(self)
  if not self.paused or self.closed then return end
  self.paused = false
  self.retry:stop()
  self.poll:start("r", self.on_poll)
  accept_ready(self)
end

local function tcp_peer(tcp) return address_name(tcp:getpeername()) end

-- Makes a server of a bound socket handle: listens and starts accepting.
local function new_server(handle, handler, name, backlog, new_client, peer_name, nodelay)
  local fd = handle:fileno()
  local ok, err = core.listen(fd, backlog)
  if not ok then return nil, err end
  local self = setmetatable({ handle = handle, handler = handler, closed = false,
                              name = name, new_client = new_client, fd = fd,
                              peer_name = peer_name, nodelay = nodelay,
                              paused = false, starved = false,
                              poll = uv.new_socket_poll(fd), retry = uv.new_timer() }, Server)
  self.on_poll = function(e)
    if e then
      core.report(("%s: polling for connections failed: %s"):format(tostring(self), e))
    else
      accept_ready(self)
    end
  end
  self.poll:start("r", self.on_poll)
  track(self)
  return self
end

local LISTEN_OPTS = { reuseport = "boolean", backlog = "number", nodelay = "boolean" }

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
-- length of the queue of connections not yet accepted (default 511);
-- `nodelay = false` leaves Nagle's algorithm on for the connections (by
-- default coil sets TCP_NODELAY on each, as Node, asyncio and Trio do: an
-- answer goes out at once instead of waiting for the peer's delayed ACK).
-- @raise on a bad host, port, handler or option (an unknown one too)
function M.listen(host, port, handler, opts)
  in_task("net.listen", 2)
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
    if opts.reuseport then ok, e = core.reuseport(tcp:fileno()) end
    if ok then ok, e = tcp:bind(ip, port) end
    if ok then
      -- libuv keeps an EADDRINUSE from bind for uv_listen, which coil does
      -- not use: a socket left unbound has no port yet
      local a = tcp:getsockname()
      if not a or a.port == 0 then ok, e = nil, uv_error "EADDRINUSE" end
    end
    local self
    if ok then
      self, e = new_server(tcp, handler, ip .. ":" .. port, opts.backlog or BACKLOG,
                           uv.new_tcp, tcp_peer, opts.nodelay ~= false)
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
-- opts: `backlog` (default 511), `nodelay` (TCP: as net.listen's).
-- @return a server; nil, err when fd is not a stream socket
-- @raise on a bad fd, handler or option
function M.listen_fd(fd, handler, opts)
  if math_type(fd) ~= "integer" or fd < 0 then
    error("coil: net.listen_fd: fd must be a non-negative integer, got " .. tostring(fd), 2)
  end
  if type(handler) ~= "function" then
    error("coil: net.listen_fd: handler must be a function, got " .. type(handler), 2)
  end
  opts = check_opts(opts, { backlog = "number", nodelay = "boolean" }, "listen_fd")
  local family, kind = core.socket_info(fd)
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
                       new_client, peer_name, family ~= "unix" and opts.nodelay ~= false)
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
  -- the poll first: the socket's descriptor is closed with the handle
  for _, h in ipairs { self.poll, self.retry, self.handle } do
    if not h:is_closing() then h:close() end
  end
  untrack(self)
  -- a Unix domain socket's file goes with its server
  if self.path then uv.fs_unlink(self.path) end
  return true
end
Server.__close = Server.close

-- Unix domain sockets -----------------------------------------------------

local function check_path(path, what)
  if type(path) ~= "string" or path == "" then
    error(("coil: net.%s: path must be a non-empty string, got %s")
          :format(what, type(path) == "string" and '""' or type(path)), 3)
  end
end

--- net.connect_unix(path) ⏳ -> stream, or nil, err: connects to a Unix
-- domain stream socket ("ENOENT: no such file or directory",
-- "ECONNREFUSED: connection refused" when nobody listens there).
function M.connect_unix(path)
  in_task("net.connect_unix", 2)
  check_path(path, "connect_unix")
  local pipe = uv.new_pipe(false)
  local closer = function() if not pipe:is_closing() then pipe:close() end end
  local guard <close> = unowned(closer) -- a task closed by force too
  local ok, e = pcall(await, nil, closer, pipe.connect, pipe, path)
  if not ok then error(e, 0) end
  if e ~= nil then return nil, uv_error(e) end
  guard.closer = nil
  return new_stream(pipe, "unix:" .. path)
end

--- net.listen_unix(path, handler [, opts]) -> server, or nil, err: serves a
-- Unix domain stream socket at path as net.listen serves TCP (each
-- connection's task is named "unix:<path>#<n>"). The socket file is removed
-- when the server closes (server:close() or the shutdown). A file already
-- there gives "EADDRINUSE: address already in use". opts: `backlog`.
-- @raise on a bad path, handler or option
function M.listen_unix(path, handler, opts)
  check_path(path, "listen_unix")
  if type(handler) ~= "function" then
    error("coil: net.listen_unix: handler must be a function, got " .. type(handler), 2)
  end
  opts = check_opts(opts, { backlog = "number" }, "listen_unix")
  local pipe = uv.new_pipe(false)
  local ok, err = pipe:bind(path)
  if not ok then
    pipe:close()
    return nil, err
  end
  local name, n = "unix:" .. path, 0
  local self
  self, err = new_server(pipe, handler, name, opts.backlog or BACKLOG,
                         function() return uv.new_pipe(false) end,
                         function() n = n + 1 return name .. "#" .. n end)
  if not self then
    pipe:close()
    uv.fs_unlink(path)
    return nil, err
  end
  self.path = path
  return self
end

-- UDP --------------------------------------------------------------------------

local Udp = { __name = "coil.udp" }
Udp.__index = Udp

function Udp:__tostring()
  return ("coil.udp (%s%s)"):format(self.name, self.closed and ", closed" or "")
end

local function check_udp(self, what)
  if getmetatable(self) ~= Udp then
    error("coil: udp:" .. what .. " expects a UDP socket (use udp:" .. what .. "(...))", 3)
  end
  if self.closed then error("coil: udp:" .. what .. " on a closed socket", 3) end
end

-- Receiving is on only while a task waits in recv(): datagrams that come
-- meanwhile wait in the kernel's buffer.
local function stop_receiving(self)
  if self.receiving then
    self.receiving = false
    if not self.handle:is_closing() then self.handle:recv_stop() end
  end
end

local function on_recv(self, err, data, addr)
  if not err and data == nil then return end -- nothing more to read now
  self.tail = self.tail + 1
  self.inbox[self.tail] = err and { err = uv_error(err) } or { data, addr.ip, addr.port }
  stop_receiving(self)
  local receiver = self.receiver
  if receiver then
    self.receiver = nil
    wake(receiver)
  end
end

--- net.udp(host, port) ⏳ -> socket, or nil, err: a UDP socket bound to
-- host:port (port 0: any free port; see socket:address()).
function M.udp(host, port)
  in_task("net.udp", 2)
  check_host(host, "udp")
  check_port(port, "udp")
  local addrs, err = resolve(host)
  if not addrs then return nil, err end
  for _, ip in ipairs(addrs) do
    local udp = uv.new_udp(ip:find(":", 1, true) and "inet6" or "inet")
    local ok, e = udp:bind(ip, port)
    if ok then
      local a = udp:getsockname()
      local self = setmetatable({ handle = udp, name = address_name(a), closed = false,
                                  inbox = {}, head = 1, tail = 0, receiver = nil,
                                  receiving = false }, Udp)
      self.on_recv = function(e2, data, addr) on_recv(self, e2, data, addr) end
      return self
    end
    udp:close()
    err = e
  end
  return nil, err
end

--- udp:send(data, host, port) ⏳ -> true, or nil, err: sends one datagram.
function Udp:send(data, host, port)
  check_udp(self, "send")
  if type(data) ~= "string" then
    error("coil: udp:send: data must be a string, got " .. type(data), 2)
  end
  check_host(host, "udp:send")
  check_port(port, "udp:send")
  local addrs, err = resolve(host)
  if not addrs then return nil, err end
  if self.closed then return nil, uv_error "EBADF" end
  err = await(nil, false, self.handle.send, self.handle, data, addrs[1], port)
  if err then return nil, uv_error(err) end
  return true
end

--- udp:recv() ⏳ -> data, host, port of the next datagram; nil, err on
-- failure ("ECANCELED: operation canceled" once the socket is closed).
-- @raise when another task is receiving on it already
function Udp:recv()
  check_udp(self, "recv")
  local me = in_task("udp:recv", 2)
  while self.head > self.tail do
    if self.receiver then
      error("coil: udp:recv: another task is already receiving on this socket", 2)
    end
    if self.closed then return nil, ECANCELED end
    if not self.receiving then
      local ok, err = self.handle:recv_start(self.on_recv)
      if not ok then return nil, err end
      self.receiving = true
    end
    self.receiver = me
    local ok, err = pcall(park)
    if self.receiver == me then self.receiver = nil end
    if not ok then
      stop_receiving(self)
      error(err, 0)
    end
    if self.closed and self.head > self.tail then return nil, ECANCELED end
  end
  local item = self.inbox[self.head]
  self.inbox[self.head] = nil
  self.head = self.head + 1
  if item.err then return nil, item.err end
  return item[1], item[2], item[3]
end

--- udp:address() -> ip, port it is bound to.
function Udp:address()
  check_udp(self, "address")
  local a = self.handle:getsockname()
  return a.ip, a.port
end

--- udp:close(): closes at once; a task in recv() gets nil,
-- "ECANCELED: operation canceled". Twice does nothing.
function Udp:close()
  if getmetatable(self) ~= Udp then
    error("coil: udp:close expects a UDP socket (use udp:close())", 2)
  end
  if self.closed then return true end
  self.closed = true
  stop_receiving(self)
  if not self.handle:is_closing() then self.handle:close() end
  local receiver = self.receiver
  if receiver then
    self.receiver = nil
    wake(receiver)
  end
  return true
end
Udp.__close = Udp.close

return M
