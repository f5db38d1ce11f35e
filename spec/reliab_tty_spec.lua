-- Ctrl+C typed at a real pseudo-terminal (spec/support/pty_run.py): the
-- line discipline sends SIGINT to the whole foreground process group, as in
-- a shell (issue 11, items 3 and 5).
local proc = require "spec.support.proc"

local PTY = "spec/support/pty_run.py"

--- Runs pty_run.py with args; returns its output and the list of results.
local function pty_run(args, limit)
  local r = proc.start("python3", { PTY, table.unpack(args) }):wait(limit or 60)
  assert(r.code == 0, "pty_run.py failed: " .. r.stderr)
  local results = {}
  for line in r.stdout:gmatch("try %d+: ([^\n]+)") do results[#results + 1] = line end
  return r.stdout, results
end

describe("one Ctrl+C on a terminal", function()
  it("interrupts a script blocked in io.read(): Cancelled, cleanup, death by SIGINT", function()
    local out, results = pty_run({ "--wait-for", "ready", "--delay", "0.2",
      "--timeout", "15", "--", COIL_BIN, "spec/fixtures/reliab_read_tty.lua" })
    assert.same({ "signal 2" }, results)
    assert.matches("coil: SIGINT received, cancelling 1 task%(s%)", out)
    assert.matches("cleanup ran", out)
    assert.not_matches("io.read returned", out)
  end)
end)
