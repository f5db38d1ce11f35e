--- coil.net: TCP clients and servers as awaiting calls, over IPv4 and IPv6,
-- names resolved by libuv's resolver (uv_getaddrinfo). Connections are
-- coil.stream streams (lua/coil/stream.lua).
local core = require "coil"
local uv = require "luv"
require "coil.await"
local stream_mod = require "coil.stream"

local await, uv_error = core._await, core._uv_error
local current, spawn, defer = core.current, core.spawn, core.defer
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
