-- Random trees of tasks interrupted at random moments, thousands of seeds
-- per run: every defer runs exactly once, no task survives, nothing is left
-- open, the process never hangs or crashes.
--
-- Two parts. Most seeds run in a few stock lua5.4 processes, one coil.run
-- per tree, interrupted by a real SIGINT the process sends itself (the same
-- handler, hook and shutdown a Ctrl+C goes through; coil.run raises
-- coil.Interrupted and leaves the loop reusable):
-- spec/fixtures/stress_trees.lua. A few seeds run as real `coil` processes
-- given a real SIGINT from outside: spec/fixtures/sd_stress.lua.
--
-- A failure prints its seed. Replay one with COIL_STRESS_SEED=n (both
-- parts run that seed only); COIL_STRESS_TREES (default 10000) and
-- COIL_STRESS_RUNS (default 6) set how many seeds each part runs.
local coil = require "coil"
local uv = require "luv"
local proc = require "spec.support.proc"
local stock = require "spec.support.stock"

local fixed = tonumber(os.getenv("COIL_STRESS_SEED") or "")
local base = fixed or (os.time() % 100000) * 100000

local function check(seed)
  math.randomseed(seed)
  local delay = math.random() * 0.3
  local twice = math.random() < 0.25
  local p = proc.coil({ "--grace", "0.3", "spec/fixtures/sd_stress.lua", tostring(seed) })
  assert(p:wait_for("ready\n"), "seed " .. seed .. ": no ready line: " .. p.stderr)
  coil.sleep(delay)
  p:kill("sigint")
  if twice then
    coil.sleep(0.05)
    if not p.code then p:kill("sigint") end
  end
  local r = p:wait(15)
  local why = "seed " .. seed .. " (replay: COIL_STRESS_SEED=" .. seed .. ")\n" .. r.stderr
  assert.is_false(r.timed_out, why)
  -- it either finished on its own before the signal, or died by SIGINT
  assert.is_true(r.signal == 2 or (r.code == 0 and r.signal == 0), why)
  local spawned, deferred = {}, {}
  for kind, id in r.stdout:gmatch "([SD]) (%d+)" do
    local t = kind == "S" and spawned or deferred
    t[id] = (t[id] or 0) + 1
  end
  for id in pairs(spawned) do
    assert.equal(1, deferred[id], "defer of task " .. id .. " ran " ..
                 tostring(deferred[id]) .. " times; " .. why)
  end
  for id in pairs(deferred) do assert.is_not_nil(spawned[id], why) end
  assert.not_matches("failed and nobody awaited", r.stderr, 1, true)
  assert.not_matches("internal error", r.stderr, 1, true)
  assert.is_falsy(stock.sanitizer_report(r.stderr), why)
end

-- What the trees' processes may write on stderr: the shutdown's own lines
-- (announcement, swallowed cancellations, forced tasks and their
-- tracebacks, a forced cleanup's await failing). Anything else is a finding.
local expected_lines = {
  "^coil: SIGINT received, cancelling %d+ task%(s%)",
  "^coil: task '[^']+' swallowed its cancellation",
  "^coil: task '[^']+' ignored cancellation for [%d.]+ s; closed by force at:$",
  "^coil: error in a deferred function of task '[^']+': coil: task '[^']+' " ..
    "was closed by force; %a+ cannot wait$",
  "^%s",
}

local function unexpected(stderr)
  for line in stderr:gmatch "[^\n]+" do
    local known = false
    for _, pattern in ipairs(expected_lines) do
      if line:find(pattern) then known = true break end
    end
    if not known then return line end
  end
end

describe("randomized shutdown stress", function()
  local trees = fixed and 1 or tonumber(os.getenv("COIL_STRESS_TREES") or "10000")
  it(("survives %d random trees in stock lua5.4, each interrupted by SIGINT " ..
      "(seeds from %d)"):format(trees, base), function()
    -- chunks of 2500 trees, two processes at a time: a tree mostly waits
    -- (for timers, for the loop), so two share the machine well
    local chunk, started = 2500, uv.hrtime()
    local running = {}
    local function check_chunk(c)
      local first, n = c.first, c.n
      local r = c.p:wait(120)
      local failed = r.stdout:match "FAIL seed (%d+)"
      local why = ("seeds %d..%d%s:\n%s%s"):format(first, first + n - 1,
        failed and " (replay: COIL_STRESS_SEED=" .. failed .. ")" or "",
        r.stdout, r.stderr:sub(-4000))
      assert.is_false(r.timed_out, why)
      assert.is_falsy(stock.sanitizer_report(r.stderr), why)
      assert.equal(0, r.code, why)
      assert.equal(0, r.signal, why)
      assert.matches("^ok " .. n .. " ", r.stdout, nil, false)
      local line = unexpected(r.stderr)
      assert.is_nil(line, "unexpected on stderr: " .. tostring(line) .. "\n" .. why)
    end
    local ok, err = pcall(function()
      for first = base, base + trees - 1, chunk do
        local n = math.min(chunk, base + trees - first)
        running[#running + 1] = { first = first, n = n, p = stock.lua(
          "spec/fixtures/stress_trees.lua", { tostring(first), tostring(n) }) }
        if #running == 2 then check_chunk(table.remove(running, 1)) end
      end
      while #running > 0 do check_chunk(table.remove(running, 1)) end
    end)
    if not ok then
      -- a failed chunk: the other one is not left running
      for _, c in ipairs(running) do
        c.p:kill "sigkill"
        c.p:wait(10)
      end
      error(err, 0)
    end
    local s = (uv.hrtime() - started) / 1e9
    print(("\nstress: %d trees in %.1f s, %.0f seeds/s"):format(trees, s, trees / s))
  end)

  local count = fixed and 1 or tonumber(os.getenv("COIL_STRESS_RUNS") or "6")
  it(("survives %d random trees, each a coil process given a real SIGINT " ..
      "(seeds from %d)"):format(count, base), function()
    for seed = base, base + count - 1 do check(seed) end
  end)
end)
