-- docs/deploy.md, tested as far as this machine allows: its units pass
-- `systemd-analyze verify`, its scripts run as written under
-- systemd-socket-activate, a stand-in notify socket, --workers, and as
-- PID 1 of a PID namespace; the pod spec's numbers fit --grace.
local coil = require "coil"
local util = require "spec.support.util"
local free_port, ask = util.free_port, util.ask
local uv = require "luv"
local proc = require "spec.support.proc"

local SINK = "spec/support/notify_sink.py"

-- The files of docs/deploy.md: each fenced block after <!-- file: NAME -->.
local files = {}
do
  local f = assert(io.open "docs/deploy.md")
  local text = f:read "a"
  f:close()
  for name, body in text:gmatch "<!%-%- file: ([%w%.]+) %-%->\n```%w*\n(.-)```" do
    files[name] = body
  end
end

local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(uv.fs_mkdir(dir, 448))
  return dir
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function rmtree(dir)
  for name in uv.fs_scandir_next, uv.fs_scandir(dir) do os.remove(dir .. "/" .. name) end
  uv.fs_rmdir(dir)
end

local function environment(extra)
  local list = {}
  for name, value in pairs(uv.os_environ()) do
    if not name:match "^LISTEN_" and not name:match "^WATCHDOG_" and name ~= "NOTIFY_SOCKET" then
      list[#list + 1] = name .. "=" .. value
    end
  end
  for _, v in ipairs(extra or {}) do list[#list + 1] = v end
  return list
end

local function stop(p)
  if p.code == nil then
    p:kill "sigkill"
  end
  p:wait(5) -- also until its pipes are closed
end

local function count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

local function absolute(path)
  return path:sub(1, 1) == "/" and path or (uv.cwd() .. "/" .. path)
end

describe("docs/deploy.md", function()
  it("has every file the page promises", function()
    for _, name in ipairs { "echo.lua", "echo.service", "echo.socket", "pod.yaml", "pod.lua" } do
      assert.is_string(files[name], name)
    end
  end)

  it("gives systemd units that verify, with TimeoutStopSec above --grace", function()
    local unit = files["echo.service"]
    assert.matches("\nType=notify\n", unit)
    assert.matches("\nWatchdogSec=%d+\n", unit)
    local grace = tonumber(unit:match "%-%-grace (%d+)")
    local stop_after = tonumber(unit:match "\nTimeoutStopSec=(%d+)\n")
    assert.is_true(stop_after > 2 * grace, "TimeoutStopSec must outlast the grace")
    if not uv.fs_stat("/usr/bin/systemd-analyze") then
      print("skipped: no systemd-analyze")
      return
    end
    local dir = tmpdir()
    finally(function() rmtree(dir) end)
    write(dir .. "/echo.lua", files["echo.lua"])
    write(dir .. "/echo.service", (unit:gsub("/usr/local/bin/coil", absolute(COIL_BIN))
                                       :gsub("/srv/echo/echo.lua", dir .. "/echo.lua")))
    write(dir .. "/echo.socket", files["echo.socket"])
    local r = proc.start("/usr/bin/systemd-analyze",
                         { "verify", dir .. "/echo.socket", dir .. "/echo.service" }):wait(30)
    assert.equal(0, r.code, r.stdout .. r.stderr)
  end)

  it("runs echo.lua as the socket-activated Type=notify service", function()
    if not uv.fs_stat("/usr/bin/systemd-socket-activate") then
      print("skipped: no systemd-socket-activate")
      return
    end
    local dir = tmpdir()
    finally(function() rmtree(dir) end)
    write(dir .. "/echo.lua", files["echo.lua"])
    local address = ("@coil-spec-deploy-%d"):format(uv.os_getpid())
    local s = proc.start("python3", { SINK, address })
    finally(function() stop(s) end)
    assert.is_true(s:wait_for "bound ", s.stderr)
    local port = free_port()
    local p = proc.start("/usr/bin/systemd-socket-activate",
      -- it hands the program only the variables given with -E
      { "-l", "127.0.0.1:" .. port, "--fdname=echo", "-E", "NOTIFY_SOCKET=" .. address,
        "-E", "WATCHDOG_USEC=200000", COIL_BIN, dir .. "/echo.lua" },
      { env = environment() })
    finally(function() stop(p) end)
    local deadline = coil.now() + 10
    while not p.stderr:find "Listening on" and coil.now() < deadline do coil.sleep(0.02) end
    assert.equal("hello", ask(port, "hello"))
    assert.is_true(p:wait_for "ready\n", p.stderr)
    assert.is_true(s:wait_for "WATCHDOG=1", s.stdout)
    p:kill "sigterm"
    local r = p:wait()
    assert.equal(15, r.signal)
    assert.is_true(s:wait_for "STOPPING=1", s.stdout)
    local pid = p.pid -- exec'd in place
    assert.matches("msg " .. pid .. " STATUS=serving, worker %-\n", s.stdout)
    assert.matches("msg " .. pid .. " READY=1\n", s.stdout)
    stop(s)
  end)

  it("runs echo.lua under --workers 2 on one port", function()
    local dir = tmpdir()
    finally(function() rmtree(dir) end)
    write(dir .. "/echo.lua", files["echo.lua"])
    local port = free_port()
    local p = proc.coil({ "--workers", "2", dir .. "/echo.lua" },
                        { env = environment { "PORT=" .. port } })
    finally(function() stop(p) end)
    local deadline = coil.now() + 15
    while count(p.stdout, "ready\n") < 2 and coil.now() < deadline do coil.sleep(0.02) end
    assert.equal(2, count(p.stdout, "ready\n"), p.stderr)
    for i = 1, 20 do assert.equal("line " .. i, ask(port, "line " .. i)) end
    p:kill "sigterm"
    local r = p:wait()
    assert.equal(15, r.signal)
  end)

  it("gives a pod whose grace period outlasts --grace, probing what pod.lua writes", function()
    local pod = files["pod.yaml"]
    local period = tonumber(pod:match "terminationGracePeriodSeconds: (%d+)")
    local grace = tonumber(pod:match '"%-%-grace", "(%d+)"')
    assert.is_true(period > 2 * grace)
    assert.matches('"%-%-workers"', pod)
    assert.matches('readinessProbe:%s+exec:%s+command: %["test", "%-f", "/tmp/ready"%]', pod)
    assert.matches('os.getenv "READY_FILE" or "/tmp/ready"', files["pod.lua"])
  end)

  it("runs pod.lua as PID 1: not ready once stopping, cleanup done, status 143", function()
    local probe = proc.start("unshare", { "-fp", "--mount-proc", "true" }):wait()
    if probe.code ~= 0 then
      print("skipped: unshare -fp refused here: " .. probe.stderr)
      return
    end
    local dir = tmpdir()
    finally(function() rmtree(dir) end)
    write(dir .. "/pod.lua", files["pod.lua"])
    local ready_file = dir .. "/ready"
    local port = free_port()
    local p = proc.start("unshare", { "-fp", "--mount-proc", COIL_BIN, "--grace", "5",
                                      "--workers", "2", dir .. "/pod.lua" },
      { env = environment { "PORT=" .. port, "READY_FILE=" .. ready_file, "LINGER=0.5" } })
    finally(function() stop(p) end)
    local deadline = coil.now() + 15
    while count(p.stdout, "ready\n") < 2 and coil.now() < deadline do coil.sleep(0.02) end
    assert.equal(2, count(p.stdout, "ready\n"), p.stderr)
    assert.is_truthy(uv.fs_stat(ready_file))
    assert.equal("ping", ask(port, "ping"))
    local f = assert(io.open(("/proc/%d/task/%d/children"):format(p.pid, p.pid)))
    local pid1 = tonumber(f:read("a"):match "%d+")
    f:close()
    p.signalled_at = uv.hrtime()
    uv.kill(pid1, "sigterm")
    -- the probe fails at once, while the hook still lingers
    deadline = coil.now() + 5
    while uv.fs_stat(ready_file) and coil.now() < deadline do coil.sleep(0.01) end
    assert.is_nil(uv.fs_stat(ready_file))
    local r = p:wait()
    assert.is_true(r.code == 143 or r.signal == 15, ("code %s signal %s: %s")
                   :format(r.code, r.signal, r.stderr))
    assert.matches("coil: SIGTERM received, stopping 2 worker%(s%)", r.stderr)
    assert.is_true(r.after_signal >= 0.5, "the hook did not linger")
  end)
end)
