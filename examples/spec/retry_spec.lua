-- Specs for retry.lua, written with coil.busted: each test body runs as a
-- task (so it may await), under a deadline, and fails if it leaves a task
-- alive, a luv handle open or an error nobody saw.
local coil = require "coil"
local async = require "coil.busted"
local retry = require "retry"

-- A function that fails `n` times, then returns "ok"; counts its calls and
-- when they came.
local function flaky(n)
  local calls = { at = {} }
  return function()
    calls[#calls + 1] = true
    calls.at[#calls.at + 1] = coil.now()
    if #calls <= n then error("flaky failure " .. #calls, 0) end
    return "ok", #calls
  end, calls
end

describe("retry.call", function()
  it("returns the results once the function succeeds", async(function()
    local fn, calls = flaky(2)
    local a, b = retry.call(fn, { delay = 0.01 })
    assert.equal("ok", a)
    assert.equal(3, b)
    assert.equal(3, #calls)
  end))

  it("waits longer after each failure", async(function()
    local fn, calls = flaky(3)
    retry.call(fn, { delay = 0.02, factor = 2 })
    local gaps = {}
    for i = 2, #calls.at do gaps[#gaps + 1] = calls.at[i] - calls.at[i - 1] end
    -- at least 0.02, 0.04, 0.08 s (give or take the loop's millisecond
    -- clock); the upper bound is generous: a loaded machine runs late
    for i, expected in ipairs { 0.02, 0.04, 0.08 } do
      assert.is_true(gaps[i] >= expected - 0.002, ("gap %d: %.3f s"):format(i, gaps[i]))
      assert.is_true(gaps[i] < expected + 2, ("gap %d: %.3f s"):format(i, gaps[i]))
    end
  end))

  it("caps the wait at max_delay", async(function()
    local waits = {}
    local fn = flaky(3)
    retry.call(fn, { delay = 0.01, factor = 10, max_delay = 0.02,
                     on_retry = function(_, _, wait) waits[#waits + 1] = wait end })
    assert.same({ 0.01, 0.02, 0.02 }, waits)
  end))

  it("gives up after the attempts, raising the last error", async(function()
    local fn, calls = flaky(10)
    local ok, err = pcall(retry.call, fn, { attempts = 3, delay = 0.001 })
    assert.is_false(ok)
    assert.equal("flaky failure 3", err)
    assert.equal(3, #calls)
  end))

  it("does not retry an error retry_if refuses", async(function()
    local fn, calls = flaky(10)
    local ok, err = pcall(retry.call, fn, {
      delay = 0.001,
      retry_if = function(e) return e ~= "flaky failure 2" end,
    })
    assert.is_false(ok)
    assert.equal("flaky failure 2", err)
    assert.equal(2, #calls)
  end))

  it("stops at once, never retrying, when its task is cancelled", async(function()
    local fn, calls = flaky(10)
    local worker = coil.spawn(retry.call, fn, { delay = 10 })
    coil.sleep(0.01) -- the first call failed; the worker waits 10 s
    local t0 = coil.now()
    worker:cancel()
    local ok, err = pcall(worker.await, worker)
    assert.is_false(ok)
    assert.is_true(coil.is_cancelled(err))
    assert.is_true(coil.now() - t0 < 5) -- not the 10 s wait
    assert.equal(1, #calls)
  end))

  it("lets many callers retry at the same time", async(function()
    local workers = {}
    for i = 1, 10 do
      workers[i] = coil.spawn(retry.call, (flaky(2)), { delay = 0.05 })
    end
    local t0 = coil.now()
    for _, w in ipairs(workers) do assert.equal("ok", w:await()) end
    -- they waited side by side: about 0.15 s, not the 1.5 s of one by one
    assert.is_true(coil.now() - t0 < 1.2)
  end, { timeout = 2 }))

  it("rejects bad options", function()
    assert.has_error(function() retry.call(42) end,
                     "retry: a function expected, got number")
    assert.has_error(function() retry.call(print, { attempts = 0 }) end,
                     "retry: attempts must be a whole number, at least 1")
    assert.has_error(function() retry.call(print, { delay = -1 }) end,
                     "retry: delay must be a non-negative number")
  end)
end)
