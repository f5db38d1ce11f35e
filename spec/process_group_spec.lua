local coil = require "coil"
local uv = require "luv"
local proc = require "spec.support.proc"
local process = coil.process

-- Live (not zombie) processes whose process group is pgid.
local function group_members(pgid)
  local members = {}
  local dir = uv.fs_scandir("/proc")
  while true do
    local name = uv.fs_scandir_next(dir)
    if not name then break end
    if name:match "^%d+$" then
      local f = io.open("/proc/" .. name .. "/stat")
      local stat = f and f:read("a")
      if f then f:close() end
      local state, pgrp = (stat or ""):match "^%d+ %b() (%S) %d+ (%d+)"
      if state and state ~= "Z" and tonumber(pgrp) == pgid then
        members[#members + 1] = tonumber(name)
      end
    end
  end
  return members
end

local function wait_until(check, limit)
  local deadline = coil.now() + (limit or 5)
  while not check() and coil.now() < deadline do coil.sleep(0.01) end
  return check()
end

local function group_gone(pgid)
  return wait_until(function() return #group_members(pgid) == 0 end)
end

local function sh_with_children()
  local p = assert(process.spawn("sh", { "-c", "sleep 100 & sleep 100" }))
  assert.is_true(wait_until(function() return #group_members(p.pid) == 3 end),
                 "the shell and its two sleeps")
  return p
end

describe("coil.process groups", function()
  it("a child leads its own group; kill() signals all of it", function()
    local p = sh_with_children()
    assert.is_true(p:kill())
    assert.same({ 0, 15 }, { p:wait() })
    assert.is_true(group_gone(p.pid))
  end)

  it("a coil.timeout around wait() terminates the group before it raises", function()
    local p = sh_with_children()
    local ok, err = pcall(coil.timeout, 0.1, p.wait, p)
    assert.is_false(ok)
    assert.is_true(coil.is_timeout(err))
    assert.is_not_nil(p.code) -- seen exiting before the Timeout came out
    assert.is_true(group_gone(p.pid))
  end)

  it("a child that ignores SIGTERM is killed once the grace is over", function()
    local p = assert(process.spawn("sh", { "-c", "trap '' TERM; echo up; while :; do sleep 0.05; done" },
                                   { stdout = "pipe" }))
    assert.equal("up", p.stdout:read_line())
    local t0 = coil.now()
    local ok = pcall(coil.timeout, 0.05, p.wait, p)
    assert.is_false(ok)
    assert.same({ 0, 9 }, { p:wait() })
    assert.is_true(coil.now() - t0 >= 0.05)
    assert.is_true(group_gone(p.pid))
    p.stdout:close()
  end)

  it("group = false keeps the child in coil's own group", function()
    local p = assert(process.spawn("sleep", { "10" }, { group = false }))
    local f = assert(io.open("/proc/" .. p.pid .. "/stat"))
    local pgrp = tonumber(f:read("a"):match "^%d+ %b() %S %d+ (%d+)")
    f:close()
    assert.not_equal(p.pid, pgrp)
    p:kill()
    assert.same({ 0, 15 }, { p:wait() })
  end)

  for _, how in ipairs { "wait", "sleep" } do
    it("Ctrl+C to coil leaves no process of the group (main task in " .. how .. ")", function()
      local c = proc.coil({ "--quiet", "spec/fixtures/process_group.lua", how })
      assert.is_true(c:wait_for("ready %d+\n"), c.stderr)
      local pgid = tonumber(c.stdout:match "ready (%d+)")
      assert.equal(3, #group_members(pgid))
      c:kill("sigint")
      local r = c:wait()
      assert.equal(2, r.signal, r.stderr)
      assert.is_true(group_gone(pgid))
    end)
  end
end)

describe("coil.process options and run", function()
  it("stdin = \"null\" gives the child an empty input", function()
    local r = assert(process.run("sh", { "-c", "cat; echo done" }))
    assert.same({ status = 0, signal = 0, stdout = "done\n", stderr = "" }, r)
    local p = assert(process.spawn("cat", {}, { stdin = "null", stdout = "pipe" }))
    assert.is_nil(p.stdout:read())
    assert.same({ 0, 0 }, { p:wait() })
  end)

  it("run feeds its input and captures both outputs, cwd and env", function()
    local r = assert(process.run("sh", { "-c", "tr a-z A-Z; pwd; echo \"$WHO\" >&2; exit 3" },
                                 { input = "hello\n", cwd = "/tmp", env = { WHO = "me" } }))
    assert.equal(3, r.status)
    assert.equal(0, r.signal)
    assert.equal("HELLO\n/tmp\n", r.stdout)
    assert.equal("me\n", r.stderr)
    local big = ("x"):rep(1024 * 1024)
    r = assert(process.run("cat", {}, { input = big }))
    assert.equal(#big, #r.stdout)
    local none, err = process.run("/no/such/command", {})
    assert.is_nil(none)
    assert.matches("^ENOENT", err)
  end)

  it("cancelling run kills the child's group", function()
    local file = os.tmpname()
    local task = coil.spawn(process.run, "sh",
                            { "-c", "echo $$ > " .. file .. "; sleep 100 & sleep 100" })
    local pgid
    assert.is_true(wait_until(function()
      local f = io.open(file)
      pgid = f and tonumber(f:read("a"))
      if f then f:close() end
      return pgid and #group_members(pgid) == 3
    end))
    task:cancel()
    assert.is_false(pcall(task.await, task))
    assert.is_true(coil.is_cancelled(task:error()))
    assert.is_true(group_gone(pgid))
    os.remove(file)
  end)
end)
