-- The shutdown paths under valgrind: zero definite leaks and no memory
-- errors, for a signal, a self-requested shutdown, os.exit, an uncaught
-- error and a deadlock. (Skipped in the sanitizer build, which checks the
-- same paths with ASan instead: the two do not run together.)
local proc = require "spec.support.proc"

local VALGRIND = "/usr/bin/valgrind"

local function valgrind(args, sig)
  local cmd = { "--leak-check=full", "--errors-for-leak-kinds=definite",
                "--show-leak-kinds=definite", "--track-origins=no", COIL_BIN }
  for _, a in ipairs(args) do cmd[#cmd + 1] = a end
  local p = proc.start(VALGRIND, cmd)
  if sig then
    assert.is_true(p:wait_for("ready\n", 60), p.stderr)
    p:kill(sig)
  end
  local r = p:wait(120)
  assert.is_false(r.timed_out, r.stderr)
  return r
end

local function assert_clean(r)
  local definite = r.stderr:match "definitely lost: ([%d,]+) bytes"
  assert.is_true(definite == nil or definite == "0", r.stderr)
  assert.matches("ERROR SUMMARY: 0 errors", r.stderr)
end

local skip = os.getenv("COIL_SANITIZED") and pending or it

describe("shutdown under valgrind", function()
  skip("SIGINT with a timer and a listener left open", function()
    local r = valgrind({ "spec/fixtures/sd_leftovers.lua" }, "sigint")
    assert.equal(2, r.signal)
    assert_clean(r)
  end)

  skip("coil.shutdown with handles left open", function()
    local r = valgrind({ "spec/fixtures/sd_leftovers.lua", "self" })
    assert.equal(0, r.code)
    assert_clean(r)
  end)

  skip("SIGTERM with cleanup of every kind", function()
    local r = valgrind({ "spec/fixtures/sd_three_kinds.lua" }, "sigterm")
    assert.equal(15, r.signal)
    assert_clean(r)
  end)

  skip("os.exit, an uncaught error, a deadlock", function()
    for _, case in ipairs {
      { "spec/fixtures/cli_os_exit.lua", 4 },
      { "spec/fixtures/cli_error.lua", 1 },
      { "spec/fixtures/cli_deadlock.lua", 1 },
    } do
      local r = valgrind({ case[1] })
      assert.equal(case[2], r.code, case[1])
      assert_clean(r)
    end
  end)
end)
