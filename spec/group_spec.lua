-- coil.group (SPEC §4): task groups. Every `it` runs inside coil's main task.
local coil = require "coil"
local util = require "spec.support.util"
local turns = util.turns
local error_of = util.error_of
local uv = require "luv"
local proc = require "spec.support.proc"

-- A child body: sleeps s, logs, returns v; its cleanup awaits, then logs.
local function worker(log, name, s, v)
  return function()
    coil.defer(function()
      coil.sleep(0.01) -- cleanup that takes time
      log[#log + 1] = name .. " cleaned"
    end)
    coil.sleep(s)
    log[#log + 1] = name .. " finished"
    return v
  end
end

local function failer(log, name, s, msg)
  return function()
    coil.sleep(s)
    log[#log + 1] = name .. " failing"
    error(msg, 0)
  end
end

-- A luv one-shot timer (callbacks outside any task).
local function after(ms, fn)
  local t = uv.new_timer()
  t:start(ms, 0, function()
    t:close()
    fn()
  end)
end

describe("coil.group", function()
  it("returns the body's results once every child is done", function()
    local log = {}
    local t0 = coil.now()
    local a, b = coil.group(function(g, x)
      g:spawn(worker(log, "one", 0.03))
      g:spawn(worker(log, "two", 0.01))
      return x, "b"
    end, "a")
    assert.same({ "a", "b" }, { a, b })
    -- each child finished, then cleaned up (the two interleave by timing)
    local at = {}
    for i, what in ipairs(log) do at[what] = i end
    assert.equal(4, #log)
    assert.is_true(at["one finished"] < at["one cleaned"])
    assert.is_true(at["two finished"] < at["two cleaned"])
    assert.is_true(at["two finished"] < at["one finished"])
    assert.is_true(coil.now() - t0 >= 0.03)
  end)

  it("owns children spawned over time, by the body and by children", function()
    local log = {}
    local tasks = {}
    coil.group(function(g)
      tasks[1] = g:spawn(function()
        coil.sleep(0.01)
        tasks[2] = g:spawn(function()
          coil.sleep(0.02)
          tasks[3] = g:spawn(function() coil.sleep(0.01) log[#log + 1] = "grandchild" end)
          log[#log + 1] = "child"
        end)
        log[#log + 1] = "first"
      end)
      coil.sleep(0.005)
      log[#log + 1] = "body"
    end)
    assert.same({ "body", "first", "child", "grandchild" }, log)
    for i = 1, 3 do assert.is_true(tasks[i]:done()) end
  end)

  it("gives the child task back from spawn, with its arguments", function()
    local t
    coil.group(function(g)
      t = g:spawn(function(x, y) return x + y end, 1, 2)
    end)
    assert.equal(3, t:result())
  end)

  it("nests", function()
    local log = {}
    local v = coil.group(function(outer)
      outer:spawn(worker(log, "outer child", 0.02))
      return coil.group(function(inner)
        inner:spawn(worker(log, "inner child", 0.01))
        outer:spawn(worker(log, "late outer child", 0.01))
        return "inner result"
      end)
    end)
    assert.equal("inner result", v)
    assert.equal(6, #log)
  end)

  it("a failing child cancels the rest and the body; cleanup finishes before the error", function()
    local log = {}
    local body_saw
    local err = error_of(coil.group, function(g)
      g:spawn(worker(log, "sleeper", 10))
      g:spawn(failer(log, "bad", 0.01, "boom"))
      local ok, e = pcall(coil.sleep, 10)
      body_saw = e
      coil.sleep(0.01) -- the body's cleanup may await
      log[#log + 1] = "body cleaned"
      if not ok then error(e, 0) end
    end)
    assert.equal("boom", err)
    assert.is_true(coil.is_cancelled(body_saw))
    table.sort(log)
    assert.same({ "bad failing", "body cleaned", "sleeper cleaned" }, log)
    assert.equal(1, #coil.tasks())
  end)

  it("a failing body cancels the children, and waits for their cleanup", function()
    local log = {}
    local err = error_of(coil.group, function(g)
      g:spawn(worker(log, "a", 10))
      g:spawn(worker(log, "b", 10))
      coil.sleep(0.01)
      error("body failed", 0)
    end)
    assert.equal("body failed", err)
    assert.same({ "a cleaned", "b cleaned" }, log)
  end)

  it("collects several errors in the order they failed", function()
    local err = error_of(coil.group, function(g)
      -- these two catch the group's cancellation and fail in their cleanup
      g:spawn(function()
        pcall(coil.sleep, 10)
        coil.sleep(0.02)
        error("late failure", 0)
      end)
      g:spawn(function() coil.sleep(0.01) error(setmetatable({ code = 2 },
        { __tostring = function() return "code 2" end })) end)
      g:spawn(function()
        pcall(coil.sleep, 10)
        error("cleanup failed", 0)
      end)
    end)
    assert.equal("table", type(err))
    assert.equal(3, #err.errors)
    assert.equal(2, err.errors[1].code)
    assert.equal("code 2", tostring(err))
    assert.same({ "cleanup failed", "late failure" }, { err.errors[2], err.errors[3] })
  end)

  it("a child's error that the body awaited counts once", function()
    local e = {}
    local err = error_of(coil.group, function(g)
      g:spawn(coil.sleep, 10)
      local t = g:spawn(function() coil.sleep(0.01) error(e) end)
      t:await()
    end)
    assert.equal(e, err)
  end)

  it("a single error is raised as it is, with no wrapper", function()
    local e = {}
    local err = error_of(coil.group, function(g)
      g:spawn(function() error(e) end)
    end)
    assert.equal(e, err)
  end)

  it("a child cancelled on its own is no error", function()
    local v = coil.group(function(g)
      local t = g:spawn(coil.sleep, 10)
      g:spawn(function() coil.sleep(0.01) return 1 end)
      turns(1)
      t:cancel()
      return "ok"
    end)
    assert.equal("ok", v)
  end)

  describe("g:cancel()", function()
    it("cancels the body and the children; coil.group returns nothing once they are done", function()
      local log = {}
      local n = select("#", coil.group(function(g)
        g:spawn(worker(log, "a", 10))
        g:spawn(function()
          coil.sleep(0.01)
          g:cancel()
        end)
        local ok, e = pcall(coil.sleep, 10)
        log[#log + 1] = "body saw " .. tostring(e)
        if not ok then error(e, 0) end
        return "not returned"
      end))
      assert.equal(0, n)
      table.sort(log)
      assert.same({ "a cleaned", "body saw cancelled: group cancelled" }, log)
    end)

    it("from the body itself, with no await after it", function()
      local n = select("#", coil.group(function(g)
        g:spawn(coil.sleep, 10)
        g:cancel()
        return 1
      end))
      assert.equal(0, n)
      coil.sleep(0) -- raises if a cancellation were left over
    end)

    it("after the body returned", function()
      local t0 = coil.now()
      local n = select("#", coil.group(function(g)
        g:spawn(coil.sleep, 10)
        g:spawn(function() coil.sleep(0.01) g:cancel() end)
        return 1
      end))
      assert.equal(0, n)
      assert.is_true(coil.now() - t0 < 5)
    end)

    it("still raises a failure", function()
      local err = error_of(coil.group, function(g)
        g:spawn(function()
          pcall(coil.sleep, 10)
          error("failed in cleanup", 0)
        end)
        turns(1)
        g:cancel()
      end)
      assert.equal("failed in cleanup", err)
    end)

    it("returns false once the group finished", function()
      local saved
      coil.group(function(g) saved = g end)
      assert.is_false(saved:cancel())
    end)
  end)

  it("a child spawned once the group is cancelling starts cancelled", function()
    local late_started, late_saw
    local err = error_of(coil.group, function(g)
      g:spawn(function()
        local ok, e = pcall(coil.sleep, 10)
        -- cleanup that spawns into the group
        g:spawn(function()
          late_started = true
          local _, e2 = pcall(coil.sleep, 10)
          late_saw = e2
          error(e2, 0)
        end)
        error(e, 0)
      end)
      g:spawn(function() coil.sleep(0.01) error("boom", 0) end)
    end)
    assert.equal("boom", err)
    assert.is_true(late_started)
    assert.is_true(coil.is_cancelled(late_saw))
  end)

  it("spawning into a finished group raises a clear error", function()
    local saved
    coil.group(function(g) saved = g end)
    assert.equal("coil: group:spawn: the group has finished; nothing more can be spawned into it",
                 error_of(saved.spawn, saved, print))
  end)

  describe("cancelled from outside", function()
    it("cancels every child, waits for their cleanup, then raises Cancelled", function()
      local log = {}
      local t = coil.spawn(coil.group, function(g)
        g:spawn(worker(log, "a", 10))
        g:spawn(worker(log, "b", 10))
        coil.sleep(10)
      end)
      turns(2)
      t:cancel("outside")
      local err = error_of(t.await, t)
      assert.equal("cancelled: outside", tostring(err))
      assert.same({ "a cleaned", "b cleaned" }, log)
    end)

    it("while it waits for the children, after the body returned", function()
      local log = {}
      local t = coil.spawn(coil.group, function(g)
        g:spawn(worker(log, "a", 10))
        return 1
      end)
      turns(3)
      t:cancel("outside")
      assert.equal("cancelled: outside", tostring(error_of(t.await, t)))
      assert.same({ "a cleaned" }, log)
    end)

    it("an error of a child meanwhile wins over the cancellation", function()
      local t = coil.spawn(coil.group, function(g)
        g:spawn(function()
          pcall(coil.sleep, 10)
          error("cleanup failed", 0)
        end)
        coil.sleep(10)
      end)
      turns(2)
      t:cancel("outside")
      assert.equal("cleanup failed", error_of(t.await, t))
    end)

    it("by a timeout around it: the Timeout is raised after the children's cleanup", function()
      local log = {}
      local err = error_of(coil.timeout, 0.02, coil.group, function(g)
        g:spawn(worker(log, "a", 10))
        coil.sleep(10)
      end)
      assert.is_true(coil.is_timeout(err))
      assert.same({ "a cleaned" }, log)
    end)

    it("by a timeout while waiting for the children", function()
      local log = {}
      local err = error_of(coil.timeout, 0.02, coil.group, function(g)
        g:spawn(worker(log, "a", 10))
      end)
      assert.is_true(coil.is_timeout(err))
      assert.same({ "a cleaned" }, log)
    end)

    it("right after a child failed: a cancellation, never lost", function()
      local t
      t = coil.spawn(coil.group, function(g)
        g:spawn(function()
          coil.sleep(0.03)
          after(0, function() t:cancel("outside") end)
          error("boom", 0)
        end)
        coil.sleep(10)
      end)
      assert.equal("boom", error_of(t.await, t))
    end)
  end)

  -- a deadline's cancellation is delivered first, then a real one while the
  -- children clean up: the real one is raised (a Timeout would swallow it)
  for _, how in ipairs { "group", "gather" } do
    it("a real cancellation during the children's cleanup wins over a deadline's (" .. how .. ")", function()
      local t
      local function child()
        local _, e = pcall(coil.sleep, 10)
        t:cancel("outside")
        coil.sleep(0.01)
        error(e, 0)
      end
      t = coil.spawn(function()
        if how == "group" then
          return coil.timeout(0.02, coil.group, function(g)
            g:spawn(child)
            coil.sleep(10)
          end)
        end
        return coil.timeout(0.02, coil.gather, child)
      end)
      local err = error_of(t.await, t)
      assert.is_false(coil.is_timeout(err))
      assert.equal("cancelled: outside", tostring(err))
    end)
  end

  it("a timeout in the body still raises at its own level", function()
    local v = coil.group(function(g)
      g:spawn(coil.sleep, 0.01)
      local err = error_of(coil.timeout, 0.01, coil.sleep, 10)
      assert.is_true(coil.is_timeout(err))
      return "went on"
    end)
    assert.equal("went on", v)
  end)

  it("a child failing while the body's timeout is pending: the group's cancellation wins", function()
    local body_saw
    local err = error_of(coil.group, function(g)
      g:spawn(function() coil.sleep(0.02) error("boom", 0) end)
      local _, e = pcall(coil.timeout, 0.02, function()
        local t0 = os.clock()
        while os.clock() - t0 < 0.04 do end -- both fire while nothing can run
        coil.sleep(10)
      end)
      body_saw = e
      coil.sleep(10) -- the group's cancellation still reaches the body
    end)
    assert.equal("boom", err)
    assert.is_not_nil(body_saw)
  end)

  it("move_on_after around a group ends it quietly, after the cleanup", function()
    local log = {}
    local ok = coil.move_on_after(0.02, coil.group, function(g)
      g:spawn(worker(log, "a", 10))
      coil.sleep(10)
    end)
    assert.is_false(ok)
    assert.same({ "a cleaned" }, log)
  end)

  describe("rejects bad use with one clear error", function()
    it("wrong self", function()
      coil.group(function(g)
        assert.matches("^coil: group:spawn: call it as g:spawn%(%.%.%.%)",
          error_of(g.spawn, print))
        assert.matches("^coil: group:cancel: call it as g:cancel%(%.%.%.%)",
          error_of(g.cancel, {}))
      end)
    end)

    it("not a function", function()
      assert.matches("^coil: group expects a function, got nil", error_of(coil.group))
      coil.group(function(g)
        assert.matches("^coil: group:spawn expects a function, got number",
          error_of(g.spawn, g, 42))
      end)
    end)

    it("outside a task", function()
      local err
      after(1, function() err = select(2, pcall(coil.group, print)) end)
      for _ = 1, 100 do
        if err then break end
        coil.sleep(0.01)
      end
      assert.equal("coil: group must be called from inside a task", err)
    end)
  end)

  describe("unseen errors", function()
    it("what the group raised is reported once, its children's never", function()
      local r = proc.run({ "spec/fixtures/group_unseen.lua" })
      local _, n = r.stderr:gsub("nobody awaited it", "")
      assert.equal(1, n, r.stderr)
      assert.matches("task 'owner' failed and nobody awaited it: .*first failure", r.stderr)
      assert.not_matches("second failure", r.stderr)
      assert.equal("done\n", r.stdout)
    end)
  end)

  it("Ctrl+C: the children's cleanup runs and the process dies by SIGINT", function()
    local p = proc.coil({ "spec/fixtures/group_sigint.lua" })
    assert.is_true(p:wait_for "ready")
    p:kill "sigint"
    local r = p:wait()
    assert.equal(2, r.signal)
    assert.matches("child 1 cleaned", r.stdout)
    assert.matches("child 2 cleaned", r.stdout)
    assert.matches("body cleaned", r.stdout)
  end)
end)
