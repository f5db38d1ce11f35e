-- Signal dispositions coil hands on (SPEC §3, last paragraph; issue 11).
local proc = require "spec.support.proc"

describe("children of coil", function()
  it("start with SIGPIPE at its default: `yes | head -1` ends quietly", function()
    local r = proc.run({ "-e", 'print(io.popen("yes | head -1"):read("a"))' })
    assert.equal("y\n\n", r.stdout)
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
  end)

  it("os.execute likewise", function()
    local r = proc.run({ "-e", 'print(os.execute("yes | head -1 >/dev/null"))' })
    assert.equal("true\texit\t0\n", r.stdout)
    assert.equal("", r.stderr)
  end)
end)

describe("coil itself", function()
  it("still gets EPIPE, not death, writing to a pipe whose reader is gone", function()
    local r = proc.run({ "-e", [[
      local p = io.popen("true", "w")
      require("coil").sleep(0.2)
      local ok, err = p:write(string.rep("x", 1 << 20))
      if ok then ok, err = p:flush() end
      print(ok, err)]] })
    assert.equal("nil\tBroken pipe\n", r.stdout)
    assert.equal(0, r.code)
    assert.equal(0, r.signal)
  end)

  it("leaves SIGPIPE ignored for its children when it was started so", function()
    local r = proc.start("sh", { "-c", "trap '' PIPE; exec " .. COIL_BIN ..
      [[ -e 'print(io.popen("yes | head -1 >/dev/null; echo done"):read("a"))']] }):wait()
    assert.equal("done\n\n", r.stdout)
    assert.matches("Broken pipe", r.stderr)
  end)
end)
