--- coil.process: child processes. spawn() starts one at once; wait() awaits
-- its end. A child's pipes are coil.net streams. coil never leaves a child
-- behind: when the shutdown begins every child still running gets SIGTERM
-- (step 2, before the on_shutdown hooks), and when the handles are closed
-- (step 6: the
-- cleanup is over, or the grace ran out, or a second Ctrl+C forced it) any
-- still running gets SIGKILL.
local core = require "coil"
local uv = require "luv"
local net = require "coil.net"
local sync = require "coil.sync"
require "coil.await"

local uv_error, current = core._uv_error, core.current
local fifo, wait_in, wake_first = sync.fifo, sync.wait_in, sync.wake_first
local type, error, pcall, tostring, ipairs, pairs, next =
  type, error, pcall, tostring, ipairs, pairs, next
local setmetatable, getmetatable = setmetatable, getmetatable
local sort = table.sort
local math_type = math.type

local M = {}

local SIGNALS = {}
for name, value in pairs(uv.constants) do
  if name:match "^SIG" then SIGNALS[name] = value end
end

local Process = { __name = "coil.process" }
Process.__index = Process

function Process:__tostring()
  if self.code == nil then
    return ("coil.process (%s, pid %d, running)"):format(self.cmd, self.pid)
  end
  return ("coil.process (%s, pid %d, exited %d, signal %d)")
         :format(self.cmd, self.pid, self.code, self.signal)
end

-- Children still running, each sent SIGTERM when the shutdown begins (step
-- 2, before any on_shutdown hook).
local running = {}

core._on_stop_intake(function()
  for child in pairs(running) do
    pcall(child.handle.kill, child.handle, SIGNALS.SIGTERM)
  end
end)

local function track(child) running[child] = true end
local function untrack(child) running[child] = nil end

local function on_exit(self, code, signal)
  self.code, self.signal = code, signal
  untrack(self)
  if not self.handle:is_closing() then self.handle:close() end
  -- nobody reads the child's stdin any more: writes now fail at once
  local stdin = self.stdin
  if stdin and not stdin.handle:is_closing() then stdin.handle:close() end
  while wake_first(self.waiters) do end
end

local function bad(what, message, level)
  error("coil: process." .. what .. ": " .. message, (level or 2) + 1)
end

local function signal_number(sig, what)
  if sig == nil then return SIGNALS.SIGTERM end
  if math_type(sig) == "integer" and sig >= 0 and sig < 65 then return sig end
  if type(sig) == "string" then
    local name = sig:upper()
    if not name:match "^SIG" then name = "SIG" .. name end
    local n = SIGNALS[name]
    if n then return n end
  end
  error(("coil: process:%s: unknown signal %s"):format(what, tostring(sig)), 3)
end

local function env_list(env)
  if env == nil then return nil end
  if type(env) ~= "table" then bad("spawn", "opts.env must be a table, got " .. type(env), 3) end
  local list, names = {}, {}
  for k, v in pairs(env) do
    if math_type(k) == "integer" then
      if type(v) ~= "string" or not v:find("=", 1, true) then
        bad("spawn", "opts.env list entries must be \"NAME=value\" strings", 3)
      end
      list[#list + 1] = v
    elseif type(k) == "string" and (type(v) == "string" or type(v) == "number") then
      names[#names + 1] = k
    else
      bad("spawn", "opts.env must map names to strings", 3)
    end
  end
  sort(names)
  for _, k in ipairs(names) do list[#list + 1] = k .. "=" .. env[k] end
  return list
end

local STDIO = { "stdin", "stdout", "stderr" }

--- process.spawn(cmd, args, opts) -> process, or nil, err.
-- `cmd` is looked up in PATH; `args` a list of strings (not including cmd).
-- opts: `env` (a table of NAME = value, or a list of "NAME=value"; it
-- replaces the environment), `cwd`, and `stdin` / `stdout` / `stderr`:
-- "inherit" (the default: coil's own), "pipe" (a stream, at process.stdin
-- …), "ignore" (/dev/null) or an fd number.
-- @return a process with pid, wait, kill and its pipes; nil, err if it could
-- not start ("ENOENT: no such file or directory")
-- @raise on arguments of the wrong type
function M.spawn(cmd, args, opts)
  if type(cmd) ~= "string" or cmd == "" then
    bad("spawn", "cmd must be a non-empty string, got " .. type(cmd))
  end
  if args ~= nil and type(args) ~= "table" then
    bad("spawn", "args must be a list of strings, got " .. type(args))
  end
  for i, a in ipairs(args or {}) do
    if type(a) ~= "string" and type(a) ~= "number" then
      bad("spawn", ("args[%d] must be a string, got %s"):format(i, type(a)))
    end
  end
  if opts ~= nil and type(opts) ~= "table" then
    bad("spawn", "opts must be a table, got " .. type(opts))
  end
  opts = opts or {}
  if opts.cwd ~= nil and type(opts.cwd) ~= "string" then
    bad("spawn", "opts.cwd must be a string, got " .. type(opts.cwd))
  end
  local env = env_list(opts.env)
  local stdio, pipes = {}, {}
  for i, name in ipairs(STDIO) do
    local how = opts[name]
    if how == nil or how == "inherit" then
      stdio[i] = i - 1
    elseif how == "pipe" then
      pipes[name] = uv.new_pipe(false)
      stdio[i] = pipes[name]
    elseif how == "ignore" then
      stdio[i] = nil
    elseif math_type(how) == "integer" and how >= 0 then
      stdio[i] = how
    else
      for _, p in pairs(pipes) do p:close() end
      bad("spawn", ('opts.%s must be "inherit", "pipe", "ignore" or an fd, got %s')
                   :format(name, tostring(how)))
    end
  end

  local self = setmetatable({ cmd = cmd, waiters = fifo() }, Process)
  local handle, pid = uv.spawn(cmd, {
    args = args, stdio = stdio, env = env, cwd = opts.cwd,
  }, function(code, signal) on_exit(self, code, signal) end)
  if not handle then
    for _, p in pairs(pipes) do p:close() end
    return nil, pid
  end
  self.handle, self.pid = handle, pid
  for _, name in ipairs(STDIO) do
    if pipes[name] then
      self[name] = net._stream(pipes[name], ("%s of %s[%d]"):format(name, cmd, pid),
                               name ~= "stdin")
    end
  end
  track(self)
  return self
end

local function check_process(self, what)
  if getmetatable(self) ~= Process then
    error("coil: process:" .. what .. " expects a process (use process:" .. what .. "(...))", 3)
  end
end

--- process:wait() ⏳ -> exit status, signal (the number that ended it, 0
-- if none). Returns at once once the child has exited. Cancelling the
-- waiting task stops the wait only: the child goes on (kill it if that is
-- what you want; the shutdown will).
function Process:wait()
  check_process(self, "wait")
  if self.code == nil then
    local me = current()
    if not me then error("coil: process:wait must be called from inside a task", 2) end
    repeat wait_in(self.waiters, me) until self.code ~= nil
  end
  return self.code, self.signal
end

--- process:kill([sig]) -> true, or nil, err. sig: a name ("SIGTERM",
-- "term", "sigkill") or a number; SIGTERM by default. Once the child has
-- exited: nil, "ESRCH: no such process".
-- @raise on an unknown signal
function Process:kill(sig)
  check_process(self, "kill")
  local signum = signal_number(sig, "kill")
  if self.code ~= nil or self.handle:is_closing() then return nil, uv_error "ESRCH" end
  local ok, err = self.handle:kill(signum)
  if not ok then return nil, err end
  return true
end

return M
