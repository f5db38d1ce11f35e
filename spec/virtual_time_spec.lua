-- Virtual time (SPEC §4, busted "Virtual time"): async(fn, {virtual_time =
-- true}) and coil.run({virtual_time = true}, fn). Tests that sleep an hour,
-- time out after 30 s or back off for a simulated day finish in well under
-- a second, and the same scenarios give the same order of events on the
-- virtual clock as in real time at a small scale.
local coil = require "coil"
local stock = require "spec.support.stock"
local util = require "spec.support.util"
local error_of = util.error_of
local uv = require "luv"
local async = require "coil.busted"
local clock = require "coil.clock"
local proc = require "spec.support.proc"

local json = require "dkjson"

local function real_seconds(t0) return (uv.hrtime() - t0) / 1e9 end

-- busted on spec/fixtures/virtual_time (stock busted on lua5.4 with the
-- build's coil.so, or busted --lua=coil), its JSON report indexed by test.
local ROOT = uv.cwd()
local COIL = COIL_BIN:sub(1, 1) == "/" and COIL_BIN or ROOT .. "/" .. COIL_BIN
local BUILD = COIL:match "^(.*)/[^/]+$"

local function which(name)
  for dir in (os.getenv "PATH" or ""):gmatch "[^:]+" do
    local f = io.open(dir .. "/" .. name)
    if f then
      f:close()
      return dir .. "/" .. name
    end
  end
  error(name .. " is not on PATH", 2)
end


local results = {}
local function result(mode)
  if results[mode] then return results[mode] end
  local dir = ROOT .. "/spec/fixtures/virtual_time"
  local p
  if mode == "stock" then
    p = proc.start("lua5.4", { which "busted", "--cpath=" .. BUILD .. "/?.so",
                               "--pattern=_cases", "-o", "json", "." },
                   { cwd = dir, env = stock.env })
  else
    p = proc.start("busted", { "--lua=" .. COIL, "--pattern=_cases", "-o", "json", "." },
                   { cwd = dir })
  end
  local r = p:wait(60)
  local report = json.decode(r.stdout:match "{.*}" or "")
  assert(report, "no JSON report from busted (" .. mode .. "):\n" .. r.stdout .. r.stderr)
  local tests = {}
  for _, status in ipairs { "successes", "failures", "errors", "pendings" } do
    for _, t in ipairs(report[status]) do
      tests[t.name] = { status = status, message = t.message }
    end
  end
  results[mode] = { run = r, tests = tests }
  return results[mode]
end

-- async with virtual time
local function virtual(fn, opts)
  opts = opts or {}
  opts.virtual_time = true
  return async(fn, opts)
end

describe("virtual time", function()
  it("sleeps an hour in well under a second", virtual(function()
    local t0, v0 = uv.hrtime(), coil.now()
    coil.sleep(3600)
    assert.near(3600, coil.now() - v0, 1e-6)
    assert.is_true(real_seconds(t0) < 5)
  end))

  it("times out after 30 s", virtual(function()
    local t0, v0 = uv.hrtime(), coil.now()
    local ev = coil.event()
    local err = error_of(coil.timeout, 30, ev.wait, ev)
    assert.is_true(coil.is_timeout(err))
    assert.near(30, coil.now() - v0, 1e-6)
    assert.is_true(real_seconds(t0) < 5)
  end))

  it("backs off exponentially for a simulated day", virtual(function()
    local t0, v0 = uv.hrtime(), coil.now()
    local attempts, delay, at = 0, 0.1, {}
    while coil.now() - v0 < 86400 do
      attempts = attempts + 1
      at[#at + 1] = coil.now() - v0
      coil.sleep(delay)
      delay = math.min(delay * 2, 3600)
    end
    assert.is_true(attempts > 20 and attempts < 60, tostring(attempts))
    -- each wait was exactly the one asked for (whole milliseconds)
    for i = 2, 6 do
      assert.near(0.1 * 2 ^ (i - 2), at[i] - at[i - 1], 1e-6)
    end
    assert.is_true(real_seconds(t0) < 5)
  end))

  it("covers now, sleep, timeout, move_on_after, call_later and wait's timeout", virtual(function()
    local v0 = coil.now()
    local log = {}
    local function note(what) log[#log + 1] = ("%s@%g"):format(what, coil.now() - v0) end
    local later = coil.call_later(50, note, "call_later")
    local never = coil.call_later(60, note, "cancelled call_later")
    local ev = coil.event()
    local sleeper = coil.spawn(function() coil.sleep(5) note("sleep") end)
    local done, pending = coil.wait({ coil.spawn(ev.wait, ev) }, { timeout = 10 })
    note("wait " .. #done .. "/" .. #pending)
    assert.is_false(coil.move_on_after(20, ev.wait, ev))
    note("move_on_after")
    assert.is_true(coil.is_timeout(error_of(coil.timeout, 15, ev.wait, ev)))
    note("timeout")
    never:cancel()
    ev:set()
    coil.gather(pending[1], sleeper)
    coil.sleep(20)
    assert.is_true(later:task():done())
    assert.same({ "sleep@5", "wait 0/1@10", "move_on_after@30", "timeout@45",
                  "call_later@50" }, log)
  end))

  for _, mode in ipairs { "stock", "coil" } do
    describe(mode == "stock" and "under stock busted" or "under busted --lua=coil", function()
      local function case(name) return result(mode).tests["virtual time: " .. name] end

      it("passes the clean cases, the next test back on real time", function()
        assert.equal("successes", case("sleeps a day").status)
        assert.equal("successes", case("the next test runs in real time").status)
        assert.equal("successes", case("rejects a bad option").status)
      end)

      it("keeps real time for the test's own deadline", function()
        local t = case "a body waiting forever times out in real time"
        assert.equal("failures", t.status)
        assert.matches("coil: test timed out after 0%.2 s", t.message)
      end)

      it("fails a test that leaves a call_later pending on the virtual clock", function()
        local t = case "leaves a call_later pending"
        assert.equal("failures", t.status)
        assert.matches("call_later still pending on the virtual clock %(due in 90%.000 s%)", t.message)
      end)

      it("took little real time and left nothing to report", function()
        local r = result(mode).run
        assert.is_true(r.elapsed < 30)
        assert.equal("", r.stderr)
      end)
    end)
  end

  it("coil.run({virtual_time = true}, fn, ...) from stock Lua", function()
    local p = proc.start("lua5.4", { "-e", "package.cpath = '" .. BUILD .. "/?.so;' .. package.cpath",
                                     "spec/fixtures/virtual_time_run.lua" }, { env = stock.env })
    local r = p:wait(30)
    assert.equal(0, r.code, r.stderr)
    local lines = {}
    for line in r.stdout:gmatch "[^\n]+" do lines[#lines + 1] = line end
    assert.equal("arg\tfalse 3630.000\ttrue", lines[1])
    assert.equal("real\ttrue", lines[2])
    assert.equal("false\tcoil: coil.run: unknown option 'bogus'", lines[3])
    assert.equal("true\tplain", lines[4])
    assert.equal("false\tcoil: run expects a function, got table", lines[5])
    assert.matches("^false\tlate", lines[6])
    local rest = table.concat(lines, "\n", 7)
    assert.matches("on\tfalse\ncleanup slept an hour\nfalse\tcancelled: shutdown\nquick\ttrue\n" ..
                   "false\tcoil: deadlock: tasks were waiting with nothing to wake them[^\n]*\noff\tfalse$", rest)
    assert.matches("coil: deadlock: 1 task%(s%) waiting", r.stderr)
  end)

  it("is off again after a virtual test", function()
    assert.is_false(clock.on)
    local t0 = coil.now()
    coil.sleep(0.01)
    assert.is_true(coil.now() - t0 >= 0.0099)
  end)

  it("covers awaits inside a coroutine of the task (SPEC §7)", virtual(function()
    local v0 = coil.now()
    local gen = coroutine.wrap(function()
      coil.sleep(600)
      coroutine.yield("first")
      assert.is_false(coil.move_on_after(60, coil.sleep, 3600))
      return "second"
    end)
    assert.equal("first", gen())
    assert.equal("second", gen())
    assert.near(660, coil.now() - v0, 1e-6)
  end))

  describe("real I/O still works", function()
    it("a reply on a local socket arrives before a 30 s deadline", virtual(function()
      local handled = coil.event()
      local server = assert(coil.net.listen("127.0.0.1", 0, function(stream)
        local line = stream:read_line()
        stream:write(line .. "!\n")
        stream:close()
        handled:set()
      end))
      local _, port = server:address()
      local v0 = coil.now()
      local reply = coil.timeout(30, function()
        local s = assert(coil.net.connect("127.0.0.1", port))
        s:write("ping\n")
        local r = s:read_line()
        s:close()
        return r
      end)
      assert.equal("ping!", reply)
      assert.is_true(coil.now() - v0 < 30)
      handled:wait()
      server:close()
    end))

    it("a read that gets nothing times out on the virtual clock", virtual(function()
      local handled = coil.event()
      local server = assert(coil.net.listen("127.0.0.1", 0, function(stream)
        pcall(stream.read, stream) -- never answers
        stream:close()
        handled:set()
      end))
      local _, port = server:address()
      local s = assert(coil.net.connect("127.0.0.1", port))
      local t0, v0 = uv.hrtime(), coil.now()
      assert.is_false(coil.move_on_after(30, s.read, s))
      assert.near(30, coil.now() - v0, 1e-6)
      assert.is_true(real_seconds(t0) < 5)
      s:close()
      handled:wait()
      server:close()
    end))

    it("a file read in flight holds the clock until it completes", virtual(function()
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write(("x"):rep(1 << 16))
      f:close()
      -- a deadline of 1 ms of virtual time: the request in flight (on the
      -- thread pool) keeps the clock from jumping past it
      local ok, data = coil.move_on_after(0.001, coil.fs.read_file, path)
      os.remove(path)
      assert.is_true(ok)
      assert.equal(1 << 16, #data)
    end))
  end)
end)

-- The same scenario in real time (a small unit) and on the virtual clock (a
-- big one): the same events in the same order. Gaps are at least one unit
-- apart so that a loaded machine does not reorder the real run.
local function scenario(unit, log)
  local function note(what) log[#log + 1] = what end
  local ev = coil.event()
  local ok, err = pcall(coil.group, function(g)
    g:spawn(function()
      coil.sleep(1 * unit)
      note("a slept 1")
      coil.sleep(2 * unit)
      note("a slept 3")
      ev:set()
    end)
    g:spawn(function()
      local moved = not coil.move_on_after(2 * unit, ev.wait, ev)
      note("b moved on: " .. tostring(moved))
      ev:wait()
      note("b saw the event")
    end)
    g:spawn(function()
      local e = select(2, pcall(coil.timeout, 5 * unit, coil.sleep, 7 * unit))
      note("c " .. (coil.is_timeout(e) and "timed out" or tostring(e)))
    end)
    coil.call_later(4 * unit, note, "later 4")
    local done = coil.wait({ g:spawn(coil.sleep, 6 * unit) }, { timeout = 0.5 * unit })
    note("wait gave up with " .. #done .. " done")
    local failing = g:spawn(function()
      coil.sleep(8 * unit)
      note("d failing")
      error("d failed", 0)
    end)
    local inner_ok = pcall(coil.group, function(inner)
      inner:spawn(function()
        coil.defer(function() note("inner cleaned") end)
        coil.sleep(100 * unit)
      end)
      inner:spawn(function() coil.sleep(7 * unit) error("inner failed", 0) end)
      coil.sleep(100 * unit)
    end)
    note("inner group raised: " .. tostring(not inner_ok))
    pcall(failing.await, failing)
    note("body done")
  end)
  note("group raised: " .. tostring(not ok and err))
  return log
end

-- The three classic slow tests, with their time scaled by `unit`: on the
-- virtual clock at full scale (unit = 1 s), in real time at a small one.
-- Periodic tasks run late on a loaded machine (their lag adds up), so every
-- event a periodic one must precede has a wide margin.
local classics = {
  ["sleeps an hour"] = {
    real_unit = 2e-4, -- the hour in 0.72 s
    run = function(unit, log)
      coil.group(function(g)
        local ticker = g:spawn(function()
          for i = 1, 100 do
            coil.sleep(650 * unit)
            log[#log + 1] = "tick " .. i
          end
        end)
        coil.call_later(1800 * unit, function() log[#log + 1] = "half an hour" end)
        coil.sleep(3600 * unit)
        log[#log + 1] = "an hour"
        ticker:cancel()
      end)
    end,
    expected = { "tick 1", "tick 2", "half an hour", "tick 3", "tick 4", "tick 5",
                 "an hour" },
  },
  ["times out after 30 s"] = {
    real_unit = 0.01,
    run = function(unit, log)
      coil.group(function(g)
        local heartbeat = g:spawn(function()
          for i = 1, 100 do
            coil.sleep(12 * unit)
            log[#log + 1] = "heartbeat " .. i
          end
        end)
        local ok, err = pcall(coil.timeout, 30 * unit, function()
          local _, e = pcall(coil.sleep, 45 * unit)
          log[#log + 1] = "request cancelled"
          error(e, 0)
        end)
        log[#log + 1] = coil.is_timeout(err) and "timed out" or tostring(ok)
        coil.sleep(27 * unit)
        heartbeat:cancel()
      end)
    end,
    expected = { "heartbeat 1", "heartbeat 2", "request cancelled", "timed out",
                 "heartbeat 3", "heartbeat 4" },
  },
  ["backs off exponentially for a simulated day"] = {
    real_unit = 3e-5, -- the day in 2.6 s (it gives up after 1.7 s)
    run = function(unit, log)
      coil.group(function(g)
        g:spawn(function()
          for i = 1, 100 do
            coil.sleep(20000 * unit)
            log[#log + 1] = "watchdog " .. i
          end
        end)
        local t0, delay = coil.now(), 900 * unit
        for attempt = 1, 100 do
          log[#log + 1] = "attempt " .. attempt
          if coil.now() - t0 + delay > 86400 * unit then break end
          coil.sleep(delay)
          delay = delay * 2
        end
        log[#log + 1] = "gave up"
        g:cancel()
      end)
    end,
    -- attempts at 0, 900, 2700, 6300, 13500, 27900 and 56700 s
    expected = { "attempt 1", "attempt 2", "attempt 3", "attempt 4", "attempt 5",
                 "watchdog 1", "attempt 6", "watchdog 2", "attempt 7", "gave up" },
  },
}

describe("the classic slow tests give the same events", function()
  for name, case in pairs(classics) do
    it(name .. " on the virtual clock, in well under a second", virtual(function()
      local log, t0 = {}, uv.hrtime()
      case.run(1, log)
      assert.same(case.expected, log)
      assert.is_true(real_seconds(t0) < 5)
    end))

    it(name .. ", scaled down, in real time", async(function()
      local log = {}
      case.run(case.real_unit, log)
      assert.same(case.expected, log)
    end, { timeout = 20 }))
  end
end)

describe("the same order of events", function()
  local real, virt = {}, {}
  local EXPECTED = {
    "wait gave up with 0 done", "a slept 1", "b moved on: true", "a slept 3",
    "b saw the event", "later 4", "c timed out", "inner cleaned",
    "inner group raised: true", "d failing", "body done",
    "group raised: d failed",
  }

  it("in real time, at 50 ms a unit", async(function()
    scenario(0.05, real)
    assert.same(EXPECTED, real)
  end, { timeout = 10 }))

  it("on the virtual clock, at 10 minutes a unit", virtual(function()
    local t0 = uv.hrtime()
    scenario(600, virt)
    assert.same(EXPECTED, virt)
    assert.is_true(real_seconds(t0) < 5)
  end))
end)
