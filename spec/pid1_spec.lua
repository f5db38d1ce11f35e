-- coil as PID 1 of a PID namespace (a container's init): the kernel ignores
-- a default-action signal there, so the third interrupt's death by signal
-- must fall back to _exit(128 + n) (SPEC §3, the way out of stuck cleanup).
local proc = require "spec.support.proc"
local coil = require "coil"
local uv = require "luv"

-- The PID of the only child of pid (unshare -f forks coil), or nil.
local function child_of(pid)
  local f = io.open(("/proc/%d/task/%d/children"):format(pid, pid))
  if not f then return nil end
  local s = f:read "a"
  f:close()
  return tonumber(s:match "%d+")
end

-- Whether a SIGINT waits for delivery to pid: standard signals do not
-- queue, so one sent while another is pending would be lost.
local function sigint_pending(pid)
  local f = io.open(("/proc/%d/status"):format(pid))
  if not f then return false end
  local s = f:read "a"
  f:close()
  for field in s:gmatch "[SP][hi][dg]Pnd:%s*(%x+)" do
    if tonumber(field:sub(-1), 16) & 2 ~= 0 then return true end
  end
  return false
end

describe("coil as PID 1", function()
  it("ends on the third SIGINT even though PID 1 ignores default actions", function()
    local probe = proc.start("unshare", { "-fp", "--kill-child", "--mount-proc", "true" }):wait(10)
    if probe.code ~= 0 then
      print("skipped: unshare -fp is refused here (" .. probe.stderr:gsub("\n", " ") .. ")")
      return
    end
    -- --kill-child: if this spec gives up on unshare, coil goes with it
    local p = proc.start("unshare", { "-fp", "--kill-child", "--mount-proc", COIL_BIN,
                                      "spec/fixtures/pid1_stuck_cleanup.lua" })
    local pid
    finally(function()
      if pid then uv.kill(pid, "sigkill") end
    end)
    assert.is_true(p:wait_for("ready\n", 20), "no ready line: " .. p.stderr)
    pid = child_of(p.pid)
    assert.is_not_nil(pid, "no child of unshare")
    for _ = 1, 3 do
      assert(uv.kill(pid, "sigint"))
      -- the next one only once this one was delivered
      local deadline = uv.hrtime() + 10e9
      while sigint_pending(pid) and uv.hrtime() < deadline do coil.sleep(0.01) end
      coil.sleep(0.1)
    end
    p.signalled_at = uv.hrtime()
    local r = p:wait(20)
    assert.is_false(r.timed_out, "coil as PID 1 did not end: " .. r.stderr)
    -- unshare passes on the child's status: _exit(128 + SIGINT)
    assert.equal(130, r.code, r.stderr)
    assert.matches("SIGINT received", r.stderr)
    pid = nil
  end)
end)
