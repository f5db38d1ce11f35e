-- Socket activation (SPEC §9): systemd-socket-activate (from Debian's
-- systemd package) listens, passes the socket to a real coil process on
-- the first connection, and coil serves it with coil.net.listen_fd.
local coil = require "coil"
local util = require "spec.support.util"
local free_port, ask = util.free_port, util.ask
local uv = require "luv"
local proc = require "spec.support.proc"

local FIXTURE = "spec/fixtures/service_activated.lua"

local function env_without_listen(extra)
  local list = {}
  for name, value in pairs(uv.os_environ()) do
    if not name:match "^LISTEN_" and name ~= "NOTIFY_SOCKET" then
      list[#list + 1] = name .. "=" .. value
    end
  end
  for _, v in ipairs(extra or {}) do list[#list + 1] = v end
  return list
end

describe("socket activation", function()
  it("serves the socket systemd-socket-activate passes, by its name", function()
    if not uv.fs_stat("/usr/bin/systemd-socket-activate") then
      print("skipped: no systemd-socket-activate (Debian's systemd package)")
      return
    end
    local port = free_port()
    local p = proc.start("/usr/bin/systemd-socket-activate",
                         { "-l", "127.0.0.1:" .. port, "--fdname=web", COIL_BIN, FIXTURE },
                         { env = env_without_listen() })
    finally(function()
      if p.code == nil then
        p:kill "sigkill"
        p:wait(5)
      end
    end)
    local deadline = coil.now() + 10
    while not p.stderr:find "Listening on" and coil.now() < deadline do coil.sleep(0.02) end
    assert.matches("Listening on", p.stderr)
    -- the first connection starts coil (exec'd in place: same pid)
    assert.equal("web says hello", ask(port, "hello"))
    assert.is_true(p:wait_for "ready\n", p.stderr)
    assert.equal("web says again", ask(port, "again"))
    p:kill "sigterm"
    local r = p:wait()
    assert.equal(15, r.signal)
    assert.equal("fds 3 names web\nenv nil nil\nchild sees nothing\nready\n", r.stdout)
  end)

  it("ignores descriptors meant for another process and clears the variables", function()
    local r = proc.run({ "-e", [[
      local coil = require "coil"
      local fds, names = coil.service.listen_fds()
      print(#fds, #names, os.getenv "LISTEN_FDS", os.getenv "LISTEN_PID",
            os.getenv "LISTEN_FDNAMES")]] },
      { env = env_without_listen { "LISTEN_FDS=1", "LISTEN_PID=1", "LISTEN_FDNAMES=web" } })
    assert.equal(0, r.code, r.stderr)
    assert.equal("0\t0\tnil\tnil\tnil\n", r.stdout)
  end)

  it("names a descriptor 'unknown' when LISTEN_FDNAMES says nothing of it", function()
    -- sh sets LISTEN_PID to its own pid and execs coil, as systemd does;
    -- fd 3 and 4 are copies of stdin and stdout there
    local r = proc.start("sh", { "-c", [[
      export LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=first
      exec "$0" -e '
        local coil = require "coil"
        local fds, names = coil.service.listen_fds()
        print(table.concat(fds, ","), table.concat(names, ","))' 3<&0 4>&1]], COIL_BIN },
      { env = env_without_listen() }):wait()
    assert.equal(0, r.code, r.stderr)
    assert.equal("3,4\tfirst,unknown\n", r.stdout)
  end)
end)
