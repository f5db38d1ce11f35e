-- The examples in examples/ run and do what their comments say.
local proc = require "spec.support.proc"

describe("examples", function()
  it("hello.lua greets three times", function()
    local r = proc.run({ "examples/hello.lua" })
    assert.equal(0, r.code)
    assert.matches("^hello from cy.*hello from bob.*hello from ann", r.stdout)
  end)

  it("shleepy.lua cleans up both sleepers on Ctrl+C and dies by SIGINT", function()
    local p = proc.coil({ "examples/shleepy.lua" })
    assert.is_true(p:wait_for "second: sleeping")
    p:kill "sigint"
    local r = p:wait()
    assert.equal(2, r.signal)
    assert.matches("first: cleaned up", r.stdout)
    assert.matches("second: cleaned up", r.stdout)
  end)

  it("service.lua shuts down in order on SIGTERM, the session last", function()
    local p = proc.coil({ "examples/service.lua" })
    assert.is_true(p:wait_for "processed msg%-2")
    p:kill "sigterm"
    local r = p:wait()
    assert.equal(15, r.signal)
    assert.matches("scheduler: stopped", r.stdout)
    assert.matches("processor: done", r.stdout)
    assert.matches("session closed\n$", r.stdout)
    assert.not_matches("failed", r.stderr)
  end)
end)
