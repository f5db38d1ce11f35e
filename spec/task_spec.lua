-- The task core (SPEC §4 Tasks, Time, Cleanup), run inside coil's main task.
local coil = require "coil"

describe("coil.spawn", function()
  it("runs the function with its arguments on the next loop turn", function()
    local ran = false
    local t = coil.spawn(function(a, b)
      ran = true
      return a + b
    end, 2, 3)
    assert.is_false(ran)
    assert.equal(5, t:await())
    assert.is_true(ran)
  end)

  it("runs ready tasks in FIFO order, before the spawner resumes", function()
    local order = {}
    for i = 1, 3 do
      coil.spawn(function() order[#order + 1] = i end)
    end
    order[#order + 1] = "spawner"
    coil.sleep(0)
    assert.same({ "spawner", 1, 2, 3 }, order)
  end)

  it("returns every result, nils included", function()
    local t = coil.spawn(function() return 1, nil, 3 end)
    local a, b, c = t:await()
    assert.same({ 1, nil, 3 }, { a, b, c })
    assert.equal(3, select("#", t:result()))
  end)

  it("requires a function", function()
    assert.has_error(function() coil.spawn(42) end)
  end)

  it("rejects bad arguments with one coil: line, as the Lua half does", function()
    local t = coil.spawn(function() end)
    local cases = {
      { "coil: spawn expects a function, got number", coil.spawn, 42 },
      { "coil: defer expects a function, got table", coil.defer, {} },
      { "coil: on_error expects a function or nil, got string", coil.on_error, "x" },
      { "coil: task:name expects a string, got table", t.name, t, {} },
      { "coil: task:on_done expects a function, got boolean", t.on_done, t, true },
      { "coil: task:cancel expects a reason (a string) or nothing, got table", t.cancel, t, {} },
      { "coil: Cancelled expects a reason (a string) or nothing, got boolean", coil.Cancelled, true },
      { "coil: Timeout expects a number of seconds or nothing, got table", coil.Timeout, {} },
      { "coil: Interrupted expects a signal name or nothing, got table", coil.Interrupted, {} },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(table.unpack(c, 2))
      assert.is_false(ok)
      assert.equal(c[1], err)
    end
    t:name(7) -- a number is a name, as Lua's own string arguments take it
    assert.equal("7", t:name())
    coil.wait({ t })
  end)
end)

describe("coil.current", function()
  it("is the running task, and nil outside tasks", function()
    local inner
    local t = coil.spawn(function() inner = coil.current() end)
    t:await()
    assert.equal(t, inner)
    assert.is_not_nil(coil.current())
    local outside = "unset"
    local timer = coil.uv.new_timer()
    local done = coil.event()
    timer:start(1, 0, function()
      outside = coil.current()
      timer:close()
      done:set()
    end)
    done:wait()
    assert.is_nil(outside)
  end)
end)

describe("coil.sleep", function()
  it("suspends for about the given time", function()
    local t0 = coil.now()
    coil.sleep(0.05)
    local elapsed = coil.now() - t0
    assert.is_true(elapsed >= 0.045, "slept " .. elapsed)
    assert.is_true(elapsed < 2, "slept " .. elapsed)
  end)

  it("wakes sleepers in deadline order, ties in sleep order", function()
    local order = {}
    for _, d in ipairs { 0.03, 0.01, 0.02, 0.01 } do
      coil.spawn(function()
        coil.sleep(d)
        order[#order + 1] = d
      end)
    end
    coil.sleep(0.06)
    assert.same({ 0.01, 0.01, 0.02, 0.03 }, order)
  end)

  it("sleep(0) lets the loop poll for I/O before resuming", function()
    local fired = false
    local idle = coil.uv.new_check()
    idle:start(function() fired = true end)
    coil.sleep(0)
    idle:close()
    assert.is_true(fired)
  end)

  it("rejects bad durations with one clear line", function()
    for _, bad in ipairs { -1, "x", 0 / 0 } do
      local ok, err = pcall(coil.sleep, bad)
      assert.is_false(ok)
      assert.matches("^coil: sleep expects a", err)
    end
  end)

  it("must be called from inside a task", function()
    local err
    local timer = coil.uv.new_timer()
    local done = coil.event()
    timer:start(1, 0, function()
      err = select(2, pcall(coil.sleep, 1))
      timer:close()
      done:set()
    end)
    done:wait()
    assert.equal("coil: sleep must be called from inside a task", err)
  end)

  it("awaits from a coroutine nested in a task (SPEC §7)", function()
    local co = coroutine.wrap(function() return pcall(coil.sleep, 0) end)
    assert.is_true((co()))
  end)
end)

describe("coil.now", function()
  it("is a monotonic clock in seconds", function()
    local a = coil.now()
    coil.sleep(0.01)
    assert.is_true(coil.now() >= a)
    assert.equal("number", type(a))
  end)
end)

describe("task:await", function()
  it("raises the task's error", function()
    local t = coil.spawn(function() error({ code = 7 }) end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.same({ code = 7 }, err)
  end)

  it("raises Cancelled for a cancelled task", function()
    local t = coil.spawn(function() coil.sleep(10) end)
    coil.sleep(0)
    t:cancel("stop")
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.is_true(coil.is_cancelled(err))
    assert.equal("cancelled: stop", tostring(err))
  end)

  it("refuses a task awaiting itself", function()
    local t = coil.spawn(function() return pcall(coil.current().await, coil.current()) end)
    local ok, err = t:await()
    assert.is_false(ok)
    assert.equal("coil: a task cannot await itself", err)
  end)

  it("owns: cancelling the awaiter cancels the awaited, after its cleanup", function()
    local log = {}
    local child = coil.spawn(function()
      coil.defer(function()
        coil.sleep(0.01)
        log[#log + 1] = "child cleanup"
      end)
      coil.sleep(10)
    end)
    local parent = coil.spawn(function()
      local ok, err = pcall(child.await, child)
      log[#log + 1] = "parent saw " .. tostring(err)
      error(err, 0)
    end)
    coil.sleep(0)
    parent:cancel()
    assert.has_error(function() parent:await() end)
    assert.same({ "child cleanup", "parent saw cancelled" }, log)
    assert.is_true(child:cancelled())
  end)

  it("wakes several awaiters in the order they came", function()
    local order = {}
    local t = coil.spawn(function() coil.sleep(0.01) return "v" end)
    for i = 1, 3 do
      coil.spawn(function()
        local v = t:await()
        order[#order + 1] = i .. v
      end)
    end
    coil.sleep(0.03)
    assert.same({ "1v", "2v", "3v" }, order)
  end)
end)

describe("coil.shield", function()
  it("awaits without passing the cancellation on", function()
    local child = coil.spawn(function() coil.sleep(0.02) return "kept" end)
    local parent = coil.spawn(function() return coil.shield(child) end)
    coil.sleep(0)
    parent:cancel()
    assert.has_error(function() parent:await() end)
    assert.is_false(child:done())
    assert.equal("kept", child:await())
  end)
end)

describe("task:cancel", function()
  it("returns false for a task already done", function()
    local t = coil.spawn(function() end)
    t:await()
    assert.is_false(t:cancel())
  end)

  it("is edge-triggered: one Cancelled per call", function()
    local caught = 0
    local t = coil.spawn(function()
      for _ = 1, 3 do
        local ok = pcall(coil.sleep, 10)
        if not ok then caught = caught + 1 end
      end
      return caught
    end)
    coil.sleep(0)
    t:cancel()
    coil.sleep(0)
    t:cancel()
    coil.sleep(0)
    assert.is_false(t:done())
    t:cancel()
    assert.equal(3, t:await())
  end)

  it("collapses cancellations not yet delivered", function()
    local caught = 0
    local t = coil.spawn(function()
      for _ = 1, 2 do
        if not pcall(coil.sleep, 0.02) then caught = caught + 1 end
      end
    end)
    t:cancel()
    t:cancel()
    t:await()
    assert.equal(1, caught)
  end)

  it("reaches a ready task at its next await", function()
    local steps = {}
    local t = coil.spawn(function()
      steps[#steps + 1] = "started"
      local ok, err = pcall(coil.sleep, 0)
      steps[#steps + 1] = tostring(err)
    end)
    t:cancel("early")
    t:await()
    assert.same({ "started", "cancelled: early" }, steps)
  end)

  it("warns when a task swallows its cancellation", function()
    -- checked through the CLI: see cli_spec; here only the state
    local t = coil.spawn(function() pcall(coil.sleep, 1) return "swallowed" end)
    coil.sleep(0)
    t:cancel()
    assert.equal("swallowed", t:await())
    assert.is_false(t:cancelled())
  end)
end)

describe("task state", function()
  it("answers done, cancelled, result, error without blocking", function()
    local t = coil.spawn(function() coil.sleep(0.01) return 1 end)
    assert.is_false(t:done())
    assert.is_false(t:cancelled())
    assert.is_nil(t:error())
    assert.has_error(function() t:result() end, "coil: task '" .. t:name() .. "' is not done")
    t:await()
    assert.is_true(t:done())
    assert.equal(1, t:result())
    local bad = coil.spawn(function() error("bad", 0) end)
    coil.sleep(0)
    assert.equal("bad", bad:error())
    assert.has_error(function() bad:result() end, "bad")
  end)

  it("names tasks", function()
    local t = coil.spawn(function() end)
    assert.matches("^task%-%d+$", t:name())
    assert.equal(t, t:name("worker"))
    assert.equal("worker", t:name())
    assert.matches("worker", tostring(t))
    t:await()
    assert.equal("main", coil.tasks()[1]:name())
  end)

  it("calls on_done once done, or at once if already done", function()
    local seen = {}
    local t = coil.spawn(function() coil.sleep(0) end)
    t:on_done(function(task) seen[#seen + 1] = task end)
    t:await()
    t:on_done(function(task) seen[#seen + 1] = task end)
    assert.same({ t, t }, seen)
  end)

  it("lists live tasks", function()
    local t = coil.spawn(function() coil.sleep(0.01) end)
    local live = coil.tasks()
    assert.equal(2, #live)
    assert.equal(t, live[2])
    t:await()
    assert.equal(1, #coil.tasks())
  end)
end)

describe("cleanup", function()
  it("runs defers newest first, with their arguments, however the task ends", function()
    for _, ending in ipairs { "return", "error", "cancel" } do
      local log = {}
      local t = coil.spawn(function()
        coil.defer(function(x) log[#log + 1] = x end, "first")
        coil.defer(function(x, y) log[#log + 1] = x .. y end, "sec", "ond")
        if ending == "error" then error("e") end
        coil.sleep(ending == "cancel" and 10 or 0)
      end)
      coil.sleep(0)
      if ending == "cancel" then t:cancel() end
      pcall(t.await, t)
      assert.same({ "second", "first" }, log, ending)
    end
  end)

  it("lets defers await", function()
    local done = false
    local t = coil.spawn(function()
      coil.defer(function()
        coil.sleep(0.01)
        done = true
      end)
      coil.sleep(10)
    end)
    coil.sleep(0)
    t:cancel()
    pcall(t.await, t)
    assert.is_true(done)
  end)

  it("runs the next defer when one fails", function()
    local ran = false
    local t = coil.spawn(function()
      coil.defer(function() ran = true end)
      coil.defer(function() error("defer failure (expected by the test)") end)
    end)
    t:await()
    assert.is_true(ran)
  end)

  it("closes <close> variables on cancellation, and they may await", function()
    local log = {}
    local t = coil.spawn(function()
      local _ <close> = setmetatable({}, { __close = function()
        coil.sleep(0.01)
        log[#log + 1] = "closed"
      end })
      coil.sleep(10)
    end)
    coil.sleep(0)
    t:cancel()
    pcall(t.await, t)
    assert.same({ "closed" }, log)
  end)

  it("must be inside a task", function()
    local err
    local timer = coil.uv.new_timer()
    local done = coil.event()
    timer:start(1, 0, function()
      err = select(2, pcall(coil.defer, print))
      timer:close()
      done:set()
    end)
    done:wait()
    assert.equal("coil: defer must be called from inside a task", err)
  end)
end)

describe("error objects", function()
  it("Cancelled and Timeout have readable forms and are recognised", function()
    local c, c2 = coil.Cancelled(), coil.Cancelled("SIGINT")
    assert.equal("cancelled", tostring(c))
    assert.equal("cancelled: SIGINT", tostring(c2))
    assert.is_true(coil.is_cancelled(c))
    assert.is_false(coil.is_cancelled("cancelled"))
    local t = coil.Timeout(2)
    assert.equal("timeout after 2.0 s", tostring(t))
    assert.is_true(coil.is_timeout(t))
    assert.is_false(coil.is_timeout(c))
    assert.is_false(coil.is_cancelled(t))
  end)
end)

describe("coil.on_error", function()
  it("replaces the reporter of errors nobody saw", function()
    local got
    coil.on_error(function(task, err, tb)
      got = { task = task, err = err, tb = tb }
    end)
    local t = coil.spawn(function() error("unseen", 0) end)
    coil.sleep(0)
    t = nil
    collectgarbage()
    collectgarbage()
    coil.on_error(nil)
    assert.is_not_nil(got)
    assert.equal("unseen", got.err)
    assert.matches("stack traceback of task", got.tb)
  end)
end)

-- coil reuses the coroutine of a finished task for a later spawn when no
-- Lua code can tell (docs/internals.md, "Reusing coroutines").
describe("a finished task's coroutine", function()
  -- enough finished tasks that any pool of coroutines is filled and drawn on
  local function churn(n)
    local tasks = {}
    for i = 1, n do tasks[i] = coil.spawn(function(x) coil.sleep(0) return x end, i) end
    for i = 1, n do assert.equal(i, tasks[i]:await()) end
  end

  it("stays dead when the task gave it to Lua code", function()
    local co
    coil.spawn(function() co = coroutine.running() end):await()
    local tasks = {}
    for i = 1, 300 do tasks[i] = coil.spawn(coil.sleep, 0.001) end
    assert.equal("dead", coroutine.status(co)) -- no task of those starts in it
    coil.sleep(0)
    assert.equal("dead", coroutine.status(co)) -- nor waits in it
    for i = 1, 300 do tasks[i]:await() end
    churn(300)
    assert.equal("dead", coroutine.status(co))
    local ok, err = coroutine.resume(co)
    assert.is_false(ok)
    assert.equal("cannot resume dead coroutine", err)
  end)

  it("runs each later task from its start, whatever the one before did", function()
    local function ends(i)
      coil.defer(function() end)
      local _ <close> = setmetatable({}, { __close = function() end })
      coil.sleep(0)
      if i % 3 == 0 then error("boom " .. i, 0) end
      if i % 3 == 1 then coil.sleep(10) end -- cancelled below
      return i, coil.current():name()
    end
    for _ = 1, 2 do
      local tasks = {}
      for i = 1, 300 do tasks[i] = coil.spawn(ends, i) end
      coil.sleep(0)
      for i = 1, 300, 3 do tasks[i]:cancel() end
      for i = 1, 300 do
        local ok, a, b = pcall(tasks[i].await, tasks[i])
        if i % 3 == 0 then
          assert.same({ false, "boom " .. i }, { ok, a })
        elseif i % 3 == 1 then
          assert.is_false(ok)
          assert.is_true(coil.is_cancelled(a))
        else
          assert.same({ true, i, tasks[i]:name() }, { ok, a, b })
        end
      end
    end
  end)

  it("does not carry a debug hook its task set into another task", function()
    local calls = 0
    coil.spawn(function()
      debug.sethook(function() calls = calls + 1 end, "c")
    end):await()
    calls = 0
    local function f() end
    local t = coil.spawn(function() for _ = 1, 10 do f() end end)
    t:await()
    assert.equal(0, calls)
  end)
end)

describe("coil.tasks and coil.current as tasks end in any order", function()
  it("list exactly the live tasks, each still itself", function()
    local selves, alive = {}, {}
    local tasks = {}
    for i = 1, 60 do
      tasks[i] = coil.spawn(function()
        selves[i] = coil.current()
        coil.sleep(1)
      end)
      alive[tasks[i]] = true
    end
    local mine = {}
    for _, t in ipairs(tasks) do mine[t] = true end
    coil.sleep(0)
    local order = {}
    for i = 1, 60 do order[i] = i end
    local seed = 7
    for i = 60, 2, -1 do -- a fixed shuffle: ends from the middle, both ends
      seed = (seed * 1103515245 + 12345) % 2147483648
      local j = seed % i + 1
      order[i], order[j] = order[j], order[i]
    end
    for _, i in ipairs(order) do
      assert.equal(tasks[i], selves[i])
      tasks[i]:cancel()
      pcall(tasks[i].await, tasks[i])
      alive[tasks[i]] = nil
      local listed = {}
      for _, t in ipairs(coil.tasks()) do
        if mine[t] then
          assert.is_true(alive[t], tostring(t))
          listed[t] = true
        end
      end
      for t in pairs(alive) do assert.is_true(listed[t], tostring(t)) end
    end
  end)
end)
