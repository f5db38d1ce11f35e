-- coil.busted (SPEC §4 "busted"): the fixture directory
-- spec/fixtures/busted_async/ (its files end in _cases, not _spec, so that
-- `busted spec/` does not collect them) run as a real busted process, with stock busted
-- on stock lua5.4 (each test in a coil.run of its own) and with
-- `busted --lua=coil` (every test inside coil's main task). In both, the
-- clean tests pass, the tests that leak a task, a timer or an unseen error,
-- and those that time out, fail with the leaked thing named, and the test
-- after each failing one passes: the helper cleaned up after it.
local proc = require "spec.support.proc"
local stock = require "spec.support.stock"
local json = require "dkjson"
local uv = require "luv"

local ROOT = uv.cwd()
local FIXTURES = ROOT .. "/spec/fixtures/busted_async"

local function absolute(path)
  return path:sub(1, 1) == "/" and path or ROOT .. "/" .. path
end

-- busted re-executes itself through the shell for --lua: no spaces there
local COIL = absolute(COIL_BIN)
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


local runs = {
  -- stock busted on stock lua5.4 (`lua` may be another Lua on Debian)
  stock = function()
    return proc.start("lua5.4", { which "busted", "--cpath=" .. BUILD .. "/?.so",
                                  "--pattern=_cases", "-o", "json", "." },
                      { cwd = FIXTURES, env = stock.env })
  end,
  coil = function()
    return proc.start("busted", { "--lua=" .. COIL, "--pattern=_cases",
                                  "-o", "json", "." }, { cwd = FIXTURES })
  end,
}

-- The line of the fixture that holds `text`, as busted names it.
local function at(text)
  local n = 0
  for line in io.lines(FIXTURES .. "/async_cases.lua") do
    n = n + 1
    if line:find(text, 1, true) then return "%./async_cases%.lua:" .. n .. ":?" end
  end
  error("not in the fixture: " .. text, 2)
end

-- Runs busted (both ways at once), then indexes its JSON report by test.
local results = {}
local function result(mode)
  if not results.stock then
    local started = {}
    for name, start in pairs(runs) do started[name] = start() end
    for name, p in pairs(started) do
      local r = p:wait(120)
      local report = json.decode(r.stdout:match "{.*}" or "")
      assert(report, "no JSON report from busted (" .. name .. "):\n" ..
                     r.stdout .. r.stderr)
      local by_name = {}
      for _, status in ipairs { "successes", "failures", "errors", "pendings" } do
        for _, t in ipairs(report[status]) do
          by_name[t.name:gsub("^coil%.busted ", "")] = { status = status,
                                                         message = t.message }
        end
      end
      results[name] = { run = r, tests = by_name, report = report }
    end
  end
  return results[mode]
end

local CLEAN = {
  "clean: awaits a task",
  "clean after the leaked task",
  "clean after the leaked timer",
  "clean after the unseen error",
  "clean after the kept failed task",
  "clean after the timeout",
  "clean after the busy test",
  "clean at the end",
}

for _, mode in ipairs { "stock", "coil" } do
  describe("coil.busted under " .. (mode == "stock" and "stock busted"
                                     or "busted --lua=coil"), function()
    local function test(name)
      local t = result(mode).tests[name]
      assert(t, "no test named '" .. name .. "' in busted's report")
      return t
    end

    local function assert_fails(name, ...)
      local t = test(name)
      assert.equal("failures", t.status, t.message)
      for _, pattern in ipairs { ... } do
        assert.matches(pattern, t.message)
      end
      return t.message
    end

    it("runs every test of the fixture, busted exiting 1", function()
      local r = result(mode)
      local report = r.report
      assert.equal(#CLEAN, #report.successes)
      assert.equal(7, #report.failures)
      assert.equal(1, #report.errors)
      assert.equal(1, #report.pendings)
      assert.equal(1, r.run.code)
      assert.is_false(r.run.timed_out)
    end)

    it("passes the clean tests, and every test after a failing one", function()
      for _, name in ipairs(CLEAN) do
        local t = test(name)
        assert.equal("successes", t.status, name .. ": " .. tostring(t.message))
      end
    end)

    it("fails a test that leaks a task, naming it and where it waits", function()
      assert_fails("leaks a task",
                   "^" .. at 'it("leaks a task"' .. " coil: the test left 1 thing%(s%) behind:",
                   "task 'ticker' still running %(suspended in sleep",
                   at "while true do coil.sleep(1) end")
    end)

    it("fails a test that leaks a timer, naming its type and where it was opened", function()
      assert_fails("leaks a timer",
                   "luv handle uv_timer_t still open, opened at " ..
                   at "coil.uv.new_timer()")
    end)

    it("fails a test whose spawned task failed unseen, with its error and traceback", function()
      assert_fails("lets a spawned task fail unseen",
                   "task 'doomed' failed and nobody awaited it: " ..
                   at "boom from the doomed task" .. " boom from the doomed task",
                   "stack traceback")
      assert_fails("keeps a failed task it never looked at",
                   "task 'kept' failed and nobody awaited it: .*boom from the kept task")
    end)

    it("fails a test that times out with the dump of where each task waited", function()
      local message = assert_fails("times out",
                   "coil: test timed out after 0%.2 s; where each task was waiting:",
                   "task 'test' %(suspended in await",
                   at "stuck:await()",
                   "task 'stuck%-waiter' %(suspended in wait",
                   at "coil.event():wait()")
      -- the helper's own frames are left out
      assert.not_matches("coil/busted%.lua", message)
    end)

    it("fails a test whose body never awaits, where it was busy", function()
      assert_fails("never awaits",
                   "coil: test timed out after 0%.1 s: the body kept running without awaiting",
                   at "while true do n = n + 1 end")
    end)

    it("keeps the body's own failures, errors and pending as busted sorts them", function()
      assert_fails("fails an assertion", "Expected objects to be equal")
      local t = test("raises an error")
      assert.equal("errors", t.status)
      assert.matches(at 'error("plain error from the body")' ..
                     " plain error from the body\nstack traceback:", t.message)
      assert.equal("pendings", test("is pending").status)
    end)

    it("leaves nothing to report at exit", function()
      local r = result(mode).run
      assert.not_matches("nobody awaited", r.stderr)
      assert.equal("", r.stderr)
    end)
  end)
end

-- The example in examples/spec/ (a small library and its async specs) passes
-- both ways, as its README says.
describe("examples/spec", function()
  local dir = ROOT .. "/examples/spec"
  local starts = {
    stock = function()
      return proc.start("lua5.4", { which "busted", "--cpath=" .. BUILD .. "/?.so",
                                    "-o", "json" }, { cwd = dir, env = stock.env })
    end,
    coil = function()
      return proc.start("busted", { "--lua=" .. COIL, "-o", "json" }, { cwd = dir })
    end,
  }
  for _, mode in ipairs { "stock", "coil" } do
    it("passes under " .. (mode == "stock" and "stock busted" or "busted --lua=coil"), function()
      local r = starts[mode]():wait(60)
      local report = json.decode(r.stdout:match "{.*}" or "")
      assert(report, "no JSON report from busted:\n" .. r.stdout .. r.stderr)
      assert.same({}, report.failures)
      assert.same({}, report.errors)
      assert.is_true(#report.successes >= 8)
      assert.equal(0, r.code)
    end)
  end
end)
