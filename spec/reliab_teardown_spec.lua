-- Signals are watched until the process ends (issue 11, item 5): an
-- interrupt that arrives while a __gc runs at lua_close (step 7) still ends
-- the process by that signal, and SIGUSR1 then does not kill it.
local proc = require "spec.support.proc"

local function during_slow_gc(sig)
  local p = proc.coil({ "spec/fixtures/reliab_slow_gc.lua" })
  assert.is_true(p:wait_for("in gc", 20))
  p:kill(sig)
  return p:wait(20)
end

describe("a signal during a slow __gc at teardown", function()
  it("SIGINT: the finaliser finishes, then the process dies by SIGINT", function()
    local r = during_slow_gc("sigint")
    assert.is_false(r.timed_out)
    assert.equal("ready\nin gc\ngc done\n", r.stdout)
    assert.equal(2, r.signal)
  end)

  it("SIGTERM: dies by SIGTERM", function()
    local r = during_slow_gc("sigterm")
    assert.equal("ready\nin gc\ngc done\n", r.stdout)
    assert.equal(15, r.signal)
  end)

  it("SIGUSR1 does not kill it", function()
    local r = during_slow_gc("sigusr1")
    assert.equal("ready\nin gc\ngc done\n", r.stdout)
    assert.equal(0, r.signal)
    assert.equal(0, r.code)
    assert.equal("", r.stderr)
  end)
end)
