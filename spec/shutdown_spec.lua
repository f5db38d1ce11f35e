-- The shutdown sequence (SPEC §3), tested the only honest way: a real coil
-- process, a ready line, a real signal, then output, status and time.
local proc = require "spec.support.proc"
local stock = require "spec.support.stock"

local SIGNUM = { sigint = 2, sighup = 1, sigterm = 15 }

local function fixture(name) return "spec/fixtures/" .. name .. ".lua" end

-- Starts coil on a fixture, waits for its ready line, sends the signals.
local function interrupt(args, signals, opts)
  opts = opts or {}
  local p = proc.coil(args)
  assert.is_true(p:wait_for(opts.ready or "ready\n"), "no ready line: " .. p.stderr)
  for _, sig in ipairs(signals) do
    if type(sig) == "number" then
      require("coil").sleep(sig)
    else
      p:kill(sig)
    end
  end
  local r = p:wait(opts.limit or 20)
  assert.is_false(r.timed_out, "coil did not end")
  return r
end

local function lines(s)
  local t = {}
  for line in s:gmatch "[^\n]+" do t[#t + 1] = line end
  table.sort(t)
  return t
end

describe("shutdown on a signal", function()
  for _, sig in ipairs { "sigint", "sigterm", "sighup" } do
    it("runs defer, <close> and pcall cleanup, then dies by " .. sig, function()
      local r = interrupt({ fixture "sd_three_kinds" }, { sig })
      assert.equal(SIGNUM[sig], r.signal)
      local name = sig:upper()
      assert.same(lines(([[
ready
pcall 1 cancelled: %s
close 1
defer 1
pcall 2 cancelled: %s
close 2
defer 2]]):format(name, name)), lines(r.stdout))
      assert.equal(("coil: %s received, cancelling 3 task(s) (%s again to force)\n")
                   :format(name, sig == "sigint" and "Ctrl+C" or name), r.stderr)
      assert.is_true(r.after_signal < 5, "took " .. r.after_signal)
    end)
  end

  it("says nothing with --quiet", function()
    local r = interrupt({ "--quiet", fixture "sd_three_kinds" }, { "sigint" })
    assert.equal(2, r.signal)
    assert.equal("", r.stderr)
  end)

  it("lets cleanup await", function()
    local r = interrupt({ fixture "sd_await_cleanup" }, { "sigint" })
    assert.equal(2, r.signal)
    local slept = tonumber(r.stdout:match "cleanup slept ([%d.]+)")
    assert.is_not_nil(slept, r.stdout)
    assert.is_true(slept >= 0.09 and slept < 5, "slept " .. tostring(slept))
  end)

  it("forces a task that ignores cancellation once the grace is over", function()
    local r = interrupt({ "--grace", "0.5", fixture "sd_stubborn" }, { "sigint" })
    assert.equal(2, r.signal)
    assert.matches("coil: task 'stubborn' ignored cancellation for [%d.]+ s; closed by force at:\n", r.stderr)
    assert.matches("sd_stubborn%.lua:6", r.stderr)
    assert.matches("stubborn closed", r.stdout)
    assert.matches("stubborn defer", r.stdout)
    assert.is_true(r.after_signal >= 0.45 and r.after_signal < 5, "took " .. r.after_signal)
  end)

  it("forces at once on a second interrupt", function()
    local r = interrupt({ fixture "sd_stubborn" }, { "sigint", 0.2, "sigint" })
    assert.equal(2, r.signal)
    assert.matches("coil: task 'stubborn' ignored cancellation for [%d.]+ s; closed by force at:", r.stderr)
    assert.matches("stubborn closed", r.stdout)
    assert.is_true(r.after_signal < 3, "took " .. r.after_signal)
  end)

  it("runs an ordered shutdown: hooks, in-flight work, session last", function()
    local r = interrupt({ fixture "sd_ordered" }, { "sigterm" })
    assert.equal(15, r.signal)
    assert.equal([[
ready
intake stopped
worker finished its in-flight job
hook saw the worker done
session closed
]], r.stdout)
  end)

  it("interrupts a task that never awaits", function()
    local r = interrupt({ fixture "sd_busy" }, { "sigint" })
    assert.equal(2, r.signal)
    assert.same({ "busy cleanup", "ready", "sleeper cleanup" }, lines(r.stdout))
    assert.is_true(r.after_signal < 5)
  end)

  it("finishes handles Lua code left open or closing before the Lua state closes", function()
    local r = proc.coil({ fixture "sd_untracked_handles" }):wait(20)
    assert.equal(0, r.code, r.stderr)
    assert.equal("done\nclosed cb\n", r.stdout)
    assert.equal("", r.stderr)
  end)

  it("announces the signal even when a busy task swallows every Cancelled", function()
    local r = interrupt({ "-e", [[
      print("ready") io.stdout:flush()
      while true do pcall(function() while true do end end) end
    ]] }, { 0.2, "sigint", 0.5, "sigint", 0.5, "sigint" })
    assert.equal(2, r.signal)
    assert.matches("^coil: SIGINT received, cancelling 1 task%(s%) %(Ctrl%+C again to force%)\n", r.stderr)
  end)

  it("gives the whole grace even when the signal found a task busy", function()
    local r = interrupt({ "--grace", "1", fixture "sd_busy_then_grace" }, { 0.5, "sigint" })
    assert.equal(2, r.signal)
    assert.matches("stubborn closed", r.stdout)
    assert.is_true(r.after_signal >= 0.9, "forced after " .. r.after_signal .. " s")
  end)

  it("ends at once on a third interrupt", function()
    local r = interrupt({ "-e", [[
      local coil = require "coil"
      coil.spawn(function()
        coil.defer(function() while true do pcall(function() while true do end end) end end)
        coil.sleep(100)
      end)
      print("ready")
      coil.sleep(100)
    ]] }, { "sigint", 0.2, "sigint", 0.2, "sigint" }, { ready = "ready\n" })
    assert.equal(2, r.signal)
  end)

  it("closes handles the script left open and exits promptly", function()
    local r = interrupt({ fixture "sd_leftovers" }, { "sigint" })
    assert.equal(2, r.signal)
    assert.is_true(r.after_signal < 3)
    local r2 = proc.run({ fixture "sd_leftovers", "self" })
    assert.equal(0, r2.code)
    assert.is_true(r2.elapsed < 5)
  end)

  it("takes SIGINT over with on_signal, and gives it back on close", function()
    local p = proc.coil({ fixture "sd_on_signal" })
    assert.is_true(p:wait_for "ready\n")
    p:kill "sigint"
    assert.is_true(p:wait_for "ready again\n")
    p:kill "sigint"
    local r = p:wait()
    assert.matches("handled SIGINT", r.stdout)
    assert.equal(2, r.signal)
  end)

  it("keeps a process waiting on stopping() alive until a signal", function()
    local r = interrupt({ fixture "sd_stopping_wait" }, { 0.2, "sigterm" })
    assert.equal(15, r.signal)
    assert.matches("saw stopping", r.stdout)
    assert.not_matches("deadlock", r.stderr)
  end)

  it("prints a task dump on SIGUSR1 and goes on", function()
    local r = interrupt({ fixture "sd_dump" }, { "sigusr1" })
    assert.equal(0, r.code)
    assert.equal(0, r.signal)
    assert.matches("^coil: task dump: 2 task%(s%)\n", r.stderr)
    assert.matches("task 'sleeper' %(suspended in sleep, age [%d.]+ s%)", r.stderr)
    assert.matches("sd_dump%.lua:2", r.stderr)
    assert.matches("finished normally", r.stdout)
  end)

  it("cancels 100 000 sleeping tasks, every defer once, quickly", function()
    local r = interrupt({ fixture "sd_many" }, { "sigint" }, { limit = 60 })
    assert.equal(2, r.signal)
    assert.equal("ready\ncount 100000\n", r.stdout)
    assert.equal("coil: SIGINT received, cancelling 100001 task(s) (Ctrl+C again to force)\n", r.stderr)
    assert.is_true(r.after_signal < 10, "took " .. r.after_signal)
  end)

  it("forces 20 000 tasks that ignore cancellation, quickly", function()
    local r = interrupt({ "--grace", "0.2", fixture "sd_many_stubborn" }, { "sigint" },
                        { limit = 60 })
    assert.equal(2, r.signal)
    assert.equal("ready\nclosed 20000\n", r.stdout)
    local _, forced = r.stderr:gsub("closed by force at:", "")
    assert.equal(20000, forced)
    assert.is_true(r.after_signal < 20, "took " .. r.after_signal)
  end)

  it("does not wait forever for a request stuck in the threadpool", function()
    local fifo = os.tmpname()
    os.remove(fifo)
    assert.is_true(os.execute("mkfifo " .. fifo))
    local r = interrupt({ "--grace", "0.5", fixture "sd_stuck_request", fifo }, { "sigint" })
    os.remove(fifo)
    assert.equal(2, r.signal)
    assert.matches("a request still in flight did not finish", r.stderr)
    assert.is_true(r.after_signal < 5, "took " .. r.after_signal)
  end)

  it("os.exit(0) with a request stuck in the threadpool ends after the grace", function()
    local fifo = os.tmpname()
    os.remove(fifo)
    assert.is_true(os.execute("mkfifo " .. fifo))
    local r = proc.coil({ "--grace", "0.5", "-e", ([[
      require("luv").fs_open(%q, "r", 0, function() end)
      require("coil").sleep(0.2)
      print "exiting"
      os.exit(0)]]):format(fifo) }):wait(20)
    os.remove(fifo)
    assert.is_false(r.timed_out, "coil did not end (libuv's exit joined the stuck thread?)")
    assert.equal(0, r.code)
    assert.equal("exiting\n", r.stdout)
    assert.matches("a request still in flight did not finish", r.stderr)
  end)

  it("finishes what finalizers start at the teardown, in the state still open", function()
    local r = proc.coil({ fixture "td_finalizer_io" }):wait(20)
    assert.is_false(r.timed_out, "coil did not end")
    assert.equal(0, r.code)
    -- the request's callback ran (before or after the close's, as the
    -- threadpool goes); the timer was closed before it fired
    assert.same({ "closed by the finalizer", "ready", "stat\tdirectory" }, lines(r.stdout))
    assert.is_falsy(stock.sanitizer_report(r.stderr), r.stderr)
    assert.equal("", r.stderr)
  end)

  it("gives up on a stuck request a finalizer started, after the grace", function()
    local fifo = os.tmpname()
    os.remove(fifo)
    assert.is_true(os.execute("mkfifo " .. fifo))
    local r = proc.coil({ "--grace", "0.5", fixture "td_finalizer_io", fifo }):wait(20)
    os.remove(fifo)
    assert.is_false(r.timed_out, "coil did not end")
    assert.equal(0, r.code)
    assert.matches("^ready\n", r.stdout)
    assert.is_nil(r.stdout:find "fifo opened")
    assert.matches("a request still in flight did not finish", r.stderr)
  end)

  it("keeps a signal that was ignored at start ignored (nohup)", function()
    local r = proc.start("/bin/sh", { "-c", "trap '' HUP; exec " .. COIL_BIN ..
      " -e 'local c = require \"coil\"; print(\"ready\"); c.sleep(0.3); print(\"survived\")'" })
    assert.is_true(r:wait_for "ready\n")
    r:kill "sighup"
    local res = r:wait()
    assert.equal(0, res.code)
    assert.matches("survived", res.stdout)
  end)
end)
