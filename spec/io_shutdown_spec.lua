-- What the shutdown does to I/O, with real processes and real signals.
local coil = require "coil"
local proc = require "spec.support.proc"
local net = coil.net

local SIGINT = 2

local function wait_until(check, limit)
  local deadline = coil.now() + (limit or 5)
  while not check() and coil.now() < deadline do coil.sleep(0.01) end
  return check()
end

-- Lines of text, in order; `before(a, b)` checks a comes before b.
local function position(text, line)
  local at = text:find(line, 1, true)
  assert(at, ("%q not in the output:\n%s"):format(line, text))
  return at
end

describe("the shutdown", function()
  it("stops a server accepting, then cancels its idle and busy connections", function()
    local p = proc.coil({ "spec/fixtures/io_server.lua" })
    assert.is_true(p:wait_for("ready %d+\n"))
    local port = tonumber(p.stdout:match("ready (%d+)"))

    local idle = assert(net.connect("127.0.0.1", port))
    local busy = assert(net.connect("127.0.0.1", port))
    idle:write("idle\n")
    busy:write("busy\n")
    -- the busy one streams data to a reader that keeps up
    local received = {}
    local reader = coil.spawn(function()
      while true do
        local data = busy:read()
        if not data then return end
        received[#received + 1] = data
        if #received > 64 then table.remove(received, 1) end
      end
    end)
    assert.is_true(p:wait_for("busy connected") and p:wait_for("idle connected"))
    assert.is_true(wait_until(function() return #received > 4 end))

    p:kill("sigint")
    local r = p:wait()
    local goodbye = idle:read_line()
    reader:await()
    local tail = table.concat(received)
    idle:close()
    busy:close()

    assert.equal(SIGINT, r.signal, r.stderr)
    -- the hook after the server's own saw the listener closed, with both
    -- connection tasks still alive
    assert.matches("hook: new connection ECONNREFUSED: connection refused", r.stdout)
    assert.matches("hook: connection tasks alive 2", r.stdout)
    -- then they were cancelled, and their cleanup ran with the socket open
    local hook = position(r.stdout, "hook: connection tasks alive")
    assert.is_true(hook < position(r.stdout, "defer idle"))
    assert.is_true(hook < position(r.stdout, "defer busy"))
    assert.equal("bye idle", goodbye)
    assert.matches("bye busy\n$", tail)
    assert.matches("SIGINT received, cancelling 3 task%(s%)", r.stderr)
    assert.not_matches("closed by force", r.stderr)
  end)

  describe("leaves no child process behind", function()
    local function run(mode, args, signals)
      local p = proc.coil(args)
      assert.is_true(p:wait_for("ready %d+\n"))
      local pid = tonumber(p.stdout:match("ready (%d+)"))
      assert.is_true(proc.alive(pid))
      for i = 1, signals do
        if i > 1 then coil.sleep(0.1) end
        p:kill("sigint")
      end
      local r = p:wait()
      assert.equal(SIGINT, r.signal, r.stderr)
      assert.is_true(wait_until(function() return not proc.alive(pid) end, 2),
                     mode .. ": child " .. pid .. " still alive")
      return r
    end

    it("after SIGINT: the child gets SIGTERM", function()
      local r = run("plain", { "spec/fixtures/io_child.lua", "plain" }, 1)
      assert.matches("child: coil.process %(sleep, pid %d+, exited 0, signal 15%)", r.stdout)
    end)

    it("after SIGINT, when the child ignores SIGTERM: SIGKILL once cleanup is over", function()
      local r = run("stubborn", { "spec/fixtures/io_child.lua", "stubborn" }, 1)
      assert.matches("child: coil.process %(sh, pid %d+, running%)", r.stdout)
      assert.is_true(r.after_signal < 2)
    end)

    it("after a forced shutdown (a second SIGINT)", function()
      local r = run("stuck", { "spec/fixtures/io_child.lua", "stuck" }, 2)
      assert.matches("closed by force", r.stderr)
    end)

    it("after the grace ran out", function()
      local r = run("stuck", { "--grace", "0.3", "spec/fixtures/io_child.lua", "stuck" }, 1)
      assert.matches("ignored cancellation for [%d.]+ s; closed by force", r.stderr)
    end)
  end)

  describe("in the examples", function()
    it("echo_server.lua stops accepting and says goodbye to its clients", function()
      local p = proc.coil({ "examples/echo_server.lua", "0" })
      assert.is_true(p:wait_for("port %d+ "))
      local port = tonumber(p.stdout:match("port (%d+) "))
      local c <close> = assert(net.connect("127.0.0.1", port))
      assert.matches("^welcome, 127%.0%.0%.1:%d+$", c:read_line())
      c:write("echo me\n")
      assert.equal("echo me", c:read_line())
      p:kill("sigint")
      assert.equal("server shutting down, goodbye", c:read_line())
      assert.is_nil(c:read_line())
      local r = p:wait()
      assert.equal(SIGINT, r.signal, r.stderr)
      assert.matches("shutting down: no new connections, saying goodbye to 1 client", r.stdout)
      assert.matches("127%.0%.0%.1:%d+ gone", r.stdout)
    end)

    it("run_jobs.lua keeps to its limit and kills its children on Ctrl+C", function()
      local p = proc.coil({ "examples/run_jobs.lua", "-j", "2",
                            "exec sleep 100", "echo hi; exec sleep 100", "echo never" })
      assert.is_true(p:wait_for("%[2%] hi"))
      local pids = {}
      for pid in p.stdout:gmatch("started %(pid (%d+)%)") do pids[#pids + 1] = tonumber(pid) end
      assert.equal(2, #pids) -- the third waits for a free worker
      p:kill("sigint")
      local r = p:wait()
      assert.equal(SIGINT, r.signal, r.stderr)
      assert.matches("%[1%] interrupted", r.stdout)
      assert.matches("%[2%] interrupted", r.stdout)
      assert.not_matches("never", r.stdout)
      for _, pid in ipairs(pids) do
        assert.is_true(wait_until(function() return not proc.alive(pid) end, 2))
      end
    end)

    it("run_jobs.lua reports each job and fails if one did", function()
      local r = proc.run({ "examples/run_jobs.lua", "-j", "3", "echo a", "exit 4", "echo c" })
      assert.equal(1, r.code, r.stderr)
      assert.matches("%[1%] a\n", r.stdout)
      assert.matches("%[2%] exited 4", r.stdout)
      assert.matches("3 job%(s%), 1 failed", r.stdout)
    end)
  end)
end)
