--- coil.service: life under a service manager (SPEC §9, docs/deploy.md).
-- systemd's notify protocol (READY=1, STATUS=, STOPPING=1; the watchdog
-- ping runs in C from the loop) and socket activation. Without
-- NOTIFY_SOCKET / LISTEN_FDS every call is a harmless no-op.
local core = require "coil.core"

local type, tonumber, ipairs, error, find = type, tonumber, ipairs, error, string.find
local getenv = os.getenv
local notify = core.notify

local M = {}

--- Sends one notify message (`"NAME=value"` lines) to NOTIFY_SOCKET.
-- @tparam string text
-- @return true when sent, false without NOTIFY_SOCKET; nil, err if sending
-- failed (the manager went away, say)
-- @raise when text is not a string
function M.notify(text)
  if type(text) ~= "string" then
    error("coil: service.notify expects a string, got " .. type(text), 2)
  end
  return notify(text)
end

--- Tells the service manager the service is up (READY=1): a Type=notify
-- unit, or the `--workers` supervisor during a rolling replacement, waits
-- for it.
-- @return as notify
function M.ready()
  return notify "READY=1\n"
end

--- Sets the one-line status `systemctl status` shows (STATUS=text).
-- @tparam string text one line
-- @return as notify
-- @raise when text is not a string or holds a newline
function M.status(text)
  if type(text) ~= "string" then
    error("coil: service.status expects a string, got " .. type(text), 2)
  end
  if find(text, "\n", 1, true) then
    error("coil: service.status: the text must be one line", 2)
  end
  return notify("STATUS=" .. text .. "\n")
end

local fds, names

--- The descriptors socket activation passed (LISTEN_FDS, from fd 3), when
-- LISTEN_PID is this process. The first call takes them out of the
-- environment (children do not inherit them); later calls return the same.
-- @return a list of file descriptors (possibly empty), and a list of their
-- names (LISTEN_FDNAMES; "unknown" where none was given)
function M.listen_fds()
  if not fds then fds, names = core.listen_fds() end
  local a, b = {}, {}
  for i = 1, #fds do a[i], b[i] = fds[i], names[i] end
  return a, b
end

--- The worker number (COIL_WORKER) under `coil --workers`, or nil.
function M.worker()
  return tonumber(getenv "COIL_WORKER")
end

-- Step 1 of the shutdown tells the manager we are stopping (with the time
-- the grace may take, when it outlasts the watchdog).
if getenv "NOTIFY_SOCKET" then
  core.on_stop_intake(function() core.notify_stopping() end)
end

-- A worker that starts listening is up for the supervisor, as if it had
-- called ready(): wrap the listening calls once coil.net is loaded. An
-- error keeps pointing at the caller, not at this wrapper.
if getenv "COIL_WORKER" and getenv "NOTIFY_SOCKET" then
  local net = require "coil.net"
  local pcall, said = pcall, false
  local function up(ok, server, err)
    if not ok then
      if type(server) == "string" then
        error((server:gsub("^[^\n]-service%.lua:%d+: ", "")), 2)
      end
      error(server, 0)
    end
    if server and not said then
      said = true
      notify "READY=1\n"
    end
    return server, err
  end
  for _, name in ipairs { "listen", "listen_unix", "listen_fd" } do
    local listen = net[name]
    if listen then
      net[name] = function(...) return up(pcall(listen, ...)) end
    end
  end
end

core.service = M
return M
