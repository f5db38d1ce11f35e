-- coil.move_on_after (SPEC §4): a deadline that ends the work quietly.
-- Every `it` runs inside coil's main task.
local coil = require "coil"
local coil_core = require "coil.core"
local util = require "spec.support.util"
local turns = util.turns
local error_of = util.error_of
local uv = require "luv"

local function after(ms, fn)
  local t = uv.new_timer()
  t:start(ms, 0, function()
    t:close()
    fn()
  end)
end

local function busy(s)
  local t0 = os.clock()
  while os.clock() - t0 < s do end
end

describe("coil.move_on_after", function()
  it("returns true and fn's results when it finishes in time", function()
    assert.same({ true, "a", "b" },
      { coil.move_on_after(1, function(x) coil.sleep(0.01) return x, "b" end, "a") })
    assert.same({ true }, { coil.move_on_after(1, function() end) })
  end)

  it("returns false at the deadline, once the work's cleanup ran", function()
    local log = {}
    local t0 = coil.now()
    local ok, extra = coil.move_on_after(0.02, function()
      local _, e = pcall(coil.sleep, 10)
      log[#log + 1] = "work saw " .. tostring(e)
      coil.sleep(0.01) -- cleanup may await
      log[#log + 1] = "cleanup done"
      error(e, 0)
    end)
    assert.is_false(ok)
    assert.is_nil(extra)
    assert.same({ "work saw cancelled: moved on after 0.02 s", "cleanup done" }, log)
    assert.is_true(coil.now() - t0 >= 0.029)
    coil.sleep(0) -- raises if a cancellation were left over
  end)

  it("cancels a child task the work awaits; its cleanup finishes first", function()
    local cleaned = false
    local child = coil.spawn(function()
      coil.defer(function() coil.sleep(0.01) cleaned = true end)
      coil.sleep(10)
    end)
    assert.is_false(coil.move_on_after(0.01, child.await, child))
    assert.is_true(child:cancelled())
    assert.is_true(cleaned)
  end)

  it("raises fn's own errors", function()
    assert.equal("bad", error_of(coil.move_on_after, 1, function() error("bad", 0) end))
  end)

  it("does not swallow a caught cancellation into a warning", function()
    -- the deadline's Cancelled is consumed by move_on_after itself: the
    -- task returns normally without "swallowed its cancellation"
    local t = coil.spawn(function()
      return coil.move_on_after(0.01, coil.sleep, 10)
    end)
    assert.is_false(t:await())
  end)

  it("lets the work finish in the very turn of the deadline", function()
    local me = coil.current()
    after(30, function() coil_core.wake(me, "woken") end)
    assert.same({ true, "woken" }, { coil.move_on_after(0.03, coil_core.park) })
    coil.sleep(0.01) -- raises if a cancellation were left over
  end)

  describe("a cancellation from outside stays a cancellation", function()
    it("while the work waits", function()
      local t = coil.spawn(coil.move_on_after, 1, coil.sleep, 10)
      turns(2)
      t:cancel("outside")
      assert.equal("cancelled: outside", tostring(error_of(t.await, t)))
    end)

    it("right after the deadline fired", function()
      local t
      t = coil.spawn(function()
        return coil.move_on_after(0.03, function()
          after(30, function() t:cancel("outside") end) -- same phase, just after
          coil.sleep(10)
        end)
      end)
      assert.equal("cancelled: outside", tostring(error_of(t.await, t)))
    end)

    it("right before the deadline", function()
      local t
      t = coil.spawn(function()
        after(30, function() t:cancel("outside") end)
        return coil.move_on_after(0.03, coil.sleep, 10)
      end)
      assert.equal("cancelled: outside", tostring(error_of(t.await, t)))
    end)
  end)

  describe("a cancellation the work swallowed still cancels", function()
    -- the work catches an outside cancellation and goes on until the
    -- deadline's own comes: that is no quiet `false` (nor a Timeout)
    for _, how in ipairs { "move_on_after", "timeout", "group" } do
      it("(" .. how .. ")", function()
        local function work()
          pcall(coil.sleep, 10) -- swallows the outside cancellation
          coil.sleep(10)        -- until the deadline's own
        end
        local t = coil.spawn(function()
          if how == "group" then
            return coil.group(function(g)
              g:spawn(function() coil.sleep(0.05) g:cancel() end)
              work()
            end)
          end
          return coil[how](0.05, work)
        end)
        turns(2)
        t:cancel("outside")
        local err = error_of(t.await, t)
        assert.is_true(coil.is_cancelled(err), tostring(err))
        assert.is_false(coil.is_timeout(err))
      end)
    end
  end)

  describe("nests", function()
    it("with itself: the inner deadline ends the inner work only", function()
      local inner = { coil.move_on_after(1, function()
        return coil.move_on_after(0.01, coil.sleep, 10)
      end) }
      assert.same({ true, false }, inner)
    end)

    it("with itself: the outer deadline ends both, at the outer level", function()
      local inner_ran_on = false
      local ok = coil.move_on_after(0.01, function()
        local r = coil.move_on_after(1, coil.sleep, 10)
        inner_ran_on = true -- never: the outer cancellation goes on up
        return r
      end)
      assert.is_false(ok)
      assert.is_false(inner_ran_on)
    end)

    it("both expired, inner first: the outer level moves on", function()
      local inner_returned = false
      local ok = coil.move_on_after(0.02, function()
        coil.move_on_after(0.01, function()
          busy(0.04) -- both deadlines pass while nothing can fire
          coil.sleep(10)
        end)
        inner_returned = true
      end)
      assert.is_false(ok)
      assert.is_false(inner_returned)
    end)

    it("inside a timeout: the timeout's deadline raises Timeout", function()
      local err = error_of(coil.timeout, 0.01, function()
        return coil.move_on_after(1, coil.sleep, 10)
      end)
      assert.is_true(coil.is_timeout(err))
      assert.equal(0.01, err.seconds)
    end)

    it("around a timeout: the inner Timeout is raised at its level", function()
      local ok, caught = coil.move_on_after(1, function()
        return coil.is_timeout(error_of(coil.timeout, 0.01, coil.sleep, 10))
      end)
      assert.same({ true, true }, { ok, caught })
    end)

    it("around a timeout: the move_on_after deadline ends the work quietly", function()
      local ok = coil.move_on_after(0.01, coil.timeout, 1, coil.sleep, 10)
      assert.is_false(ok)
    end)

    it("both expired with a timeout inside, inner first: the outer moves on", function()
      local ok = coil.move_on_after(0.02, function()
        coil.timeout(0.01, function()
          busy(0.04)
          coil.sleep(10)
        end)
      end)
      assert.is_false(ok)
    end)
  end)

  it("math.huge means no deadline", function()
    assert.same({ true, 1 }, { coil.move_on_after(math.huge, function() coil.sleep(0.001) return 1 end) })
  end)

  it("works in cleanup after a cancellation (a bounded flush)", function()
    local log = {}
    local t = coil.spawn(function()
      coil.defer(function()
        log[#log + 1] = coil.move_on_after(0.01, coil.sleep, 10) and "flushed" or "gave up"
      end)
      coil.sleep(10)
    end)
    turns(2)
    t:cancel()
    assert.is_true(coil.is_cancelled(error_of(t.await, t)))
    assert.same({ "gave up" }, log)
  end)

  it("rejects bad arguments", function()
    assert.matches("^coil: move_on_after expects a non%-negative number of seconds, got %-1",
      error_of(coil.move_on_after, -1, print))
    assert.matches("^coil: move_on_after expects a number of seconds, got string",
      error_of(coil.move_on_after, "1", print))
    assert.matches("^coil: move_on_after expects a function, got nil",
      error_of(coil.move_on_after, 1))
    local err
    after(1, function() err = select(2, pcall(coil.move_on_after, 1, print)) end)
    for _ = 1, 100 do
      if err then break end
      coil.sleep(0.01)
    end
    assert.equal("coil: move_on_after must be called from inside a task", err)
  end)
end)

describe("consumed cancellations", function()
  local proc = require "spec.support.proc"
  it("move_on_after's and a group's own are no swallowed cancellation", function()
    local r = proc.run({ "spec/fixtures/move_on_after_quiet.lua" })
    assert.equal(0, r.code)
    assert.equal("false\t0\tfalse\tboom\n", r.stdout)
    assert.equal("", r.stderr)
  end)
end)
