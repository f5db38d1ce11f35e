-- The I/O examples, run as a user would.
local coil = require "coil"
local proc = require "spec.support.proc"
local net = coil.net

describe("examples", function()
  it("chat.lua broadcasts lines and says goodbye on SIGTERM", function()
    local p = proc.coil({ "examples/chat.lua", "0" })
    assert.is_true(p:wait_for("chat on port %d+"))
    local port = tonumber(p.stdout:match("chat on port (%d+)"))
    local a <close> = assert(net.connect("127.0.0.1", port))
    assert.matches("^welcome ", a:read_line())
    local b <close> = assert(net.connect("127.0.0.1", port))
    assert.matches("^welcome ", b:read_line())
    assert.matches(" joined$", a:read_line())
    a:write("hello all\n")
    assert.matches(": hello all$", b:read_line())
    p:kill("sigterm")
    assert.equal("server shutting down, goodbye", a:read_line())
    assert.equal("server shutting down, goodbye", b:read_line())
    local r = p:wait()
    assert.equal(15, r.signal, r.stderr)
    assert.matches("saying goodbye to 2 client", r.stdout)
  end)

  it("workers.lua runs its jobs with timeouts and leaves no process behind", function()
    local r = proc.run({ "examples/workers.lua" }, { limit = 30 })
    assert.equal(0, r.code, r.stderr)
    assert.matches("quick    exit 0  out: hello", r.stdout)
    assert.matches("count    exit 0  out: 1 2 3", r.stdout)
    assert.matches("slow     timed out after 0.5 s: killed with its children", r.stdout)
    assert.matches("fails    exit 3  out:  err: oops", r.stdout)
    assert.matches("pipeline exit 0  out: 1000", r.stdout)
    assert.matches("all jobs done\n$", r.stdout)
    -- no sleep of the slow job survived: it would be an orphan (its shell
    -- gone), so a "sleep 300" of somebody else's, with a parent, is not ours
    local ps = io.popen("ps -eo stat=,ppid=,args=")
    local list = ps:read("a")
    ps:close()
    assert.matches("ps %-eo", list, "ps listed nothing (is procps installed?)")
    for line in list:gmatch("[^\n]+") do
      assert.is_falsy(line:match("^%s*[^Z]%S*%s+1%s+sleep 30[01]$"), "left behind: " .. line)
    end
  end)

  it("stdin_filter.lua numbers a pipe's lines while its ticker runs", function()
    local p = proc.start("sh", { "-c", [[(echo one; sleep 0.3; echo two) | exec "$0" examples/stdin_filter.lua]],
                                 COIL_BIN })
    local r = p:wait()
    assert.equal(0, r.code, r.stderr)
    assert.equal("   1  ONE\n   2  TWO\n", r.stdout)
    local ticks = tonumber(r.stderr:match("ticked (%d+) time"))
    assert.is_true(ticks >= 2, r.stderr)
  end)
end)
