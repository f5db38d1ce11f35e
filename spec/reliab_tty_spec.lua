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

describe("a shell loop running coil in a real terminal", function()
  it("stops on one Ctrl+C, 50 tries in a row", function()
    -- the Ctrl+C lands at a random moment of coil's run or its teardown
    -- (a __gc at lua_close). Not later: once a process is inside exit(2) no
    -- program sees a signal, and bash takes the status 0 as "handled" --
    -- `lua5.4 -e 'print(1)'` in such a loop misses it often.
    local cmd = ("while true; do %s spec/fixtures/reliab_short.lua; done"):format(COIL_BIN)
    local _, results = pty_run({ "--tries", "50", "--wait-for", "tick",
      "--delay-range", "0,0.1", "--seed", tostring(os.time()),
      "--timeout", "15", "--", "bash", "-c", cmd }, 600)
    assert.equal(50, #results)
    local stopped = 0
    for _, r in ipairs(results) do
      if r == "signal 2" then stopped = stopped + 1 end
    end
    assert.equal(50, stopped, table.concat(results, ", "))
  end)
end)
