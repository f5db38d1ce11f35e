-- Random trees of tasks interrupted at random moments, many seeds per run:
-- every defer runs exactly once, no task survives, the process never hangs
-- or crashes. A failure prints its seed; replay with COIL_STRESS_SEED=n.
local coil = require "coil"
local proc = require "spec.support.proc"

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
end

describe("randomized shutdown stress", function()
  local fixed = tonumber(os.getenv("COIL_STRESS_SEED") or "")
  local base = fixed or (os.time() % 100000) * 100
  local count = fixed and 1 or tonumber(os.getenv("COIL_STRESS_RUNS") or "24")
  it(("survives %d random trees (seeds from %d)"):format(count, base), function()
    for seed = base, base + count - 1 do check(seed) end
  end)
end)
