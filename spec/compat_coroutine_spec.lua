-- Transparent coroutines (SPEC §7): awaiting inside user coroutines.
local coil = require "coil"
local coil_core = require "coil.core"
local proc = require "spec.support.proc"

describe("a coroutine inside a task", function()
  it("is a generator that awaits between yields, in a for loop", function()
    local function ticks(n)
      return coroutine.wrap(function()
        for i = 1, n do
          coil.sleep(0.001)
          coroutine.yield(i, i * i)
        end
      end)
    end
    local seen = {}
    for i, sq in ticks(4) do seen[#seen + 1] = i .. ":" .. sq end
    assert.equal("1:1 2:4 3:9 4:16", table.concat(seen, " "))
  end)

  it("iterates over stream:read_line()", function()
    local server = assert(coil.net.listen("127.0.0.1", 0, function(stream)
      for _, line in ipairs { "alpha", "beta", "gamma" } do
        stream:write(line .. "\n")
        coil.sleep(0.001)
      end
      stream:close()
    end))
    local _, port = server:address()
    local stream <close> = assert(coil.net.connect("127.0.0.1", port))
    local function lines(s)
      return coroutine.wrap(function()
        while true do
          local line = s:read_line()
          if not line then return end
          coroutine.yield(line)
        end
      end)
    end
    local got = {}
    for line in lines(stream) do got[#got + 1] = line end
    server:close()
    assert.same({ "alpha", "beta", "gamma" }, got)
  end)

  it("gives user yields to the user's resume, unchanged", function()
    local co = coroutine.create(function(a)
      coil.sleep(0)
      local b, c = coroutine.yield(a, nil, 3)
      coil.sleep(0)
      return b .. c
    end)
    local r = table.pack(coroutine.resume(co, 1))
    assert.same({ true, 1, nil, 3, n = 4 }, r)
    assert.same({ true, "xy" }, { coroutine.resume(co, "x", "y") })
    assert.equal("dead", coroutine.status(co))
  end)

  it("passes an await through nested coroutines", function()
    local inner = coroutine.wrap(function()
      coil.sleep(0.001)
      coroutine.yield "inner"
    end)
    local outer = coroutine.wrap(function()
      coroutine.yield(inner())
      coil.sleep(0.001)
      coroutine.yield "outer"
    end)
    assert.equal("inner", outer())
    assert.equal("outer", outer())
  end)

  it("sees the enclosing task as coil.current()", function()
    local me = coil.current()
    local co = coroutine.wrap(function()
      coil.sleep(0)
      return coil.current()
    end)
    assert.equal(me, co())
  end)

  it("runs gather and awaits other tasks from inside", function()
    local co = coroutine.wrap(function()
      return coil.gather(function() coil.sleep(0.001) return 1 end,
                         function() return 2 end)
    end)
    assert.same({ 1, 2 }, { co() })
  end)

  it("raises errors after an await with the position, as wrap does", function()
    local co = coroutine.wrap(function()
      coil.sleep(0)
      error("boom")
    end)
    local ok, err = pcall(co)
    assert.is_false(ok)
    assert.matches("compat_coroutine_spec.lua:%d+: boom", err)
  end)
end)

describe("a task as seen by coroutine.*", function()
  it("looks like a main thread at its top", function()
    local t = coil.spawn(function()
      local co, main = coroutine.running()
      local ok, err = pcall(coroutine.yield)
      return co, main, coroutine.isyieldable(), ok, err
    end)
    local co, main, yieldable, ok, err = t:await()
    assert.equal("thread", type(co))
    assert.is_true(main)
    assert.is_false(yieldable)
    assert.is_false(ok)
    assert.equal("attempt to yield from outside a coroutine", err)
  end)

  it("leaves coroutines inside it as they are", function()
    local co = coroutine.wrap(function()
      local _, main = coroutine.running()
      return main, coroutine.isyieldable()
    end)
    assert.same({ false, true }, { co() })
  end)
end)

describe("cancelling a task that waits inside a coroutine", function()
  it("raises Cancelled there: its <close> runs, the task ends cancelled", function()
    local closed, reached = false, false
    local t = coil.spawn(function()
      local gen = coroutine.wrap(function()
        local _ <close> = setmetatable({}, { __close = function()
          closed = true
        end })
        coil.sleep(10)
        reached = true
      end)
      gen()
    end)
    coil.sleep(0.01)
    t:cancel("stop")
    assert.is_true(coil.is_cancelled(select(2, pcall(t.await, t))))
    assert.is_true(t:cancelled())
    assert.is_true(closed)
    assert.is_false(reached)
  end)

  it("closes a coroutine.resume'd one that Cancelled unwound", function()
    local closed = false
    local co = coroutine.create(function()
      local _ <close> = setmetatable({}, { __close = function()
        closed = true
      end })
      coil.sleep(10)
    end)
    local t = coil.spawn(function()
      local ok, err = coroutine.resume(co)
      assert(not ok)
      error(err, 0) -- pass the cancellation on
    end)
    coil.sleep(0.01)
    t:cancel()
    pcall(t.await, t)
    assert.is_true(t:cancelled())
    assert.is_true(closed)
    assert.equal("dead", coroutine.status(co))
  end)

  it("times out inside a generator", function()
    local closed = false
    local ok, err = pcall(coil.timeout, 0.02, function()
      local gen = coroutine.wrap(function()
        local _ <close> = setmetatable({}, { __close = function()
          closed = true
        end })
        while true do
          coil.sleep(0.005)
          coroutine.yield(1)
        end
      end)
      for _ in gen do end
    end)
    assert.is_false(ok)
    assert.is_true(coil.is_timeout(err))
    assert.is_true(closed)
  end)
end)

describe("a coroutine a task waits in", function()
  local function parked()
    local co = coroutine.create(function()
      coil.sleep(10)
    end)
    local t = coil.spawn(function()
      local ok, err = coroutine.resume(co)
      if not ok then error(err, 0) end
    end)
    coil.sleep(0.01)
    return co, t
  end

  it("cannot be resumed from another task", function()
    local co, t = parked()
    local ok, err = pcall(coroutine.resume, co)
    assert.is_false(ok)
    assert.matches("coil: cannot resume a coroutine that is waiting inside task 'task%-%d+'", err)
    t:cancel()
    pcall(t.await, t)
  end)

  it("cannot be closed from another task", function()
    local co, t = parked()
    local ok, err = pcall(coroutine.close, co)
    assert.is_false(ok)
    assert.matches("coil: cannot close a coroutine that is waiting", err)
    t:cancel()
    pcall(t.await, t)
  end)

  it("is dead once its task ended, and says so", function()
    local co, t = parked()
    t:cancel()
    pcall(t.await, t)
    assert.same({ false, "cannot resume dead coroutine" },
                { coroutine.resume(co) })
  end)

  it("is where the task's traceback points", function()
    local co, t = parked()
    local tb = coil_core.traceback(t)
    assert.matches("compat_coroutine_spec.lua:" .. debug.getinfo(parked).linedefined + 2, tb)
    assert.matches("coroutine.resume", tb)
    t:cancel()
    pcall(t.await, t)
    assert.equal("dead", coroutine.status(co))
  end)

  it("is never a task's own coroutine: resuming or closing that raises",
     function()
    local co
    local t = coil.spawn(function()
      co = coroutine.running()
      coil.sleep(0.02)
      return "untouched"
    end)
    coil.sleep(0.005)
    local ok, err = pcall(coroutine.resume, co, "junk")
    assert.is_false(ok)
    assert.matches("coil: cannot resume a task's own coroutine", err)
    ok, err = pcall(coroutine.close, co)
    assert.is_false(ok)
    assert.matches("coil: cannot close a task's own coroutine", err)
    assert.equal("untouched", t:await())
  end)

  it("goes on in another task once it yielded normally", function()
    local gen = coroutine.wrap(function()
      coroutine.yield(1)
      coil.sleep(0.001)
      coroutine.yield(coil.current())
    end)
    local first = coil.spawn(gen):await()
    assert.equal(1, first)
    local t = coil.spawn(gen)
    assert.equal(t, t:await())
  end)
end)

describe("a task closed by force inside a coroutine", function()
  it("closes the coroutine too: its <close> runs", function()
    local p = proc.coil({ "--grace", "0.2", "spec/fixtures/compat_forced_inner.lua" })
    assert.is_true(p:wait_for("ready"))
    p:kill("sigint")
    local r = p:wait()
    assert.equal(2, r.signal)
    assert.matches("inner closed", r.stdout)
    assert.matches("closed by force", r.stderr)
    -- the report shows where it waits: inside the coroutine
    assert.matches("compat_forced_inner.lua:9: in function", r.stderr)
  end)
end)

describe("the busy-task interrupt", function()
  it("reaches a loop that runs inside a coroutine", function()
    local p = proc.coil({ "spec/fixtures/compat_busy_inner.lua" })
    assert.is_true(p:wait_for("ready"))
    p:kill("sigint")
    local r = p:wait()
    assert.equal(2, r.signal) -- died by SIGINT
    assert.matches("closed inner", r.stdout)
  end)
end)
