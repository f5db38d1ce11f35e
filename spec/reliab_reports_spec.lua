-- No false reports (issue 11, item 8, the C side): os.exit in a deferred
-- function or an on_error handler, and the usage line on a terminal.
local proc = require "spec.support.proc"

describe("os.exit where the run is ending anyway", function()
  it("in a coil.defer of the main task: no 'swallowed its cancellation'", function()
    local r = proc.run({ "-e", [[
      local coil = require "coil"
      coil.defer(function() os.exit(5) end)]] })
    assert.equal(5, r.code)
    assert.equal("", r.stderr)
  end)

  it("a real swallowed cancellation is still told", function()
    local r = proc.run({ "-e", [[
      local coil = require "coil"
      local t = coil.spawn(function() pcall(coil.sleep, 10) end)
      coil.sleep(0.01)
      t:cancel()
      coil.wait({ t })]] })
    assert.matches("coil: task 'task%-%d+' swallowed its cancellation", r.stderr)
  end)

  it("in an on_error handler: a request, not an error in the handler", function()
    for _, code in ipairs({
      [[local coil = require "coil"
        coil.on_error(function() os.exit(4) end)
        coil.spawn(function() error("x") end)
        coil.sleep(0.05)]],
      [[local coil = require "coil"
        coil.on_error(function() os.exit(4) end)
        local t = coil.spawn(function() error("x") end)
        t = nil]],
    }) do
      local r = proc.run({ "-e", code })
      assert.equal(4, r.code)
      assert.equal("", r.stderr)
    end
  end)
end)

describe("coil with no arguments on a terminal", function()
  it("says so on a line that starts with 'coil: '", function()
    local r = proc.start("python3", { "spec/support/pty_run.py", "--keys", "",
                                      "--timeout", "10", "--", COIL_BIN }):wait()
    -- the console may come (SPEC §8); until then, the usage message
    local first = r.stdout:match("^[^\n]*")
    assert.matches("^coil", first)
    assert.not_matches("^usage", first)
  end)
end)
