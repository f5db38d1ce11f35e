-- The API fuzzer (spec/fixtures/fuzz_run.lua, the API list in
-- spec/support/fuzz_api.lua): batches of random calls with hostile
-- arguments, each batch a coil process with a time limit, so a crash, a
-- hang or a sanitizer report fails one batch and names its seed.
--
-- COIL_SEED=n replays from seed n; COIL_FUZZ_ITERATIONS (default 6000) is
-- how many calls in all, 300 per batch. A failure says how to replay it.
--
-- Then unit specs for what the fuzzer found in the Lua files: methods
-- called with a wrong self, a signal watcher left open.
local coil = require "coil"
local coil_core = require "coil.core"
local proc = require "spec.support.proc"
local stock = require "spec.support.stock"

local PER_BATCH = 300

describe("the API fuzzer", function()
  local fixed = tonumber(os.getenv "COIL_SEED" or "")
  local base = fixed or (os.time() % 100000) * 1000
  local total = tonumber(os.getenv "COIL_FUZZ_ITERATIONS" or "6000")
  local batches = math.max(1, math.ceil(total / PER_BATCH))

  it(("makes %d calls in %d batches, none crashes, hangs or answers out of " ..
      "contract (seeds from %d)"):format(total, batches, base), function()
    local calls, known, skipped, ends = 0, {}, nil, {}
    -- one batch: a coil process, its directory removed after it
    local function run_batch(seed, n)
      local p = proc.coil { "--grace", "1", "spec/fixtures/fuzz_run.lua", tostring(seed), tostring(n) }
      local r = p:wait(60)
      local dir = r.stdout:match "\ntmp (/[^\n]+)"
      if dir then
        proc.start("sh", { "-c", 'chmod -R u+rwx "$1" && rm -rf "$1"', "sh", dir }):wait(30)
      end
      return r
    end

    -- raises (a busted failure naming the seed) unless the batch kept the contract
    local function check_batch(r, seed, n)
      local why = ("seed %d (replay: COIL_SEED=%d COIL_FUZZ_ITERATIONS=%d)\n--- stdout:\n%s\n--- stderr:\n%s")
        :format(seed, seed, n, r.stdout, r.stderr:sub(-6000))
      -- proc's wait kills an overstayer with SIGKILL: any other end was its own
      assert.is_false(r.timed_out, (r.code and r.signal ~= 9 and
        ("the batch ended (status %d, signal %d) but its output stayed open " ..
         "(a child it left behind?): "):format(r.code, r.signal)
        or "the batch hung: ") .. why)
      assert.is_falsy(stock.sanitizer_report(r.stderr), why)
      assert.is_nil(r.stderr:find("internal error", 1, true), why)
      for _, kind in ipairs { "BAD", "HANG", "LEFT" } do
        assert.is_nil(r.stdout:match("\n" .. kind .. " [^\n]*"), why)
      end
      local plan, status = r.stdout:match "^plan (%a+) (%d+)"
      assert.is_not_nil(plan, why)
      if plan == "sigint" then
        -- the process dies by the signal (or finished first: then status 0)
        assert.is_true(r.signal == 2 or (r.code == 0 and r.stdout:find "\ndone ") ~= nil, why)
      else
        assert.equal(0, r.signal, why)
        assert.equal(plan == "normal" and 0 or tonumber(status), r.code, why)
      end
      if plan == "normal" then assert.matches("\ndone %d+ calls, 0 bad", r.stdout, nil, false, why) end
    end

    -- what went wrong with a batch, in one line
    local function summary(r)
      if r.timed_out then
        return r.signal ~= 9 and "ended, its output held open" or "hung (killed after 60 s)"
      end
      return r.stderr:match "ERROR: [^\n]*" or r.stderr:match "runtime error: [^\n]*"
        or r.stdout:match "\n(BAD [^\n]*)" or r.stdout:match "\n(HANG [^\n]*)"
        or r.stdout:match "\n(LEFT [^\n]*)"
        or ("status %s, signal %s"):format(tostring(r.code), tostring(r.signal))
    end

    local strict = os.getenv "COIL_FUZZ_STRICT" == "1"
    local intermittent = {}
    for seed = base, base + batches - 1 do
      local n = math.min(PER_BATCH, total - (seed - base) * PER_BATCH)
      local r = run_batch(seed, n)
      local ok, err = pcall(check_batch, r, seed, n)
      if not ok then
        if strict then error(err, 0) end
        -- once more: a repeatable failure fails the spec; one that does not
        -- come back (a race in coil's teardown, say) is listed below
        local first = r
        r = run_batch(seed, n)
        check_batch(r, seed, n)
        intermittent[#intermittent + 1] = ("seed %d: %s"):format(seed, summary(first))
      end
      local plan = r.stdout:match "^plan (%a+)"
      ends[plan] = (ends[plan] or 0) + 1
      calls = calls + (tonumber(r.stdout:match "\ndone (%d+) calls") or n)
      for line in r.stdout:gmatch "\nKNOWN ([^\n]*)" do
        local reason, name = line:match "^([^:]+): ([%w_.:]+)"
        local what = tostring(name) .. ": " .. tostring(reason)
        known[what] = (known[what] or 0) + 1
      end
      skipped = skipped or r.stdout:match "\nskipped %b() ([^\n]*)"
    end
    -- the figures, for the log
    local how = {}
    for k, v in pairs(ends) do how[#how + 1] = k .. " " .. v end
    table.sort(how)
    local lines = { ("\nfuzz: %d calls in %d batches (ends: %s)")
                    :format(calls, batches, table.concat(how, ", ")) }
    if skipped then lines[#lines + 1] = "fuzz: not in this build: " .. skipped end
    local names = {}
    for what in pairs(known) do names[#names + 1] = what end
    table.sort(names)
    for _, what in ipairs(names) do
      lines[#lines + 1] = ("fuzz: known, not yet fixed: %s (%d batch(es))"):format(what, known[what])
    end
    for _, line in ipairs(intermittent) do
      lines[#lines + 1] = "fuzz: INTERMITTENT (failed once, passed on a rerun): " .. line
    end
    print(table.concat(lines, "\n"))
  end)
end)

describe("methods called with a wrong self", function()
  local function objects()
    return {
      event = coil.event(), queue = coil.queue(1), semaphore = coil.semaphore(1),
      lock = coil.lock(), shutdown_hook = coil.on_shutdown(function() end),
      signal_handle = coil.on_signal("SIGUSR2", function() end),
      call_later = coil.call_later(60, function() end),
    }
  end

  it("raise 'coil: bad self to <kind>:<method> (a coil.<kind> expected, got <what>)'", function()
    local objs = objects()
    local wrong = { {}, "x", 1, true, coil.event(), coil.spawn(function() end),
                    setmetatable({}, { __metatable = getmetatable(objs.queue) }) }
    for kind, obj in pairs(objs) do
      for name, method in pairs(getmetatable(obj).__index) do
        if type(method) == "function" and not name:match "^_" then
          for _, self in ipairs(wrong) do
            if getmetatable(self) == getmetatable(obj) then self = {} end
            local ok, err = pcall(method, self)
            assert.is_false(ok, kind .. ":" .. name)
            assert.matches("^coil: bad self to " .. kind .. ":" .. name ..
                           " %(a coil%." .. kind .. " expected, got [%w._]+%)$", err)
          end
          local ok, err = pcall(method)
          assert.is_false(ok)
          assert.matches("got nil%)$", err)
        end
      end
    end
    objs.call_later:cancel()
    objs.signal_handle:close()
    objs.shutdown_hook:remove()
    coil.sleep(0) -- the task among the wrong selves ends
  end)

  it("name what they got, and a lock is not a semaphore", function()
    local q, lock = coil.queue(), coil.lock()
    assert.error_matches(function() q.put({}, 1) end,
      "coil: bad self to queue:put (a coil.queue expected, got table)", 1, true)
    assert.error_matches(function() lock.acquire(coil.semaphore(1)) end,
      "coil: bad self to lock:acquire (a coil.lock expected, got coil.semaphore)", 1, true)
    assert.error_matches(function() coil.semaphore(1).value(lock) end,
      "coil: bad self to semaphore:value (a coil.semaphore expected, got coil.lock)", 1, true)
  end)

  it("leave the methods working on the right self", function()
    local lock, sem = coil.lock(), coil.semaphore(2)
    assert.is_true(lock:acquire())
    assert.is_true(lock:locked())
    lock:release()
    assert.equal(3, sem:with(function(a, b) return a + b end, 1, 2))
    assert.equal(2, sem:value())
    assert.equal("coil.lock (free, 0 waiting)", tostring(lock))
    assert.equal("coil.semaphore (2 of 2 free, 0 waiting)", tostring(sem))
  end)
end)

describe("task methods and coil.shield given something else", function()
  it("raise one coil: line naming what they got", function()
    local t = coil.spawn(function() end)
    for _, name in ipairs { "await", "cancel", "done", "cancelled", "result", "error", "name", "on_done" } do
      local ok, err = pcall(t[name], coil.queue())
      assert.is_false(ok)
      assert.matches("^coil: bad argument #1 %(a coil%.task expected, got coil%.queue%)$", err)
    end
    assert.error_matches(function() coil.shield("x") end,
      "coil: bad argument #1 to 'shield' (a coil.task expected, got string)", 1, true)
    t:await()
  end)
end)

describe("coil.on_signal", function()
  it("closes its watcher when the last handle on a signal closes, whichever opened it", function()
    local before = #coil_core.open_handles()
    local h1 = coil.on_signal("SIGWINCH", function() end)
    local h2 = coil.on_signal("SIGWINCH", function() end)
    h1:close()
    assert.equal(before + 1, #coil_core.open_handles())
    h2:close()
    coil.sleep(0)
    assert.equal(before, #coil_core.open_handles())
  end)
end)
