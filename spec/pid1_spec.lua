-- coil as PID 1 of a PID namespace (a container's init): the kernel ignores
-- a default-action signal there, so the third interrupt's death by signal
-- must fall back to _exit(128 + n) (SPEC §3, the way out of stuck cleanup).
local proc = require "spec.support.proc"
local coil = require "coil"

-- The PID of the only child of pid (unshare -f forks coil), or nil.
local function child_of(pid)
  local f = io.open(("/proc/%d/task/%d/children"):format(pid, pid))
  if not f then return nil end
  local s = f:read "a"
  f:close()
  return tonumber(s:match "%d+")
end

describe("coil as PID 1", function()
  it("ends on the third SIGINT even though PID 1 ignores default actions", function()
    local probe = proc.start("unshare", { "-fp", "--mount-proc", "true" }):wait(10)
    if probe.code ~= 0 then
      print("skipped: unshare -fp is refused here (" .. probe.stderr:gsub("\n", " ") .. ")")
      return
    end
    local p = proc.start("unshare", { "-fp", "--mount-proc", COIL_BIN,
                                      "spec/fixtures/pid1_stuck_cleanup.lua" })
    assert.is_true(p:wait_for("ready\n"), "no ready line: " .. p.stderr)
    local pid = child_of(p.pid)
    assert.is_not_nil(pid, "no child of unshare")
    for i = 1, 3 do
      if i > 1 then coil.sleep(0.2) end
      assert(require("luv").kill(pid, "sigint"))
    end
    p.signalled_at = require("luv").hrtime()
    local r = p:wait(20)
    assert.is_false(r.timed_out, "coil as PID 1 did not end: " .. r.stderr)
    -- unshare passes on the child's status: _exit(128 + SIGINT)
    assert.equal(130, r.code, r.stderr)
    assert.matches("SIGINT received", r.stderr)
  end)
end)
