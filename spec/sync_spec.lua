-- Synchronisation (SPEC §4 "Synchronisation"): event, queue, semaphore,
-- lock. FIFO service, and a cancelled waiter leaves no trace.
local coil = require "coil"
local util = require "spec.support.util"
local turns = util.turns
local error_of = util.error_of
local uv = require "luv"

-- The error fn raises when called outside any task (from a luv callback).
local function error_outside(fn, ...)
  local args, err = table.pack(...), nil
  local timer = uv.new_timer()
  timer:start(0, 0, function()
    timer:close()
    err = select(2, pcall(fn, table.unpack(args, 1, args.n)))
  end)
  for _ = 1, 500 do
    if err then break end
    coil.sleep(0.01)
  end
  return err
end

describe("coil.event", function()
  it("set wakes every waiter, in the order they came", function()
    local e, order = coil.event(), {}
    for i = 1, 3 do
      coil.spawn(function()
        e:wait()
        order[#order + 1] = i
      end)
    end
    turns(2)
    assert.equal(3, e:_waiting())
    assert.is_false(e:is_set())
    e:set()
    assert.is_true(e:is_set())
    turns(2)
    assert.same({ 1, 2, 3 }, order)
    assert.equal(0, e:_waiting())
  end)

  it("a set event returns at once; clear makes waits block again", function()
    local e = coil.event()
    e:set()
    assert.is_true(e:wait())
    e:clear()
    assert.is_false(e:is_set())
    local t = coil.spawn(e.wait, e)
    turns(2)
    assert.is_false(t:done())
    e:set()
    assert.is_true(t:await())
  end)

  it("a cancelled waiter leaves no trace", function()
    local e = coil.event()
    local a = coil.spawn(e.wait, e)
    local b = coil.spawn(e.wait, e)
    turns(2)
    a:cancel()
    e:set() -- same turn: a is no longer parked and is skipped
    assert.is_true(coil.is_cancelled(select(2, pcall(a.await, a))))
    assert.is_true(b:await())
    assert.equal(0, e:_waiting())
  end)

  it("wait must be called from inside a task", function()
    assert.equal("coil: event:wait must be called from inside a task",
      error_outside(coil.event().wait, coil.event()))
    assert.matches("coil.event %(clear%)", tostring(coil.event()))
  end)
end)

describe("coil.queue", function()
  it("is FIFO and unbounded by default", function()
    local q = coil.queue()
    for i = 1, 100 do assert.is_true(q:put(i)) end
    assert.equal(100, q:size())
    for i = 1, 100 do assert.equal(i, q:get()) end
    assert.equal(0, q:size())
  end)

  it("a bounded queue makes put wait while full", function()
    local q = coil.queue(2)
    q:put(1)
    q:put(2)
    assert.is_false(q:try_put(3))
    local putter = coil.spawn(q.put, q, 3)
    turns(2)
    assert.is_false(putter:done())
    assert.equal(2, q:size())
    assert.equal(1, q:get())
    -- the waiting putter's item moved in at once, in order
    assert.equal(2, q:size())
    assert.is_true(putter:await())
    assert.same({ 2, 3 }, { q:get(), q:get() })
  end)

  it("get waits while empty, and getters are served in the order they came", function()
    local q, got = coil.queue(), {}
    for i = 1, 3 do
      coil.spawn(function() got[i] = q:get() end)
    end
    turns(2)
    for _, v in ipairs({ "a", "b", "c" }) do q:put(v) end
    turns(2)
    assert.same({ "a", "b", "c" }, got)
  end)

  it("putters are served in the order they came", function()
    local q = coil.queue(1)
    q:put(0)
    for i = 1, 3 do coil.spawn(q.put, q, i) end
    turns(2)
    local got = {}
    for _ = 1, 4 do got[#got + 1] = q:get() end
    assert.same({ 0, 1, 2, 3 }, got)
    turns(1)
  end)

  it("try_put and try_get never wait", function()
    local q = coil.queue(1)
    assert.same({ nil, "empty" }, { q:try_get() })
    assert.is_true(q:try_put("x"))
    assert.is_false(q:try_put("y"))
    assert.equal("x", q:try_get())
  end)

  describe("close", function()
    it("get drains what is left, then returns nil, \"closed\"", function()
      local q = coil.queue()
      q:put(1)
      q:put(2)
      q:close()
      q:close() -- idempotent
      assert.is_true(q:is_closed())
      assert.equal(1, q:get())
      assert.equal(2, q:try_get())
      assert.same({ nil, "closed" }, { q:get() })
      assert.same({ nil, "closed" }, { q:try_get() })
    end)

    it("wakes waiting getters with nil, \"closed\"", function()
      local q = coil.queue()
      local a = coil.spawn(function() return table.pack(q:get()) end)
      turns(2)
      q:close()
      local r = a:await()
      assert.equal(2, r.n)
      assert.same({ nil, "closed" }, { r[1], r[2] })
    end)

    it("put on a closed queue raises, and so does a putter waiting at close", function()
      local q = coil.queue(1)
      q:put(1)
      local waiting = coil.spawn(q.put, q, 2)
      turns(2)
      q:close()
      assert.equal("coil: put on a closed queue", error_of(waiting.await, waiting))
      assert.matches("^coil: put on a closed queue", error_of(q.put, q, 3))
      assert.matches("^coil: try_put on a closed queue", error_of(q.try_put, q, 3))
      assert.equal(1, q:get()) -- the waiting putter's item was not taken
      assert.same({ nil, "closed" }, { q:get() })
    end)
  end)

  describe("a cancelled waiter never swallows an item", function()
    it("getter cancelled, then an item arrives in the same turn: the item stays", function()
      local q = coil.queue()
      local a = coil.spawn(q.get, q)
      local b = coil.spawn(q.get, q)
      turns(2)
      a:cancel()
      q:put("item")
      assert.is_true(coil.is_cancelled(select(2, pcall(a.await, a))))
      assert.equal("item", b:await())
    end)

    it("item handed over, then the getter is cancelled: it still gets the item", function()
      local q = coil.queue()
      local got
      local a = coil.spawn(function()
        got = q:get()
        coil.sleep(10) -- the cancellation arrives here
      end)
      turns(2)
      q:put("item")
      a:cancel()
      assert.is_true(coil.is_cancelled(select(2, pcall(a.await, a))))
      assert.equal("item", got)
      assert.equal(0, q:size())
    end)

    it("a cancelled putter's item is not in the queue; the next putter goes in", function()
      local q = coil.queue(1)
      q:put(0)
      local a = coil.spawn(q.put, q, "a")
      local b = coil.spawn(q.put, q, "b")
      turns(2)
      a:cancel()
      assert.equal(0, q:get())
      assert.is_true(coil.is_cancelled(select(2, pcall(a.await, a))))
      assert.is_true(b:await())
      assert.equal("b", q:get())
      assert.equal(0, q:size())
    end)
  end)

  it("rejects bad arguments", function()
    local q = coil.queue()
    assert.matches("^coil: queue:put: the item must not be nil", error_of(q.put, q, nil))
    assert.matches("^coil: queue: maxsize must be a non%-negative integer, got %-1",
      error_of(coil.queue, -1))
    assert.matches("^coil: queue: maxsize must be a non%-negative integer, got 1.5",
      error_of(coil.queue, 1.5))
    assert.equal("coil: queue:get must be called from inside a task", error_outside(q.get, q))
    assert.matches("coil.queue %(0 item%(s%), max 3%)", tostring(coil.queue(3)))
  end)
end)

describe("coil.semaphore", function()
  it("lets n holders in at once", function()
    local s = coil.semaphore(2)
    local inside, most = 0, 0
    local tasks = {}
    for i = 1, 6 do
      tasks[i] = coil.spawn(s.with, s, function()
        inside = inside + 1
        most = math.max(most, inside)
        coil.sleep(0.005)
        inside = inside - 1
      end)
    end
    coil.gather(tasks)
    assert.equal(2, most)
    assert.equal(2, s:value())
  end)

  it("serves waiters in the order they came", function()
    local s, order = coil.semaphore(1), {}
    s:acquire()
    for i = 1, 4 do
      coil.spawn(function()
        s:acquire()
        order[#order + 1] = i
        s:release()
      end)
    end
    turns(2)
    s:release()
    turns(6)
    assert.same({ 1, 2, 3, 4 }, order)
    assert.equal(1, s:value())
  end)

  it("with returns fn's results and gives the permit back on error and cancellation", function()
    local s = coil.semaphore(1)
    assert.same({ 1, 2 }, { s:with(function(a) return a, 2 end, 1) })
    assert.equal("e", error_of(s.with, s, function() error("e", 0) end))
    assert.equal(1, s:value())
    local t = coil.spawn(s.with, s, coil.sleep, 10)
    turns(2)
    assert.equal(0, s:value())
    t:cancel()
    pcall(t.await, t)
    assert.equal(1, s:value())
  end)

  it("release beyond the count raises", function()
    local s = coil.semaphore(2)
    assert.matches("^coil: semaphore:release%(%) without a matching acquire %(all 2 permit%(s%) are already free%)",
      error_of(s.release, s))
    s:acquire()
    s:release()
    assert.has_error(function() s:release() end)
  end)

  describe("a cancelled waiter never swallows a permit", function()
    it("cancelled, then a release in the same turn: the next waiter gets it", function()
      local s = coil.semaphore(1)
      s:acquire()
      local a = coil.spawn(s.acquire, s)
      local b = coil.spawn(s.acquire, s)
      turns(2)
      a:cancel()
      s:release()
      assert.is_true(coil.is_cancelled(select(2, pcall(a.await, a))))
      assert.is_true(b:await())
      assert.equal(0, s:value())
      s:release()
      assert.equal(1, s:value())
    end)

    it("permit handed over, then cancelled: with still gives it back", function()
      local s = coil.semaphore(1)
      s:acquire()
      local ran = false
      local a = coil.spawn(s.with, s, function()
        ran = true
        coil.sleep(10)
      end)
      turns(2)
      s:release()
      a:cancel()
      assert.is_true(coil.is_cancelled(select(2, pcall(a.await, a))))
      assert.is_true(ran)
      assert.equal(1, s:value())
    end)
  end)

  it("try_acquire never waits", function()
    local s = coil.semaphore(1)
    assert.is_true(s:try_acquire())
    assert.is_false(s:try_acquire())
    s:release()
  end)

  it("rejects bad arguments", function()
    assert.matches("^coil: semaphore: n must be a non%-negative integer, got %-1",
      error_of(coil.semaphore, -1))
    assert.matches("^coil: semaphore: n must be a non%-negative integer, got nil",
      error_of(coil.semaphore))
    -- a float beyond the integers (its release message once failed in format)
    assert.matches("^coil: semaphore: n must be a non%-negative integer, got 9%.22",
      error_of(coil.semaphore, 2 ^ 63))
    assert.equal("coil.semaphore (3 of 3 free, 0 waiting)", tostring(coil.semaphore(3.0)))
    local s = coil.semaphore(1)
    assert.matches("^coil: semaphore:with expects a function", error_of(s.with, s, 1))
    assert.equal("coil: semaphore:acquire must be called from inside a task",
      error_outside(s.acquire, s))
  end)
end)

describe("coil.lock", function()
  it("is a semaphore of one", function()
    local l, inside, most = coil.lock(), 0, 0
    local tasks = {}
    for i = 1, 4 do
      tasks[i] = coil.spawn(l.with, l, function()
        inside = inside + 1
        most = math.max(most, inside)
        coil.sleep(0)
        inside = inside - 1
      end)
    end
    coil.gather(tasks)
    assert.equal(1, most)
    assert.is_false(l:locked())
    l:acquire()
    assert.is_true(l:locked())
    assert.matches("coil.lock %(held", tostring(l))
    l:release()
  end)

  it("release of a lock not held raises", function()
    local l = coil.lock()
    assert.matches("^coil: lock:release%(%) on a lock that is not held", error_of(l.release, l))
  end)
end)

describe("examples/pipeline.lua", function()
  local proc = require "spec.support.proc"

  it("in bounded mode handles every item and ends by itself", function()
    local r = proc.run({ "examples/pipeline.lua", "10" })
    assert.equal(0, r.code)
    assert.equal("", r.stderr)
    assert.matches("tally: produced 10 = processed 10 + handed back 0 {} + left in queue 0 {}",
      r.stdout, 1, true)
    assert.matches("tally: nothing lost\n$", r.stdout)
  end)

  it("on Ctrl+C stops, drains and loses no item that was taken", function()
    local p = proc.coil({ "examples/pipeline.lua" })
    assert.is_true(p:wait_for "worker 3: processing item")
    p:kill "sigint"
    local r = p:wait()
    assert.equal(2, r.signal)
    assert.matches("shutdown: stopping the producer, closing the queue", r.stdout, 1, true)
    assert.matches("tally: nothing lost\n$", r.stdout)
    assert.matches("^coil: SIGINT received", r.stderr)
    assert.not_matches("failed", r.stderr)
  end)
end)
