-- The third interrupt ends the process even as PID 1 (issue 11, item 4):
-- in a new PID namespace a default action does not kill init, so dying by
-- the signal must fall back to _exit(128 + n), after flushing stdout.
local proc = require "spec.support.proc"

local function unshare_works()
  local ok = os.execute("unshare -fp --mount-proc true >/dev/null 2>&1")
  return ok == true
end

--- The pid of the only child of pid (coil, under unshare --fork).
local function child_of(pid)
  local f = io.open(("/proc/%d/task/%d/children"):format(pid, pid))
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("%d+"))
end

describe("the third interrupt as PID 1", function()
  if not unshare_works() then
    print("reliab_pid1_spec: skipped: `unshare -fp --mount-proc` is refused here")
    pending("unshare -fp is refused on this machine")
    return
  end

  it("ends a process whose cleanup is stuck, with 130 and stdout flushed", function()
    local p = proc.start("unshare", { "-fp", "--mount-proc", COIL_BIN,
                                      "spec/fixtures/reliab_stuck_cleanup.lua" })
    assert.is_true(p:wait_for("ready", 20))
    local pid = child_of(p.pid)
    assert.is_number(pid)
    for _ = 1, 3 do
      assert(require("luv").kill(pid, "sigint"))
      require("coil").sleep(0.3)
    end
    local r = p:wait(20)
    -- killing unshare leaves its child running: never leave it behind
    if proc.alive(pid) then require("luv").kill(pid, "sigkill") end
    assert.is_false(r.timed_out)
    assert.equal(130, r.code)
    assert.matches("unflushed", r.stdout)
  end)
end)
