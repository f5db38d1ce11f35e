-- The sleepers' structure (src/timer.c): buckets of sleepers sharing a
-- deadline millisecond, in a heap, found by a hash; and step 3 of the
-- shutdown, which cancels the sleepers straight from it.
local coil = require "coil"
local proc = require "spec.support.proc"

-- Whether task i (the i-th to call sleep, for d_i ms) woke before task j:
-- i slept first and no longer, so its deadline is not later than j's and
-- it must wake first (a tie keeps the order of the calls).
local function check_order(slept, woke)
  local at = {}
  for pos, i in ipairs(woke) do at[i] = pos end
  for i = 1, #slept do
    for j = i + 1, #slept do
      if at[i] and at[j] and slept[i] <= slept[j] then
        assert(at[i] < at[j], ("sleeper %d (%d ms) woke after sleeper %d (%d ms)")
          :format(i, slept[i], j, slept[j]))
      end
    end
  end
end

describe("sleepers", function()
  it("wake in deadline order, ties in call order, over many deadlines", function()
    local slept, woke, tasks = {}, {}, {}
    for i = 1, 900 do
      slept[i] = 1 + (i * 7919) % 240 -- 240 deadlines: the table and heap grow
      tasks[i] = coil.spawn(function()
        coil.sleep(slept[i] / 1000)
        woke[#woke + 1] = i
      end)
    end
    coil.sleep(0) -- all asleep
    -- cancel the first, the last and some in between of many buckets
    local cancelled = 0
    for i = 1, 900, 11 do
      tasks[i]:cancel()
      cancelled = cancelled + 1
    end
    coil.wait(tasks, { return_when = "all" })
    assert.equal(900 - cancelled, #woke)
    check_order(slept, woke)
  end)

  it("keep their order when the head, the middle or the tail of a tie leaves", function()
    local woke, tasks = {}, {}
    for i = 1, 6 do
      tasks[i] = coil.spawn(function()
        coil.sleep(0.02)
        woke[#woke + 1] = i
      end)
    end
    coil.sleep(0)
    tasks[1]:cancel()
    tasks[4]:cancel()
    tasks[6]:cancel()
    coil.wait(tasks, { return_when = "all" })
    assert.same({ 2, 3, 5 }, woke)
  end)

  it("re-arm the timer when the earliest one is cancelled", function()
    local early = coil.spawn(function() coil.sleep(0.01) end)
    local woke_at
    local t0 = coil.now()
    local later = coil.spawn(function()
      coil.sleep(0.05)
      woke_at = coil.now() - t0
    end)
    coil.sleep(0)
    early:cancel()
    later:await()
    assert.is_true(woke_at >= 0.045, "woke after " .. woke_at)
    assert.is_true(woke_at < 5, "woke after " .. woke_at)
  end)

  it("reuse emptied buckets across rounds", function()
    for round = 1, 5 do
      local tasks, n = {}, 0
      for i = 1, 200 do
        tasks[i] = coil.spawn(function()
          coil.sleep((i % 20) / 1000)
          n = n + 1
        end)
      end
      coil.wait(tasks, { return_when = "all" })
      assert.equal(200, n, "round " .. round)
    end
  end)
end)

describe("step 3 of the shutdown", function()
  local function interrupt(mode, signal)
    local p = proc.coil { "spec/fixtures/timer_shutdown_mix.lua", mode }
    assert.is_true(p:wait_for "ready\n", "no ready line: " .. p.stderr)
    if signal then p:kill(signal) end
    local r = p:wait(30)
    assert.is_false(r.timed_out, "coil did not end")
    local cleaned, sleepers = {}, 0
    for name in r.stdout:gmatch "cleaned (%S+)" do
      if name:match "^s%d+$" then sleepers = sleepers + 1
      else cleaned[#cleaned + 1] = name end
    end
    table.sort(cleaned)
    return r, sleepers, cleaned
  end

  it("cancels every sleeper, once, when all the tasks sleep", function()
    local r, sleepers, cleaned = interrupt("sleepers", "sigint")
    assert.equal(2, r.signal)
    assert.equal(300, sleepers)
    assert.same({ "main" }, cleaned)
    assert.equal("coil: SIGINT received, cancelling 301 task(s) (Ctrl+C again to force)\n",
                 r.stderr)
  end)

  it("still reaches tasks that wait for something else", function()
    local r, sleepers, cleaned = interrupt("mix", "sigint")
    assert.equal(2, r.signal)
    assert.equal(300, sleepers)
    assert.same({ "awaited", "awaiting", "main", "parked", "spinner" }, cleaned)
  end)

  it("leaves a sleeping task it already reached to finish its cleanup", function()
    local r, sleepers, cleaned = interrupt("exit")
    assert.equal(3, r.code)
    assert.equal(300, sleepers)
    assert.same({ "exiter", "main" }, cleaned)
    assert.equal("", r.stderr)
  end)
end)
