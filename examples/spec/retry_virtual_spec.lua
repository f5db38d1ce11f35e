-- retry.lua's back-off on coil's virtual clock: `async(fn, {virtual_time =
-- true})` runs the body on a clock that jumps to the next deadline whenever
-- nothing can run, so a day of retries takes milliseconds of real time and
-- the waits can be checked exactly.
local coil = require "coil"
local uv = require "luv"
local async = require "coil.busted"
local retry = require "retry"

local function virtual(fn) return async(fn, { virtual_time = true }) end

-- Seconds between two readings of coil.now(), to the millisecond (the
-- virtual clock counts whole milliseconds; the subtraction of two floats
-- may not be exact).
local function since(t0) return math.floor((coil.now() - t0) * 1000 + 0.5) / 1000 end

-- A function that fails `n` times (forever if n is nil), noting when it was
-- called.
local function flaky(n)
  local at = {}
  return function()
    at[#at + 1] = coil.now()
    if not n or #at <= n then error("flaky failure " .. #at, 0) end
    return "ok"
  end, at
end

describe("retry.call on virtual time", function()
  it("waits exactly the back-off it promises", virtual(function()
    local fn, at = flaky(5)
    assert.equal("ok", retry.call(fn, { attempts = 6, delay = 10, factor = 3,
                                        max_delay = 600 }))
    local waits = {}
    for i = 2, #at do waits[#waits + 1] = math.floor((at[i] - at[i - 1]) * 1000 + 0.5) / 1000 end
    assert.same({ 10, 30, 90, 270, 600 }, waits)
  end))

  it("keeps trying for a simulated day, in well under a second", virtual(function()
    local fn, at = flaky()
    local started, t0 = coil.now(), uv.hrtime()
    local ok, err = pcall(retry.call, fn, { attempts = 40, delay = 1, factor = 2,
                                            max_delay = 3600 })
    assert.is_false(ok)
    assert.equal("flaky failure 40", err)
    assert.equal(40, #at)
    assert.is_true(since(started) > 86400)         -- more than a day...
    assert.is_true((uv.hrtime() - t0) / 1e9 < 5) -- ...of virtual time
  end))

  it("is cut short by a timeout at the virtual deadline", virtual(function()
    local fn, at = flaky()
    local started = coil.now()
    local ok, err = pcall(coil.timeout, 100, retry.call, fn,
                          { attempts = 50, delay = 1, max_delay = 1000 })
    assert.is_false(ok)
    assert.is_true(coil.is_timeout(err))
    assert.equal(100, since(started))
    -- calls at 0, 1, 3, 7, 15, 31 and 63 s; the next would be at 127 s
    assert.equal(7, #at)
  end))

  it("lets the callers retry side by side", virtual(function()
    local started = coil.now()
    local results = coil.gather({
      function() return retry.call((flaky(2)), { delay = 60, max_delay = 600 }) end,
      function() return retry.call((flaky(3)), { delay = 60, max_delay = 600 }) end,
    })
    assert.same({ "ok", "ok" }, results)
    -- the slower one: 60 + 120 + 240 s, not the sum of both
    assert.equal(420, since(started))
  end))
end)
