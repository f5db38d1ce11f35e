-- Signal dispositions coil hands on (SPEC §3, last paragraph; issue 11).
local proc = require "spec.support.proc"

describe("children of coil", function()
  it("start with SIGPIPE at its default: `yes | head -1` ends quietly", function()
    local r = proc.run({ "-e", 'print(io.popen("yes | head -1"):read("a"))' })
    assert.equal("y\n\n", r.stdout)
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
  end)

  -- SigIgn in /proc/self/status: a hex mask, bit n-1 for signal n
  local function ignores(mask, signo)
    return (tonumber(mask, 16) >> (signo - 1)) & 1 == 1
  end
  local SHOW_CHILD = [[
    local process = require("coil").process
    local r = process.run("sh", { "-c", "grep SigIgn /proc/self/status" })
    io.write(r.stdout)
    print(process.spawn("no-such-command-here", {}))
    local plain = os.tmpname()
    print(process.spawn(plain, {}))
    os.remove(plain)
    print(process.run("sh", { "-c", "echo $0 $1 \"$2\"", "zero", "one", "two words" }).stdout)]]

  it("coil.process: a signal ignored when coil started (nohup) stays ignored", function()
    local r = proc.start("sh", { "-c", "trap '' HUP QUIT; exec " .. COIL_BIN .. " -e '" ..
      SHOW_CHILD .. "'" }):wait()
    assert.equal("", r.stderr)
    local mask = r.stdout:match "SigIgn:%s*(%x+)"
    assert.is_true(ignores(mask, 1), r.stdout)
    assert.is_true(ignores(mask, 3), r.stdout)
    assert.is_false(ignores(mask, 15), r.stdout)
    -- the command is found, or not, as without nohup; arguments pass intact
    assert.matches("\nnil\tENOENT: no such file or directory\n" ..
                   "nil\tEACCES: permission denied\nzero one two words\n", r.stdout)
  end)

  it("coil.process: children start with every signal at its default otherwise", function()
    local r = proc.run({ "-e", SHOW_CHILD })
    local mask = r.stdout:match "SigIgn:%s*(%x+)"
    assert.is_false(ignores(mask, 1), r.stdout)
    assert.is_false(ignores(mask, 13), r.stdout)
    assert.matches("\nnil\tENOENT: no such file or directory\n" ..
                   "nil\tEACCES: permission denied\nzero one two words\n", r.stdout)
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
