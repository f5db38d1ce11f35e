-- Combinators (SPEC §4 "Time and combinators"): gather, wait, race, timeout,
-- shield, call_later. Every `it` runs inside coil's main task.
local coil = require "coil"
local coil_core = require "coil.core"
local util = require "spec.support.util"
local turns = util.turns
local error_of = util.error_of
local uv = require "luv"
local proc = require "spec.support.proc"

-- A task that sleeps s, then returns v; its cleanup (which awaits) is logged.
local function worker(log, name, s, v)
  return coil.spawn(function()
    coil.defer(function()
      coil.sleep(0.01) -- cleanup that takes time
      log[#log + 1] = name .. " cleaned"
    end)
    coil.sleep(s)
    log[#log + 1] = name .. " finished"
    return v
  end)
end

-- A luv one-shot timer (callbacks outside any task).
local function after(ms, fn)
  local t = uv.new_timer()
  t:start(ms, 0, function()
    t:close()
    fn()
  end)
end

-- Waits (up to 5 s) until cond() is true.
local function eventually(cond)
  for _ = 1, 500 do
    if cond() then return end
    coil.sleep(0.01)
  end
end

local function busy(s)
  local t0 = os.clock()
  while os.clock() - t0 < s do end
end

describe("coil.gather", function()
  it("returns results in order: varargs in, varargs out", function()
    local a = coil.spawn(function() coil.sleep(0.03) return "a" end)
    local b = coil.spawn(function() coil.sleep(0.01) return "b", "ignored" end)
    local c = coil.spawn(function() return "c" end)
    local x, y, z = coil.gather(a, b, c)
    assert.same({ "a", "b", "c" }, { x, y, z })
  end)

  it("returns a list for a list, and spawns functions", function()
    local t = coil.spawn(function() coil.sleep(0.01) return 1 end)
    local res = coil.gather({ t, function() return 2 end, function() coil.sleep(0.02) return 3 end })
    assert.same({ 1, 2, 3 }, res)
  end)

  it("gives the first result of each, nil for none", function()
    local res = coil.gather({ function() return 1, 2 end, function() end, function() return 3 end })
    assert.equal(1, res[1])
    assert.is_nil(res[2])
    assert.equal(3, res[3])
    assert.equal(0, select("#", coil.gather()))
    assert.same({}, coil.gather({}))
  end)

  it("accepts tasks that are already done", function()
    local t = coil.spawn(function() return 7 end)
    t:await()
    assert.equal(7, coil.gather(t))
  end)

  it("takes the list as it is at the call: changing it later changes nothing", function()
    -- a list with a metatable
    local list = setmetatable({ coil.spawn(function() return 1, 9 end),
                                coil.spawn(function() end) }, {})
    local res = coil.gather(list)
    assert.equal(1, res[1])
    assert.is_nil(res[2])
    -- changed while gather waits: another done task, then a non-task
    local other = coil.spawn(function() return "other" end)
    list = { coil.spawn(function() coil.sleep(0.01) return "a" end) }
    coil.spawn(function() other:await() list[1] = other end)
    assert.same({ "a" }, coil.gather(list))
    list = { coil.spawn(function() coil.sleep(0.01) return "b" end) }
    coil.spawn(function() list[1] = 42 end)
    assert.same({ "b" }, coil.gather(list))
  end)

  it("cancels the tasks it was given, whatever the caller did to its list", function()
    local never = coil.event()
    for _, change in ipairs {
      function(list) list[1] = nil end,
      function(list) list[1] = coil.spawn(function() end) end,
      function(list) list[1] = 42 end,
    } do
      local given = coil.spawn(function() never:wait() end)
      local list = { given }
      local g = coil.spawn(function() return coil.gather(list) end)
      coil.sleep(0.01)
      change(list)
      g:cancel()
      local done = coil.wait({ g }, { timeout = 5 })
      assert.equal(1, #done, "gather did not end")
      assert.is_true(given:cancelled())
      if type(list[1]) == "table" then coil.wait({ list[1] }) end
    end
  end)

  it("on a failure cancels the rest, waits for their cleanup, raises the first error", function()
    local log = {}
    local slow1 = worker(log, "slow1", 10)
    local slow2 = worker(log, "slow2", 10)
    local bad = coil.spawn(function()
      coil.sleep(0.01)
      error("boom", 0)
    end)
    local late = coil.spawn(function()
      coil.sleep(1)
      error("later boom", 0)
    end)
    local err = error_of(coil.gather, slow1, bad, slow2, late)
    assert.equal("boom", err)
    -- by the time gather raised, every child's cleanup had finished
    assert.same({ "slow1 cleaned", "slow2 cleaned" }, log)
    assert.is_true(slow1:cancelled() and slow2:cancelled() and late:cancelled())
  end)

  it("raises the error that came first in time, not in position", function()
    local err = error_of(coil.gather,
      function() coil.sleep(0.3) error("second", 0) end,
      function() coil.sleep(0.01) error("first", 0) end)
    assert.equal("first", err)
  end)

  it("keeps error objects as they are", function()
    local obj = setmetatable({}, { __tostring = function() return "obj" end })
    local err = error_of(coil.gather, function() error(obj) end)
    assert.equal(obj, err)
  end)

  it("cancelling the gathering task cancels every child, after their cleanup", function()
    local log = {}
    local a, b = worker(log, "a", 10), worker(log, "b", 10)
    local g = coil.spawn(function() return coil.gather(a, b) end)
    turns(2)
    g:cancel("stop")
    local err = error_of(g.await, g)
    assert.is_true(coil.is_cancelled(err))
    assert.equal("cancelled: stop", tostring(err))
    assert.same({ "a cleaned", "b cleaned" }, log)
    assert.is_true(a:cancelled() and b:cancelled())
    -- the children got the gathering task's cancellation, reason included
    assert.equal("cancelled: stop", tostring(a:error()))
  end)

  it("a child cancelled by someone else makes gather raise its Cancelled", function()
    local a = coil.spawn(coil.sleep, 10)
    local b = coil.spawn(coil.sleep, 10)
    local g = coil.spawn(function() return coil.gather(a, b) end)
    turns(2)
    a:cancel("by hand")
    local err = error_of(g.await, g)
    assert.equal("cancelled: by hand", tostring(err))
    assert.is_true(b:cancelled())
  end)

  describe("with return_errors", function()
    it("puts results and error objects in their slots and cancels nothing", function()
      local log = {}
      local slow = worker(log, "slow", 0.03, "done")
      local cancelled = coil.spawn(coil.sleep, 10)
      local res = coil.spawn(function()
        return coil.gather({
          function() error("bad", 0) end,
          slow,
          cancelled,
          function() return 4 end,
        }, { return_errors = true })
      end)
      turns(2)
      cancelled:cancel()
      res = res:await()
      assert.equal("bad", res[1])
      assert.equal("done", res[2])
      assert.is_true(coil.is_cancelled(res[3]))
      assert.equal(4, res[4])
      assert.same({ "slow finished", "slow cleaned" }, log)
    end)

    it("still cancels every child when the gathering task is cancelled", function()
      local log = {}
      local a = worker(log, "a", 10)
      local g = coil.spawn(coil.gather, { a }, { return_errors = true })
      turns(2)
      g:cancel()
      assert.is_true(coil.is_cancelled(error_of(g.await, g)))
      assert.same({ "a cleaned" }, log)
    end)
  end)

  describe("rejects bad arguments with one clear error", function()
    it("a non-task, and spawns nothing then", function()
      local before = #coil.tasks()
      local err = error_of(coil.gather, function() end, 42)
      assert.matches("^coil: gather expects tasks or functions, got number at position 2", err)
      err = error_of(coil.gather, { function() end, "x" })
      assert.matches("^coil: gather expects tasks or functions, got string at position 2", err)
      assert.equal(before, #coil.tasks())
    end)

    it("bad options", function()
      assert.matches("unknown option 'return_error'",
        error_of(coil.gather, {}, { return_error = true }))
      assert.matches("^coil: gather: options must be a table",
        error_of(coil.gather, {}, true))
    end)

    it("outside a task", function()
      local err
      after(1, function() err = select(2, pcall(coil.gather)) end)
      eventually(function() return err end)
      assert.equal("coil: gather must be called from inside a task", err)
    end)
  end)

  it("gathers 100 000 tasks, in time linear in their number", function()
    -- W1: n tasks that yield once and return i, gathered. CPU time (not wall
    -- time, which a loaded machine stretches) for n and 4n: a quadratic
    -- step would make the ratio about 16.
    local function w1(n)
      collectgarbage("collect")
      local t0 = os.clock()
      local tasks = {}
      for i = 1, n do
        tasks[i] = coil.spawn(function()
          coil.sleep(0)
          return i
        end)
      end
      local res = coil.gather(tasks)
      local sum = 0
      for i = 1, n do sum = sum + res[i] end
      assert.equal(n * (n + 1) // 2, sum)
      return os.clock() - t0
    end
    local small = w1(25000)
    local big = w1(100000)
    assert.is_true(big / small < 12,
      ("25k tasks: %.3f s, 100k tasks: %.3f s CPU"):format(small, big))
  end)
end)

describe("coil.wait", function()
  it("waits for all and returns done, pending in the order of the list", function()
    local a = coil.spawn(function() coil.sleep(0.02) return 1 end)
    local b = coil.spawn(function() return 2 end)
    local done, pending = coil.wait({ a, b })
    assert.same({ a, b }, done)
    assert.same({}, pending)
  end)

  it("return_when = first returns after the first one", function()
    local a = coil.spawn(coil.sleep, 0.3)
    local b = coil.spawn(coil.sleep, 0.01)
    local c = coil.spawn(coil.sleep, 0.3)
    local done, pending = coil.wait({ a, b, c }, { return_when = "first" })
    assert.same({ b }, done)
    assert.same({ a, c }, pending)
    assert.is_false(a:done() or c:done())
    coil.wait(pending)
  end)

  it("return_when = error returns at the first failure, or when all are done", function()
    local a = coil.spawn(coil.sleep, 0.3)
    local b = coil.spawn(function() coil.sleep(0.01) error("x") end)
    local done, pending = coil.wait({ a, b }, { return_when = "error" })
    assert.same({ b }, done)
    assert.same({ a }, pending)
    done, pending = coil.wait({ a }, { return_when = "error" })
    assert.same({ a }, done)
    assert.same({}, pending)
    -- a cancelled task is not a failure (as in asyncio)
    local c = coil.spawn(coil.sleep, 10)
    local d = coil.spawn(coil.sleep, 0.02)
    coil.call_later(0.005, function() c:cancel() end)
    done, pending = coil.wait({ c, d }, { return_when = "error" })
    assert.same({ c, d }, done)
  end)

  it("on timeout returns what is done and cancels nothing", function()
    local log = {}
    local a = worker(log, "a", 0.3)
    local b = coil.spawn(function() return 1 end)
    local done, pending = coil.wait({ a, b }, { timeout = 0.01 })
    assert.same({ b }, done)
    assert.same({ a }, pending)
    assert.is_false(a:done())
    a:await()
    assert.same({ "a finished", "a cleaned" }, log)
  end)

  it("timeout = 0 polls", function()
    local a = coil.spawn(coil.sleep, 0.01)
    local done, pending = coil.wait({ a }, { timeout = 0 })
    assert.same({}, done)
    assert.same({ a }, pending)
    a:await()
  end)

  it("cancelling the waiting task does not cancel the tasks", function()
    local log = {}
    local work = worker(log, "work", 0.03, "result")
    local w = coil.spawn(coil.wait, { work })
    turns(2)
    w:cancel()
    assert.is_true(coil.is_cancelled(error_of(w.await, w)))
    assert.is_false(work:done())
    assert.equal("result", work:await())
    assert.same({ "work finished", "work cleaned" }, log)
  end)

  it("leaves no watcher behind: a task finishing later wakes nobody", function()
    local a = coil.spawn(coil.sleep, 0.02)
    local _, pending = coil.wait({ a }, { timeout = 0.001 })
    assert.same({ a }, pending)
    -- now wait on something else; a finishing must not wake this task
    local q = coil.queue()
    coil.call_later(0.05, function() q:put("real") end)
    assert.equal("real", q:get())
    assert.is_true(a:done())
  end)

  it("an empty list returns at once", function()
    local done, pending = coil.wait({}, { return_when = "first" })
    assert.same({}, done)
    assert.same({}, pending)
  end)

  it("rejects bad arguments", function()
    local t = coil.spawn(function() end)
    assert.matches("^coil: wait expects a list of tasks, got a task", error_of(coil.wait, t))
    assert.matches("^coil: wait expects a list of tasks, got function at position 1",
      error_of(coil.wait, { function() end }))
    assert.matches("^coil: wait: timeout expects a non%-negative number of seconds, got %-1",
      error_of(coil.wait, { t }, { timeout = -1 }))
    assert.matches("return_when must be", error_of(coil.wait, { t }, { return_when = "any" }))
    t:await()
  end)
end)

describe("coil.race", function()
  it("returns the index and all results of the first to finish", function()
    local i, a, b = coil.race(
      function() coil.sleep(0.5) return "slow" end,
      function() coil.sleep(0.01) return "fast", 2 end)
    assert.equal(2, i)
    assert.same({ "fast", 2 }, { a, b })
  end)

  it("accepts a list", function()
    assert.equal(1, (coil.race({ function() return "x" end, function() coil.sleep(1) end })))
  end)

  it("cancels the others and waits for their cleanup before it returns", function()
    local log = {}
    local slow = worker(log, "slow", 10)
    local fast = worker(log, "fast", 0.01, "won")
    local i, v = coil.race(slow, fast)
    assert.equal(2, i)
    assert.equal("won", v)
    assert.is_true(slow:cancelled())
    assert.same({ "fast finished", "fast cleaned", "slow cleaned" }, log)
  end)

  it("raises the winner's error, after the others' cleanup", function()
    local log = {}
    local slow = worker(log, "slow", 10)
    local err = error_of(coil.race, slow, function() coil.sleep(0.01) error("lost it", 0) end)
    assert.equal("lost it", err)
    assert.same({ "slow cleaned" }, log)
  end)

  it("cancelling the racing task cancels all of them", function()
    local log = {}
    local a, b = worker(log, "a", 10), worker(log, "b", 10)
    local r = coil.spawn(coil.race, a, b)
    turns(2)
    r:cancel()
    assert.is_true(coil.is_cancelled(error_of(r.await, r)))
    assert.is_true(a:cancelled() and b:cancelled())
    assert.same({ "a cleaned", "b cleaned" }, log)
  end)

  describe("wait for any, cancel the rest (the classic scenario)", function()
    local function scenario(work_time, lost_after, cancel_racer_after)
      local log = {}
      local lost = coil.event()
      local work = worker(log, "work", work_time, "work result")
      local watch = coil.spawn(function()
        coil.defer(function() log[#log + 1] = "watch cleaned" end)
        lost:wait()
        return "connection lost"
      end)
      if lost_after then coil.call_later(lost_after, function() lost:set() end) end
      local racer = coil.spawn(coil.race, work, watch)
      if cancel_racer_after then
        coil.sleep(cancel_racer_after)
        racer:cancel()
      end
      return log, work, watch, pcall(racer.await, racer)
    end

    it("the work finishes first: the watcher is cancelled", function()
      local log, work, watch, ok, i, v = scenario(0.01, nil, nil)
      assert.is_true(ok)
      assert.equal(1, i)
      assert.equal("work result", v)
      assert.is_true(watch:cancelled())
      assert.is_false(work:cancelled())
      assert.same({ "work finished", "work cleaned", "watch cleaned" }, log)
    end)

    it("the connection is lost first: the work is cancelled", function()
      local log, work, _, ok, i, v = scenario(10, 0.01, nil)
      assert.is_true(ok)
      assert.equal(2, i)
      assert.equal("connection lost", v)
      assert.is_true(work:cancelled())
      assert.same({ "watch cleaned", "work cleaned" }, log)
    end)

    it("the racing task is cancelled: both are cancelled", function()
      local log, work, watch, ok, err = scenario(10, nil, 0.01)
      assert.is_false(ok)
      assert.is_true(coil.is_cancelled(err))
      assert.is_true(work:cancelled() and watch:cancelled())
      table.sort(log)
      assert.same({ "watch cleaned", "work cleaned" }, log)
    end)
  end)

  it("rejects bad arguments", function()
    assert.matches("^coil: race needs at least one task or function", error_of(coil.race))
    assert.matches("^coil: race expects tasks or functions, got boolean at position 1",
      error_of(coil.race, true))
  end)
end)

describe("coil.timeout", function()
  it("returns fn's results when it finishes in time", function()
    local a, b = coil.timeout(1, function(x) coil.sleep(0.01) return x, "b" end, "a")
    assert.same({ "a", "b" }, { a, b })
  end)

  it("cancels the work at the deadline, runs its cleanup, then raises Timeout", function()
    local log = {}
    local t0 = coil.now()
    local err = error_of(coil.timeout, 0.02, function()
      local ok, e = pcall(coil.sleep, 10)
      log[#log + 1] = "work saw " .. tostring(e)
      coil.sleep(0.01) -- cleanup may await
      log[#log + 1] = "cleanup done"
      error(e, 0)
    end)
    assert.is_true(coil.is_timeout(err))
    assert.is_false(coil.is_cancelled(err))
    assert.equal(0.02, err.seconds)
    assert.equal("timeout after 0.0 s", tostring(err))
    assert.equal("timeout after 2.0 s", tostring(coil.Timeout(2)))
    assert.same({ "work saw cancelled: timeout after 0.02 s", "cleanup done" }, log)
    assert.is_true(coil.now() - t0 >= 0.029)
  end)

  it("cancels a child task the work awaits, and its cleanup finishes first", function()
    local log = {}
    local child = worker(log, "child", 10)
    local err = error_of(coil.timeout, 0.01, child.await, child)
    assert.is_true(coil.is_timeout(err))
    assert.is_true(child:cancelled())
    assert.same({ "child cleaned" }, log)
  end)

  it("lets the work finish in the very turn of the deadline", function()
    -- a wake-up and the deadline fire in the same timers phase, the wake
    -- first: the work returns, and the timeout's cancellation (not yet
    -- delivered) is taken back so no later await sees it
    local me = coil.current()
    after(30, function() coil_core.wake(me, "woken") end)
    local v = coil.timeout(0.03, coil_core.park)
    assert.equal("woken", v)
    coil.sleep(0.01) -- raises if a cancellation were left over
  end)

  it("a cancellation from outside stays a cancellation", function()
    local t = coil.spawn(coil.timeout, 1, coil.sleep, 10)
    turns(2)
    t:cancel("outside")
    local err = error_of(t.await, t)
    assert.is_true(coil.is_cancelled(err))
    assert.equal("cancelled: outside", tostring(err))
  end)

  it("a cancellation from outside right after the deadline fired stays a cancellation", function()
    local t
    t = coil.spawn(function()
      return coil.timeout(0.03, function()
        after(30, function() t:cancel("outside") end) -- same phase, just after
        coil.sleep(10)
      end)
    end)
    local err = error_of(t.await, t)
    assert.is_false(coil.is_timeout(err))
    assert.equal("cancelled: outside", tostring(err))
  end)

  it("a cancellation from outside right before the deadline stays a cancellation", function()
    local t
    t = coil.spawn(function()
      after(30, function() t:cancel("outside") end) -- started first: fires first
      return coil.timeout(0.03, coil.sleep, 10)
    end)
    local err = error_of(t.await, t)
    assert.equal("cancelled: outside", tostring(err))
  end)

  it("a gathering owner cancelled in the deadline's turn: the child sees a cancellation", function()
    -- the owner is cancelled just before the child's deadline fires and
    -- passes its cancellation on while the timeout's is still pending
    local child_saw
    local g
    local child = coil.spawn(function()
      after(30, function() g:cancel("owner") end)
      local ok, e = pcall(coil.timeout, 0.03, coil.sleep, 10)
      child_saw = e
      if not ok then error(e, 0) end
    end)
    g = coil.spawn(coil.gather, child)
    local err = error_of(g.await, g)
    assert.equal("cancelled: owner", tostring(err))
    assert.equal("cancelled: owner", tostring(child_saw))
  end)

  it("a shutdown cancelling everything right after the deadline is a cancellation", function()
    local r = proc.run({ "spec/fixtures/comb_timeout_shutdown.lua" })
    assert.equal("timeout false cancelled true\n", r.stdout)
    assert.equal("", r.stderr)
  end)

  describe("nested", function()
    it("the inner deadline raises at the inner level", function()
      local inner_err
      local v = coil.timeout(1, function()
        inner_err = error_of(coil.timeout, 0.01, coil.sleep, 10)
        return "outer went on"
      end)
      assert.equal("outer went on", v)
      assert.is_true(coil.is_timeout(inner_err))
      assert.equal(0.01, inner_err.seconds)
    end)

    it("the outer deadline raises at the outer level", function()
      local inner_saw
      local err = error_of(coil.timeout, 0.01, function()
        local ok, e = pcall(coil.timeout, 1, coil.sleep, 10)
        inner_saw = e
        error(e, 0)
      end)
      assert.is_true(coil.is_timeout(err))
      assert.equal(0.01, err.seconds)
      assert.is_true(coil.is_cancelled(inner_saw)) -- not a Timeout in between
    end)

    it("both expired, inner first: the outer level raises", function()
      local inner_saw
      local err = error_of(coil.timeout, 0.02, function()
        local _, e = pcall(coil.timeout, 0.01, function()
          busy(0.04) -- both deadlines pass while nothing can fire
          coil.sleep(10)
        end)
        inner_saw = e
        error(e, 0)
      end)
      assert.equal(0.02, err.seconds)
      assert.is_true(coil.is_cancelled(inner_saw))
    end)

    it("both expired, outer first: the outer level raises", function()
      local inner_saw
      local err = error_of(coil.timeout, 0.01, function()
        local _, e = pcall(coil.timeout, 0.02, function()
          busy(0.04)
          coil.sleep(10)
        end)
        inner_saw = e
        error(e, 0)
      end)
      assert.equal(0.01, err.seconds)
      assert.is_true(coil.is_cancelled(inner_saw))
    end)
  end)

  it("works in cleanup after a cancellation (a bounded flush)", function()
    local log = {}
    local t = coil.spawn(function()
      coil.defer(function()
        local ok, e = pcall(coil.timeout, 0.01, coil.sleep, 10)
        log[#log + 1] = coil.is_timeout(e) and "flush timed out" or tostring(e)
      end)
      coil.sleep(10)
    end)
    turns(2)
    t:cancel()
    assert.is_true(coil.is_cancelled(error_of(t.await, t)))
    assert.same({ "flush timed out" }, log)
  end)

  it("a caught Timeout is not a swallowed cancellation", function()
    local r = proc.run({ "spec/fixtures/comb_timeout_caught.lua" })
    assert.equal(0, r.code)
    assert.equal("caught timeout after 0.0 s\n", r.stdout)
    assert.equal("", r.stderr)
  end)

  it("math.huge means no deadline", function()
    assert.equal(1, coil.timeout(math.huge, function() coil.sleep(0.001) return 1 end))
  end)

  it("rejects bad arguments", function()
    assert.matches("^coil: timeout expects a non%-negative number of seconds, got %-1",
      error_of(coil.timeout, -1, print))
    assert.matches("^coil: timeout expects a non%-negative number of seconds, got [%-]?nan",
      error_of(coil.timeout, 0 / 0, print))
    assert.matches("^coil: timeout expects a number of seconds, got string",
      error_of(coil.timeout, "1", print))
    assert.matches("^coil: timeout expects a function, got nil", error_of(coil.timeout, 1))
  end)

  -- The core passes an owner's cancellation on to the task it awaits; when
  -- that arrives while the timeout's own (soft) cancellation waits for
  -- delivery, the real one replaces it: a Cancelled, never a Timeout.
  it("an owner's cancellation passed on right after the deadline stays a cancellation", function()
    local seen, owner
    local child = coil.spawn(function()
      local _, e = pcall(coil.timeout, 0.03, function()
        local t = coil.uv.new_timer()
        -- due in the same timer phase as the deadline, just after it
        t:start(30, 0, function()
          t:close()
          owner:cancel("owner")
        end)
        coil.sleep(10)
      end)
      seen = e
      error(e, 0)
    end)
    owner = coil.spawn(function() child:await() end)
    local err = error_of(owner.await, owner)
    assert.is_true(coil.is_cancelled(err))
    assert.is_true(coil.is_cancelled(seen), tostring(seen))
    assert.equal("cancelled: owner", tostring(seen))
  end)
end)

describe("coil.shield", function()
  it("awaits without passing the cancellation on", function()
    local log = {}
    local work = worker(log, "work", 0.03, "kept")
    local s = coil.spawn(coil.shield, work)
    turns(2)
    s:cancel()
    assert.is_true(coil.is_cancelled(error_of(s.await, s)))
    assert.is_false(work:done())
    assert.equal("kept", work:await())
  end)

  it("returns the results, or raises the error", function()
    assert.equal(3, coil.shield(coil.spawn(function() return 3 end)))
    assert.equal("e", error_of(coil.shield, coil.spawn(function() error("e", 0) end)))
  end)
end)

describe("coil.call_later", function()
  it("runs fn(...) as a task after s seconds", function()
    local t0 = coil.now()
    local got, ran_in
    local h = coil.call_later(0.02, function(a, b)
      got = { a, b }
      ran_in = coil.current()
    end, "x", "y")
    assert.is_nil(h:task())
    coil.sleep(0.04)
    assert.same({ "x", "y" }, got)
    assert.equal(h:task(), ran_in)
    assert.is_true(h:task():done())
    assert.is_false(h:cancel()) -- already started
    assert.is_true(coil.now() - t0 >= 0.02)
  end)

  it("never runs once cancelled", function()
    local ran = false
    local h = coil.call_later(0.01, function() ran = true end)
    assert.is_true(h:cancel())
    assert.is_false(h:cancel())
    coil.sleep(0.03)
    assert.is_false(ran)
  end)

  it("works outside tasks", function()
    local ran = false
    after(1, function() coil.call_later(0, function() ran = true end) end)
    eventually(function() return ran end)
    assert.is_true(ran)
  end)

  it("rejects bad arguments", function()
    assert.matches("^coil: call_later expects a non%-negative number of seconds",
      error_of(coil.call_later, -0.5, print))
    assert.matches("^coil: call_later expects a function", error_of(coil.call_later, 1, 2))
  end)
end)

describe("the classic scenario: wait does not own, gather does", function()
  it("cancelling a task in coil.wait({work}) lets the work complete", function()
    local log = {}
    local work = worker(log, "work", 0.03, 42)
    local waiter = coil.spawn(coil.wait, { work })
    turns(2)
    waiter:cancel()
    assert.is_true(coil.is_cancelled(error_of(waiter.await, waiter)))
    assert.equal(42, work:await())
    assert.same({ "work finished", "work cleaned" }, log)
  end)

  it("cancelling a task in coil.gather(work) cancels the work", function()
    local log = {}
    local work = worker(log, "work", 0.03, 42)
    local gatherer = coil.spawn(coil.gather, work)
    turns(2)
    gatherer:cancel()
    assert.is_true(coil.is_cancelled(error_of(gatherer.await, gatherer)))
    assert.is_true(work:cancelled())
    assert.same({ "work cleaned" }, log)
  end)
end)

describe("the combinator examples", function()
  it("gather_vs_wait.lua shows wait leaving the work alone and gather owning it", function()
    local r = proc.run({ "examples/gather_vs_wait.lua" })
    assert.equal(0, r.code)
    assert.equal("", r.stderr)
    assert.matches("waiter: cancelled: changed my mind\n   work A still running: true\n"
      .. "   work A: finished", r.stdout, 1, true)
    assert.matches("work B: cleanup done\n   gatherer: cancelled: changed my mind\n"
      .. "   work B cancelled: true", r.stdout, 1, true)
    assert.matches("work C: cleanup done\n   gather raised: work D failed", r.stdout, 1, true)
    assert.matches("slots: work E's result | work F failed", r.stdout, 1, true)
  end)

  it("wait_any.lua races three ways", function()
    local r = proc.run({ "examples/wait_any.lua" })
    assert.equal(0, r.code)
    assert.equal("", r.stderr)
    assert.matches('race returned: #1 won with "42 bytes"', r.stdout, 1, true)
    assert.matches("download: cleanup done\n   race returned: #2 won with \"connection lost\"",
      r.stdout, 1, true)
    assert.matches("watcher: cleanup done\n   race raised: cancelled: user pressed stop",
      r.stdout, 1, true)
  end)
end)
