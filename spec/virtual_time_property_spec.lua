-- Property tests for the virtual clock: random tasks sleeping random chains
-- of waits, under random timeouts, move_on_after and call_later. Every
-- event happens at exactly the virtual time it is due, events come in time
-- order, and a whole seed costs next to no real time.
--
--   COIL_SEED=n        run only seed n (replay a failure)
--   COIL_PROP_RUNS=k   seeds (default 300)
local coil = require "coil"
local uv = require "luv"
local async = require "coil.busted"

local RUNS = tonumber(os.getenv("COIL_PROP_RUNS")) or 300
local FIXED = tonumber(os.getenv("COIL_SEED"))
local BASE = FIXED or (os.time() % 100000) * 1000

local random = math.random

local function check(cond, fmt, ...)
  if not cond then error(fmt:format(...), 2) end
end

-- Milliseconds of virtual time since t0 (coil.now() counts whole ms).
local function ms_since(t0) return math.floor((coil.now() - t0) * 1000 + 0.5) end

-- The milliseconds a wait of n/1000 s lasts: rounded up, never early, as
-- in real time (4.097 * 1000 is a hair above 4097).
local function ms(n) return math.ceil(n / 1000 * 1000) end

local function one_seed()
  local t0 = coil.now()
  local log = {} -- {at = ms, due = ms, what = text}
  local function note(due, what)
    log[#log + 1] = { at = ms_since(t0), due = due, what = what }
  end

  coil.group(function(g)
    for i = 1, random(1, 6) do
      g:spawn(function()
        local due = 0
        for step = 1, random(1, 5) do
          local kind = random()
          local wait = random(0, 5000) -- ms
          if kind < 0.5 then
            coil.sleep(wait / 1000)
            due = due + ms(wait)
            note(due, ("task %d step %d slept"):format(i, step))
          elseif kind < 0.7 then
            local limit = random(1, 5000)
            local ok = pcall(coil.timeout, limit / 1000, coil.sleep, wait / 1000)
            due = due + ms(ok and wait or limit)
            note(due, ("task %d step %d timeout %s"):format(i, step, ok and "in time" or "expired"))
          elseif kind < 0.9 then
            local limit = random(1, 5000)
            local ok = coil.move_on_after(limit / 1000, coil.sleep, wait / 1000)
            due = due + ms(ok and wait or limit)
            note(due, ("task %d step %d moved on: %s"):format(i, step, tostring(not ok)))
          else
            local at = due + ms(wait)
            local done = coil.event()
            coil.call_later(wait / 1000, function()
              note(at, ("task %d step %d later"):format(i, step))
              done:set()
            end)
            done:wait()
            due = at
          end
        end
      end)
    end
  end)

  local last = -1
  for _, e in ipairs(log) do
    check(e.at == e.due, "%s at %d ms, due at %d ms", e.what, e.at, e.due)
    check(e.at >= last, "%s at %d ms came after an event at %d ms", e.what, e.at, last)
    last = e.at
  end
end

describe("virtual time properties", function()
  it("random waits fire exactly when due, in time order, at once", async(function()
    local runs = FIXED and 1 or RUNS
    local t0 = uv.hrtime()
    for i = 0, runs - 1 do
      local seed = BASE + i
      math.randomseed(seed)
      local ok, err = pcall(one_seed)
      if not ok then
        error(("seed %d: %s (replay with COIL_SEED=%d)"):format(seed, tostring(err), seed), 0)
      end
    end
    -- hours of virtual time in all; generous for a loaded machine
    assert.is_true((uv.hrtime() - t0) / 1e9 < 20)
  end, { virtual_time = true, timeout = 30 }))
end)
