--- coil.process: child processes. spawn() starts one at once; wait() awaits
-- its end; run() runs one to its end with its output captured. A child's
-- pipes are coil.net streams.
--
-- coil never leaves a child behind, nor a grandchild: each child leads a
-- process group of its own (libuv's detached spawn: a session of its own)
-- and every signal coil sends it goes to the whole group. When the shutdown
-- begins every child still running gets SIGTERM (step 2, before the
-- on_shutdown hooks); when the handles are closed (step 6: the cleanup is
-- over, or the grace ran out, or a second Ctrl+C forced it) any still
-- running gets SIGKILL. A task cancelled in wait() terminates the child.
local core = require "coil.core"
local in_task = core.in_task
local uv = require "luv"
local net = require "coil.net"
local sync = require "coil.sync"
require "coil.await"
require "coil.combinators"

local uv_error = core.uv_error
local fifo, wait_in, wake_first = sync.fifo, sync.wait_in, sync.wake_first
local type, error, pcall, tostring, ipairs, pairs =
  type, error, pcall, tostring, ipairs, pairs
local setmetatable, getmetatable = setmetatable, getmetatable
local sort, concat = table.sort, table.concat
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

-- Sends signum to the child's group (or to the child alone with
-- opts.group = false). A child already reaped is not signalled: its pid,
-- and so its group id, may belong to someone else by now.
local function signal_child(self, signum)
  if self.code ~= nil or self.handle:is_closing() then return nil, uv_error "ESRCH" end
  if self.group then
    local ok, err = uv.kill(-self.pid, signum)
    if ok then return true end
    -- the leader may have left its group empty of others and just exited
    if not tostring(err):match "^ESRCH" then return nil, err end
  end
  return self.handle:kill(signum)
end

core.on_stop_intake(function()
  for child in pairs(running) do pcall(signal_child, child, SIGNALS.SIGTERM) end
end)

-- Step 6 kills the child itself (coil.handles); its group goes first.
local close_handles = core.hooks.close_handles
function core.hooks.close_handles(...)
  for child in pairs(running) do
    if child.group then pcall(uv.kill, -child.pid, SIGNALS.SIGKILL) end
  end
  return close_handles(...)
end

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

-- The file exec would run for cmd, as execvp finds it (PATH from the
-- child's environment, glibc's default without one), or nil, err with
-- the error uv.spawn gives.
local ENOENT, EACCES = "ENOENT: no such file or directory", "EACCES: permission denied"
local function find_command(cmd, env, cwd)
  -- nil if there is no such file, false if it cannot be run, else true
  local function runnable(path)
    if cwd and path:sub(1, 1) ~= "/" then path = cwd .. "/" .. path end
    local st = uv.fs_stat(path)
    if not st then return nil end
    return st.type ~= "directory" and uv.fs_access(path, "X") == true
  end
  if cmd:find("/", 1, true) then
    local ok = runnable(cmd)
    if ok then return cmd end
    return nil, ok == nil and ENOENT or EACCES
  end
  local path = os.getenv "PATH"
  if env then
    path = nil
    for _, var in ipairs(env) do path = var:match "^PATH=(.*)$" or path end
  end
  local err = ENOENT
  for dir in ((path or "/bin:/usr/bin") .. ":"):gmatch "([^:]*):" do
    local file = (dir == "" and "." or dir) .. "/" .. cmd
    local ok = runnable(file)
    if ok then return file end
    if ok == false then err = EACCES end
  end
  return nil, err
end

-- libuv's child resets every signal to its default before exec; one that
-- coil was started with ignored (nohup) stays ignored for its children
-- (SPEC §3), so the child is exec'd by a shell that ignores it again. Only
-- then: a normal spawn costs nothing more.
local function keep_ignored(cmd, args, env, cwd)
  local ignored = core.ignored_signals()
  if not ignored then return cmd, args end
  local file, err = find_command(cmd, env, cwd)
  if not file then return nil, err end
  local shell_args = { "-c", "trap '' " .. ignored .. '; exec "$0" "$@"', file }
  for i = 1, #(args or {}) do shell_args[i + 3] = args[i] end
  return "/bin/sh", shell_args
end

local SPAWN_OPTS = { env = true, cwd = true, stdin = true, stdout = true,
                     stderr = true, group = true }

local function check_args(cmd, args, opts, what, known)
  if type(cmd) ~= "string" or cmd == "" then
    bad(what, "cmd must be a non-empty string, got " .. type(cmd), 3)
  end
  if args ~= nil and type(args) ~= "table" then
    bad(what, "args must be a list of strings, got " .. type(args), 3)
  end
  for i, a in ipairs(args or {}) do
    if type(a) ~= "string" and type(a) ~= "number" then
      bad(what, ("args[%d] must be a string, got %s"):format(i, type(a)), 3)
    end
  end
  if opts ~= nil and type(opts) ~= "table" then
    bad(what, "opts must be a table, got " .. type(opts), 3)
  end
  -- a copy: the caller's table (its metamethods included) is read once,
  -- here, before any pipe is opened
  local copy = {}
  for k, v in pairs(opts or {}) do
    if not known[k] then bad(what, "unknown option " .. tostring(k), 3) end
    copy[k] = v
  end
  opts = copy
  if opts.cwd ~= nil and type(opts.cwd) ~= "string" then
    bad(what, "opts.cwd must be a string, got " .. type(opts.cwd), 3)
  end
  if opts.group ~= nil and type(opts.group) ~= "boolean" then
    bad(what, "opts.group must be a boolean, got " .. type(opts.group), 3)
  end
  return opts
end

local function spawn(cmd, args, opts, what)
  local env = env_list(opts.env)
  local stdio, pipes = {}, {}
  for i, name in ipairs(STDIO) do
    local how = opts[name]
    if how == nil or how == "inherit" then
      stdio[i] = i - 1
    elseif how == "pipe" then
      pipes[name] = uv.new_pipe(false)
      stdio[i] = pipes[name]
    elseif how == "ignore" or how == "null" then
      stdio[i] = nil
    elseif math_type(how) == "integer" and how >= 0 then
      stdio[i] = how
    else
      for _, p in pairs(pipes) do p:close() end
      bad(what, ('opts.%s must be "inherit", "pipe", "null" or an fd, got %s')
                :format(name, tostring(how)), 3)
    end
  end

  local group = opts.group ~= false
  local self = setmetatable({ cmd = cmd, waiters = fifo(), group = group }, Process)
  local file, file_args = keep_ignored(cmd, args, env, opts.cwd)
  local handle, pid
  if file then
    handle, pid = uv.spawn(file, {
      args = file_args, stdio = stdio, env = env, cwd = opts.cwd, detached = group,
    }, function(code, signal) on_exit(self, code, signal) end)
  else
    pid = file_args
  end
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

--- process.spawn(cmd, args, opts) -> process, or nil, err.
-- `cmd` is looked up in PATH; `args` a list of strings (not including cmd).
-- opts: `env` (a table of NAME = value, or a list of "NAME=value"; it
-- replaces the environment), `cwd`, `stdin` / `stdout` / `stderr`:
-- "inherit" (the default: coil's own), "pipe" (a stream, at process.stdin
-- …), "null" (/dev/null; "ignore" is the same) or an fd number; `group`:
-- false keeps the child in coil's own process group (and session), for a
-- child that must share coil's terminal; by default it leads a group of
-- its own and every signal coil sends it goes to that group.
-- @return a process with pid, wait, kill and its pipes; nil, err if it could
-- not start ("ENOENT: no such file or directory")
-- @raise on arguments of the wrong type, or an unknown option
function M.spawn(cmd, args, opts)
  opts = check_args(cmd, args, opts, "spawn", SPAWN_OPTS)
  return spawn(cmd, args, opts, "spawn")
end

local function check_process(self, what)
  if getmetatable(self) ~= Process then
    error("coil: process:" .. what .. " expects a process (use process:" .. what .. "(...))", 3)
  end
end

local closing_timer = {
  __close = function(t) if not t.handle:is_closing() then t.handle:close() end end,
}

-- The task `me` was cancelled while waiting for the child: SIGTERM to its
-- group, SIGKILL once the grace is over (or at a second cancellation, or
-- when the task is closed by force), and wait until it has exited.
local function terminate(self, me)
  if self.code ~= nil then return end
  pcall(signal_child, self, SIGNALS.SIGTERM)
  -- <close>: a task closed by force never reaches the end of this function
  local timer <close> = setmetatable({ handle = uv.new_timer() }, closing_timer)
  core.untrack(timer.handle)
  timer.handle:start(math.floor(core.grace() * 1000 + 0.5), 0, function()
    pcall(signal_child, self, SIGNALS.SIGKILL)
  end)
  local killed = false
  while self.code == nil do
    if not pcall(wait_in, self.waiters, me) then
      if killed then break end -- closed by force: awaits fail at once
      killed = true
      pcall(signal_child, self, SIGNALS.SIGKILL)
    end
  end
end

--- process:wait() ⏳ -> exit status, signal (the number that ended it, 0
-- if none). Returns at once once the child has exited.
-- @raise Cancelled if the waiting task is cancelled (a timeout, the
-- shutdown): the child's group then gets SIGTERM, SIGKILL after the grace,
-- and the child has exited before the error leaves wait()
function Process:wait()
  check_process(self, "wait")
  if self.code == nil then
    local me = in_task("process:wait", 2)
    local ok, err = pcall(function()
      repeat wait_in(self.waiters, me) until self.code ~= nil
    end)
    if not ok then
      terminate(self, me)
      error(err, 0)
    end
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
  local ok, err = signal_child(self, signum)
  if not ok then return nil, err end
  return true
end

local RUN_OPTS = { env = true, cwd = true, group = true, input = true,
                   stdin = true, stdout = true, stderr = true }

-- Reads a stream to its end (a task of run()).
local function read_all(stream)
  local parts = {}
  while true do
    local data, err = stream:read()
    if not data then
      if err then return nil, err end
      return concat(parts)
    end
    parts[#parts + 1] = data
  end
end

local function feed(stream, input)
  -- a child that exits without reading it all makes these fail: fine
  if stream:write(input) then stream:drain() end
  stream:close()
end

--- process.run(cmd, args, opts) ⏳ -> result, or nil, err: runs a child to
-- its end, with `opts.input` (a string) as its stdin (/dev/null without
-- it) and its stdout and stderr captured (unless opts says "inherit" or
-- an fd for them). Other options as spawn.
-- @return { status =, signal =, stdout =, stderr = } (the captured output
-- as strings, nil for what was not captured); nil, err if it could not start
-- @raise Cancelled if the caller is cancelled: the child's group is
-- terminated as for wait(); raises on bad arguments as spawn does
function M.run(cmd, args, opts)
  opts = check_args(cmd, args, opts, "run", RUN_OPTS)
  in_task("process.run", 2)
  local input = opts.input
  if input ~= nil and type(input) ~= "string" then
    bad("run", "opts.input must be a string, got " .. type(input))
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.input = nil
  if input then
    if o.stdin ~= nil then bad("run", "opts.input and opts.stdin exclude each other") end
    o.stdin = "pipe"
  end
  o.stdin = o.stdin or "null"
  o.stdout = o.stdout or "pipe"
  o.stderr = o.stderr or "pipe"
  local child, err = spawn(cmd, args, o, "run")
  if not child then return nil, err end
  local helpers = {}
  if input then helpers[#helpers + 1] = core.spawn(feed, child.stdin, input) end
  local out = child.stdout and core.spawn(read_all, child.stdout)
  local errs = child.stderr and core.spawn(read_all, child.stderr)
  helpers[#helpers + 1] = out
  helpers[#helpers + 1] = errs
  local ok, status, signal = pcall(child.wait, child)
  if ok then
    -- the output ends when the last holder of the pipes has gone
    ok, err = pcall(core.gather, helpers, { return_errors = true })
  else
    err = status
  end
  if not ok then
    for _, t in ipairs(helpers) do t:cancel() end
    for _, name in ipairs(STDIO) do
      if child[name] then child[name]:close() end
    end
    core.wait(helpers) -- their cleanup is over before the error leaves
    error(err, 0)
  end
  return { status = status, signal = signal,
           stdout = out and out:result() or nil, stderr = errs and errs:result() or nil }
end

return M
