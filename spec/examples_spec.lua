-- The examples in examples/ run and do what their comments say.
local proc = require "spec.support.proc"

describe("examples", function()
  it("generator.lua awaits inside generators used in for loops", function()
    local r = proc.run({ "examples/generator.lua" })
    assert.equal(0, r.code)
    assert.equal("countdown 3\ncountdown 2\ncountdown 1\nline: alpha\n" ..
                 "line: beta\nline: gamma\ndone\n", r.stdout)
  end)

  it("luv_plain.lua echoes, then stops cleanly on Ctrl+C", function()
    local coil = require "coil"
    local p = proc.coil({ "examples/luv_plain.lua", "0" })
    assert.is_true(p:wait_for "listening on")
    local port = tonumber(p.stdout:match "listening on 127%.0%.0%.1:(%d+)")
    local c <close> = assert(coil.net.connect("127.0.0.1", port))
    c:write("echo me\n")
    assert.equal("echo me", c:read_line())
    p:kill "sigint"
    local r = p:wait()
    assert.equal(2, r.signal)
    assert.equal("", r.stderr:gsub("coil: SIGINT received[^\n]*\n", ""))
  end)

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
