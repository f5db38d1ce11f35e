local coil = require "coil"
local coil_core = require "coil.core"
local uv = require "luv"
local process = coil.process
local alive = require("spec.support.proc").alive

local function wait_until(check, limit)
  local deadline = coil.now() + (limit or 2)
  while not check() and coil.now() < deadline do coil.sleep(0.005) end
  return check()
end

describe("coil.process", function()
  it("reads a child's stdout line by line; its exit status", function()
    local p = assert(process.spawn("sh", { "-c", "echo one; printf 'two\\r\\n'; printf three; exit 3" },
                                   { stdout = "pipe" }))
    assert.is_number(p.pid)
    assert.equal("one", p.stdout:read_line())
    assert.equal("two", p.stdout:read_line())
    assert.equal("three", p.stdout:read_line())
    assert.is_nil(p.stdout:read_line())
    local code, signal = p:wait()
    assert.equal(3, code)
    assert.equal(0, signal)
    assert.same({ 3, 0 }, { p:wait() }) -- again: at once
    assert.matches("exited 3", tostring(p))
  end)

  it("reports the signal that ended a child", function()
    local p = assert(process.spawn("sleep", { "10" }))
    assert.is_true(p:kill()) -- SIGTERM by default
    assert.same({ 0, 15 }, { p:wait() })
    local q = assert(process.spawn("sleep", { "10" }))
    assert.is_true(q:kill("sigkill"))
    assert.same({ 0, 9 }, { q:wait() })
    local r = assert(process.spawn("sleep", { "10" }))
    assert.is_true(r:kill(2))
    assert.same({ 0, 2 }, { r:wait() })
    local s, err = r:kill("TERM")
    assert.is_nil(s)
    assert.equal("ESRCH: no such process", err)
  end)

  it("writes to a child's stdin and reads its stdout and stderr", function()
    local p = assert(process.spawn("sh", { "-c", "cat; echo oops >&2" },
                                   { stdin = "pipe", stdout = "pipe", stderr = "pipe" }))
    assert.is_true(p.stdin:write("through cat\n"))
    p.stdin:close()
    assert.equal("through cat", p.stdout:read_line())
    assert.is_nil(p.stdout:read_line())
    assert.equal("oops", p.stderr:read_line())
    assert.is_nil(p.stderr:read())
    assert.same({ 0, 0 }, { p:wait() })
  end)

  it("sets the environment and the working directory", function()
    local p = assert(process.spawn("sh", { "-c", 'echo "$GREETING"; pwd' }, {
      env = { GREETING = "hi there", PATH = os.getenv("PATH") },
      cwd = "/tmp", stdout = "pipe", stdin = "ignore",
    }))
    assert.equal("hi there", p.stdout:read_line())
    assert.equal("/tmp", p.stdout:read_line())
    assert.is_nil(p.stdout:read_line())
    p:wait()
    p = assert(process.spawn("sh", { "-c", 'echo "$A"' },
                             { env = { "A=list form" }, stdout = "pipe" }))
    assert.equal("list form", p.stdout:read_line())
    assert.is_nil(p.stdout:read())
    p:wait()
  end)

  it("reads the options table once, before it opens a pipe", function()
    local opts = setmetatable({ stdout = "pipe" }, { __index = function() error("read again") end })
    local r = assert(coil.process.run("echo", { "once" }, opts))
    assert.equal("once\n", r.stdout)
  end)

  it("returns nil, err when the command cannot start", function()
    local p, err = process.spawn("/no/such/command", {})
    assert.is_nil(p)
    assert.equal("ENOENT: no such file or directory", err)
    p, err = process.spawn("true", {}, { cwd = "/no/such/dir", stdout = "pipe" })
    assert.is_nil(p)
    assert.matches("^ENOENT", err)
  end)

  it("raises on programming mistakes", function()
    assert.error_matches(function() process.spawn(42) end, "coil: process.spawn: cmd")
    assert.error_matches(function() process.spawn("true", "x") end, "coil: process.spawn: args")
    assert.error_matches(function() process.spawn("true", { {} }) end, "args%[1%]")
    assert.error_matches(function() process.spawn("true", {}, { stdout = "file" }) end,
                         "opts.stdout must be")
    assert.error_matches(function() process.spawn("true", {}, { detached = true }) end,
                         "coil: process.spawn: unknown option detached")
    assert.error_matches(function() process.spawn("true", {}, { group = "no" }) end,
                         "opts.group must be a boolean")
    assert.error_matches(function() process.run("true", {}, { input = 42 }) end,
                         "coil: process.run: opts.input must be a string")
    assert.error_matches(function() process.run("true", {}, { timeout = 1 }) end,
                         "coil: process.run: unknown option timeout")
    assert.error_matches(function() process.spawn("true", {}, { env = { A = {} } }) end,
                         "opts.env")
    local p = assert(process.spawn("true", {}))
    assert.error_matches(function() p:kill("SIGNOPE") end, "unknown signal SIGNOPE")
    p:wait()
  end)

  describe("cancelling a task blocked in", function()
    it("wait() terminates the child and has seen it exit", function()
      local p = assert(process.spawn("sleep", { "10" }))
      local task = coil.spawn(p.wait, p)
      coil.sleep(0.02)
      task:cancel()
      assert.is_false(pcall(task.await, task))
      assert.is_false(alive(p.pid))
      assert.same({ 0, 15 }, { p:wait() })
      assert.is_true(wait_until(function() return #coil_core.open_handles() == 0 end))
    end)

    it("a read of its stdout leaves the pipe idle", function()
      local p = assert(process.spawn("sh", { "-c", "exec sleep 10" }, { stdout = "pipe" }))
      local task = coil.spawn(p.stdout.read, p.stdout)
      coil.sleep(0.02)
      task:cancel()
      assert.is_false(pcall(task.await, task))
      assert.is_false(p.stdout.reading)
      p:kill()
      p:wait()
      p.stdout:close()
      assert.is_true(wait_until(function() return #coil_core.open_handles() == 0 end))
    end)
  end)

  it("closes the child's stdin when it exits, so writes fail at once", function()
    local p = assert(process.spawn("true", {}, { stdin = "pipe" }))
    p:wait()
    local ok, err = p.stdin:write("nobody reads this")
    assert.is_nil(ok)
    assert.equal("EPIPE: broken pipe", err)
    p.stdin:close()
  end)

  it("leaves luv's own spawn untouched", function()
    local done
    local h = uv.spawn("true", {}, function(code) done = code end)
    assert.is_true(wait_until(function() return done ~= nil end))
    h:close()
    assert.equal(0, done)
  end)
end)
