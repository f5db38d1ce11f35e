--- Runs a process for the specs (the coil binary on a fixture, usually) with
-- luv directly, independent of the coil features under test: collects its
-- output, waits for a line (the "ready" protocol), sends real signals, and
-- waits for its end with a time limit.
local coil = require "coil"
local coil_core = require "coil.core"
local uv = require "luv"

local M = {}

local Proc = {}
Proc.__index = Proc

-- Wakes every task waiting for this process to change.
local function changed(self)
  local waiting = self.waiting
  self.waiting = {}
  for _, task in ipairs(waiting) do coil_core.wake(task) end
end

-- Waits until check() is true or `limit` seconds passed; returns check().
local function wait_until(self, check, limit)
  local deadline = uv.now() + limit * 1000
  local timer = uv.new_timer()
  local me = coil.current()
  local ok, err = pcall(function()
    while not check() and uv.now() < deadline do
      self.waiting[#self.waiting + 1] = me
      timer:start(math.max(1, math.floor(deadline - uv.now())), 0, function()
        coil_core.wake(me)
      end)
      coil_core.park()
      timer:stop()
    end
  end)
  timer:close()
  for i = #self.waiting, 1, -1 do
    if self.waiting[i] == me then table.remove(self.waiting, i) end
  end
  if not ok then error(err, 0) end
  return check()
end

local function reader(self, name)
  return function(err, data)
    assert(not err, err)
    if data then
      self[name] = self[name] .. data
    else
      self.eof[name] = true
      self.pipes[name]:close()
    end
    changed(self)
  end
end

--- Starts cmd with args; opts.env (list of "K=V"), opts.stdin (a string).
function M.start(cmd, args, opts)
  opts = opts or {}
  local self = setmetatable({ stdout = "", stderr = "", eof = {},
                              waiting = {}, pipes = {} }, Proc)
  local stdout, stderr = uv.new_pipe(), uv.new_pipe()
  local stdin = uv.new_pipe()
  self.pipes.stdout, self.pipes.stderr = stdout, stderr
  self.started = uv.hrtime()
  local handle, pid = uv.spawn(cmd, {
    args = args, env = opts.env, cwd = opts.cwd,
    stdio = { stdin, stdout, stderr },
  }, function(code, signal)
    self.code, self.signal = code, signal
    self.ended = uv.hrtime()
    self.handle:close()
    changed(self)
  end)
  if not handle then
    stdout:close(); stderr:close(); stdin:close()
    error(cmd .. ": " .. tostring(pid), 2)
  end
  self.handle, self.pid = handle, pid
  stdout:read_start(reader(self, "stdout"))
  stderr:read_start(reader(self, "stderr"))
  if opts.stdin then stdin:write(opts.stdin) end
  stdin:shutdown(function() stdin:close() end)
  return self
end

--- Starts the coil binary with the given arguments.
function M.coil(args, opts)
  return M.start(COIL_BIN, args, opts)
end

--- Waits (up to `limit` s, default 10) for stdout to contain `pattern`.
function Proc:wait_for(pattern, limit)
  return wait_until(self, function()
    return self.stdout:find(pattern) ~= nil or self.code ~= nil
  end, limit or 10) and self.stdout:find(pattern) ~= nil
end

function Proc:kill(sig)
  self.signalled_at = uv.hrtime()
  return uv.kill(self.pid, sig)
end

--- Waits (up to `limit` s, default 20) for the end and both pipes' EOF;
-- kills it if it overstays. Returns a result table: code, signal (a
-- number, 0 if none), stdout, stderr, elapsed (s since start), after_signal
-- (s from the last kill to the end).
function Proc:wait(limit)
  local done = wait_until(self, function()
    return self.code ~= nil and self.eof.stdout and self.eof.stderr
  end, limit or 20)
  if not done then
    uv.kill(self.pid, "sigkill")
    wait_until(self, function()
      return self.code ~= nil and self.eof.stdout and self.eof.stderr
    end, 5)
  end
  return {
    code = self.code, signal = self.signal, stdout = self.stdout,
    stderr = self.stderr, timed_out = not done,
    elapsed = ((self.ended or uv.hrtime()) - self.started) / 1e9,
    after_signal = self.signalled_at
      and ((self.ended or uv.hrtime()) - self.signalled_at) / 1e9,
  }
end

--- Runs coil to its end: M.run({args}, opts) -> result.
function M.run(args, opts)
  return M.coil(args, opts):wait(opts and opts.limit)
end

--- Whether a process with this pid still exists (and is not a zombie).
function M.alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  return not stat:match("^%d+ %b() Z")
end

return M
