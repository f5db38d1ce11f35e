-- coil --workers N (SPEC §9): a real supervisor and real worker processes,
-- real signals, real connections on 127.0.0.1.
local coil = require "coil"
local util = require "spec.support.util"
local free_port, ask = util.free_port, util.ask
local uv = require "luv"
local proc = require "spec.support.proc"

local FIXTURE = "spec/fixtures/workers_echo.lua"
local SINK = "spec/support/notify_sink.py"

local function count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

-- Waits until stdout holds n lines matching pattern.
local function wait_lines(p, pattern, n, limit)
  local deadline = coil.now() + (limit or 15)
  while count(p.stdout, pattern) < n and coil.now() < deadline and p.code == nil do
    coil.sleep(0.02)
  end
  return count(p.stdout, pattern) >= n
end

-- The pids of the workers that said they were up.
local function worker_pids(p)
  local pids = {}
  for pid in p.stdout:gmatch "worker %d+ up (%d+)" do pids[#pids + 1] = tonumber(pid) end
  return pids
end

local function assert_gone(pids)
  for _, pid in ipairs(pids) do
    assert.is_false(proc.alive(pid), "worker " .. pid .. " was left behind")
  end
end

-- Starts a supervisor; should the test fail half-way, it and its workers
-- are killed when the test ends, so nothing outlives it.
local function start(args, opts)
  local p = proc.coil(args, opts)
  finally(function()
    if p.code ~= nil then return end
    for pid in p.stdout:gmatch "worker %d+ up (%d+)" do uv.kill(tonumber(pid), "sigkill") end
    p:kill "sigkill"
    p:wait(5)
  end)
  return p
end

-- A port free right now.

-- One request on a connection of its own: the answer, or nil, err.

describe("coil --workers", function()
  it("refuses bad values with one line and status 1", function()
    for _, case in ipairs {
      { { "--workers", "x", FIXTURE }, "got 'x'" },
      { { "--workers", "-1", FIXTURE }, "got '%-1'" },
      { { "--workers", "1.5", FIXTURE }, "got '1.5'" },
      { { "--workers", "5000", FIXTURE }, "got '5000'" },
      { { "--workers" }, "'%-%-workers' needs a number" },
      { { "--workers", "2" }, "needs a script file" },
      { { "--workers", "2", "spec/fixtures/no_such_file.lua" }, "cannot open" },
    } do
      local r = proc.run(case[1])
      assert.equal(1, r.code, r.stderr)
      assert.matches("^coil: [^\n]*" .. case[2] .. "[^\n]*\n$", r.stderr)
      assert.equal("", r.stdout)
    end
  end)

  it("runs N workers with COIL_WORKER; SIGTERM drains each, then the supervisor dies by it",
     function()
    local p = start({ "--workers", "2", FIXTURE, "0" })
    assert.is_true(wait_lines(p, "worker %d up", 2), p.stdout .. p.stderr)
    assert.matches("worker 1 up", p.stdout)
    assert.matches("worker 2 up", p.stdout)
    local pids = worker_pids(p)
    p:kill "sigterm"
    local r = p:wait()
    assert.equal(15, r.signal)
    assert.matches("worker 1 cleanup", r.stdout)
    assert.matches("worker 2 cleanup", r.stdout)
    assert.matches("^coil: SIGTERM received, stopping 2 worker%(s%)\n", r.stderr)
    -- (two workers share stderr: their lines may interleave mid-line)
    assert.equal(2, count(r.stderr, "SIGTERM received, cancelling 1 task%(s%)"), r.stderr)
    assert_gone(pids)
  end)

  it("forwards a second Ctrl+C, which forces the workers' cleanup", function()
    local env = {}
    for name, value in pairs(uv.os_environ()) do env[#env + 1] = name .. "=" .. value end
    env[#env + 1] = "STUBBORN=1"
    local p = start({ "--grace", "60", "--workers", "2", FIXTURE, "0" }, { env = env })
    assert.is_true(wait_lines(p, "worker %d up", 2), p.stdout .. p.stderr)
    local pids = worker_pids(p)
    p:kill "sigint"
    local deadline = coil.now() + 10
    while count(p.stderr, "cancelling 1 task") < 2 and coil.now() < deadline do
      coil.sleep(0.02)
    end
    coil.sleep(0.2)
    assert.is_nil(p.code)
    p:kill "sigint"
    local r = p:wait()
    assert.equal(2, r.signal)
    assert.equal(2, count(r.stderr, "closed by force"))
    assert.equal(2, count(r.stdout, "worker %d cleanup"))
    assert.is_true(r.after_signal < 10)
    assert_gone(pids)
  end)

  it("starts one worker per core with --workers 0", function()
    local n = uv.available_parallelism()
    if n > 16 then
      print("skipped: " .. n .. " cores would start " .. n .. " workers")
      return
    end
    local p = start({ "--quiet", "--workers", "0", FIXTURE, "0" })
    assert.is_true(wait_lines(p, "worker %d up", n), p.stdout .. p.stderr)
    local pids = worker_pids(p)
    p:kill "sighup"
    local r = p:wait()
    assert.equal(1, r.signal)
    assert.equal(n, count(r.stdout, "worker %d+ cleanup"))
    assert.equal("", r.stderr)
    assert_gone(pids)
  end)

  it("serves one port from both workers (reuseport) and drains both", function()
    local port = free_port()
    local p = start({ "--workers", "2", FIXTURE, tostring(port) })
    assert.is_true(wait_lines(p, "worker %d up", 2), p.stdout .. p.stderr)
    local seen = {}
    for i = 1, 400 do
      local line = assert(ask(port, "hello " .. i))
      local worker, _, text = line:match "^(%d) (%d+) (.*)$"
      assert.equal("hello " .. i, text)
      seen[worker] = true
      if seen["1"] and seen["2"] then break end
    end
    assert.is_true(seen["1"] and seen["2"], "only one worker answered")
    local pids = worker_pids(p)
    p:kill "sigterm"
    local r = p:wait()
    assert.equal(15, r.signal)
    assert.matches("worker 1 cleanup", r.stdout)
    assert.matches("worker 2 cleanup", r.stdout)
    assert_gone(pids)
  end)

  it("restarts a worker that exits on its own, and names its status", function()
    local marker = os.tmpname()
    os.remove(marker)
    local p = start({ "--workers", "2", FIXTURE, "0", marker })
    assert.is_true(wait_lines(p, "worker 2 up", 2), p.stdout .. p.stderr)
    assert.is_true(wait_lines(p, "worker 1 up", 1), p.stdout .. p.stderr)
    local pids = worker_pids(p)
    p:kill "sigint"
    local r = p:wait()
    os.remove(marker)
    assert.equal(2, r.signal)
    assert.matches("coil: worker 2 %(pid %d+%) exited with status 3; starting it again in 0.1 s\n",
                   r.stderr)
    -- the first worker 2 ran its cleanup when it exited; everyone else at the end
    assert.equal(3, count(r.stdout, "worker %d cleanup"))
    assert_gone(pids)
  end)

  -- A connection that lands in a closing listener's accept queue is reset
  -- by the kernel unless net.ipv4.tcp_migrate_req is 1 (Linux 5.14+, see
  -- docs/deploy.md): the client runs in a network namespace of its own with
  -- it set, so the test never touches the machine's settings.
  it("replaces both workers on SIGUSR2 while clients keep asking; no request fails",
     function()
    local r = proc.start("unshare", { "-n", "sh", "-c", [[
      ip link set lo up && echo 1 > /proc/sys/net/ipv4/tcp_migrate_req || exit 77
      exec "$0" spec/fixtures/workers_reload_client.lua "$0"]], COIL_BIN }):wait(60)
    if r.code == 77 or (r.code ~= 0 and r.stdout == "") then
      print("skipped: no network namespace with tcp_migrate_req here: " .. r.stderr)
      return
    end
    assert.equal(0, r.code, r.stderr)
    assert.equal([[
replaced true
failures 0
answered many true
old gone true
new answered true
supervisor signal 15
cleanups 4
all gone true
]], r.stdout)
  end)

  it("keeps the old worker when its replacement fails before it is up", function()
    local marker = os.tmpname()
    os.remove(marker)
    local env = {}
    for name, value in pairs(uv.os_environ()) do env[#env + 1] = name .. "=" .. value end
    env[#env + 1] = "FAIL_IF=" .. marker
    local p = start({ "--workers", "2", FIXTURE, "0" }, { env = env })
    finally(function() os.remove(marker) end)
    assert.is_true(wait_lines(p, "worker %d up", 2), p.stdout .. p.stderr)
    local pids = worker_pids(p)
    io.open(marker, "w"):close()
    p:kill "sigusr2"
    local deadline = coil.now() + 10
    while not p.stderr:find "keeping the old one" and coil.now() < deadline do coil.sleep(0.02) end
    assert.matches("^coil: reload: the new worker 1 %(pid %d+%) exited with status 4 before " ..
                   "it was up; keeping the old one\n$", p.stderr)
    assert.is_true(proc.alive(pids[1]) and proc.alive(pids[2]))
    p:kill "sigterm"
    local r = p:wait()
    assert.equal(15, r.signal)
    assert.equal(2, count(r.stdout, "worker %d cleanup"))
    assert_gone(pids)
  end)

  it("tells its own manager READY=1 once every worker is up, STOPPING=1 on a stop",
     function()
    local address = "@coil-spec-workers-" .. uv.os_getpid()
    local s = proc.start("python3", { SINK, address })
    finally(function()
      if s.code == nil then
        s:kill "sigterm"
        s:wait(5)
      end
    end)
    assert.is_true(s:wait_for "bound ", s.stderr)
    local env = {}
    for name, value in pairs(uv.os_environ()) do env[#env + 1] = name .. "=" .. value end
    env[#env + 1] = "NOTIFY_SOCKET=" .. address
    env[#env + 1] = "WATCHDOG_USEC=200000"
    local p = start({ "--workers", "2", FIXTURE, "0" }, { env = env })
    assert.is_true(s:wait_for("msg " .. p.pid .. " READY=1"), s.stdout .. p.stderr)
    assert.is_true(wait_lines(p, "worker %d up", 2), p.stdout .. p.stderr)
    local pids = worker_pids(p)
    p:kill "sigterm"
    local r = p:wait()
    assert.equal(15, r.signal)
    -- the workers' stop may take twice the grace plus 5 s: the watchdog is told
    assert.is_true(s:wait_for("msg " .. p.pid .. " STOPPING=1|EXTEND_TIMEOUT_USEC=15000000\n"),
                   s.stdout)
    assert.matches("msg " .. p.pid .. " WATCHDOG=1\n", s.stdout)
    assert.matches("msg " .. p.pid .. " STATUS=2 worker%(s%) up\n", s.stdout)
    s:kill "sigterm"
    s:wait()
    -- the workers spoke to the supervisor only
    for _, pid in ipairs(pids) do
      assert.is_nil(s.stdout:find("msg " .. pid .. " ", 1, true))
    end
    assert_gone(pids)
  end)

  it("runs as PID 1 of a PID namespace", function()
    local probe = proc.start("unshare", { "-fp", "--mount-proc", "true" })
    local pr = probe:wait()
    if pr.code ~= 0 then
      print("skipped: unshare -fp refused here: " .. pr.stderr)
      return
    end
    local env = {}
    for name, value in pairs(uv.os_environ()) do env[#env + 1] = name .. "=" .. value end
    env[#env + 1] = "ORPHAN=1" -- each worker leaves a grandchild to PID 1
    local p = proc.start("unshare", { "-fp", "--mount-proc", COIL_BIN, "--workers", "2",
                                      FIXTURE, "0" }, { env = env })
    assert.is_true(wait_lines(p, "worker %d up", 2), p.stdout .. p.stderr)
    -- coil is unshare's child, PID 1 inside
    local f = assert(io.open(("/proc/%d/task/%d/children"):format(p.pid, p.pid)))
    local coil_pid = tonumber(f:read("a"):match "%d+")
    f:close()
    for pid in p.stdout:gmatch "worker %d+ up (%d+)" do
      assert.is_true(tonumber(pid) < 10, "not in a PID namespace: " .. pid)
    end
    -- the orphaned grandchildren ended meanwhile: no zombie is left
    coil.sleep(0.6)
    f = assert(io.open(("/proc/%d/task/%d/children"):format(coil_pid, coil_pid)))
    local children = f:read "a"
    f:close()
    local zombies = {}
    for pid in children:gmatch "%d+" do
      local stat = io.open("/proc/" .. pid .. "/stat")
      local state = stat and stat:read("a"):match "^%d+ %b() (%a)"
      if stat then stat:close() end
      if state == "Z" then zombies[#zombies + 1] = pid end
    end
    assert.same({}, zombies)
    uv.kill(coil_pid, "sigterm")
    local r = p:wait()
    -- PID 1 cannot die by a signal it handles: it exits 128 + 15
    assert.is_true(r.code == 143 or r.signal == 15, ("code %s signal %s: %s")
                   :format(r.code, r.signal, r.stderr))
    assert.matches("worker 1 cleanup", r.stdout)
    assert.matches("worker 2 cleanup", r.stdout)
    assert.matches("coil: SIGTERM received, stopping 2 worker%(s%)", r.stderr)
  end)
end)
