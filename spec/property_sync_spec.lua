-- Property tests for queue, semaphore and event: random producers, consumers
-- and cancellations, many seeds per run. Scheduling only uses sleep(0), so a
-- seed replays exactly.
--
--   COIL_SEED=n        run only seed n (replay a failure)
--   COIL_PROP_RUNS=k   seeds per property (default 2000)
--
-- A failure names its seed: "seed 1234: ... (replay with COIL_SEED=1234)".
local coil = require "coil"
local util = require "spec.support.util"
local turns = util.turns


local random = math.random

local function for_seeds(check) util.for_seeds(check, 2000) end

local function check(cond, fmt, ...)
  if not cond then error(fmt:format(...), 2) end
end

-- Waits until every task in the list is done (without owning them), for at
-- most `limit` turns; raises then unless `lenient`.
local function settle(tasks, limit, lenient)
  for _ = 1, limit or 1000 do
    local all = true
    for _, t in ipairs(tasks) do
      if not t:done() then all = false break end
    end
    if all then return true end
    coil.sleep(0)
  end
  if not lenient then error("tasks did not settle") end
  return false
end

describe("queue properties", function()
  it("no item lost or duplicated, FIFO per producer, under random cancellations", function()
    for_seeds(function()
      local maxsize = random(0, 4)
      local q = coil.queue(maxsize)
      local put_ok, got, failed_put = {}, {}, {}
      local tasks, producers, consumers = {}, {}, {}

      for p = 1, random(1, 4) do
        local count = random(0, 15)
        local t = coil.spawn(function()
          for k = 1, count do
            local item = p * 1000 + k
            if random() < 0.3 then coil.sleep(0) end
            local ok, res
            if random() < 0.2 then
              ok, res = pcall(q.try_put, q, item)
              if ok and not res then ok = nil end -- full: try again later
            else
              ok, res = pcall(q.put, q, item)
            end
            if ok then
              put_ok[item] = true
            elseif ok == false then
              failed_put[item] = true
              if coil.is_cancelled(res) then error(res, 0) end
              check(res:match "closed queue", "put raised %s", tostring(res))
              return
            end
          end
        end)
        producers[#producers + 1] = t
        tasks[#tasks + 1] = t
      end

      for c = 1, random(1, 4) do
        got[c] = {}
        local t = coil.spawn(function()
          while true do
            if random() < 0.3 then coil.sleep(0) end
            local v, why
            if random() < 0.2 then
              v, why = q:try_get()
              if v == nil and why == "empty" then coil.sleep(0) end
            else
              v, why = q:get()
            end
            if v == nil and why == "closed" then return end
            if v ~= nil then table.insert(got[c], v) end
          end
        end)
        consumers[#consumers + 1] = t
        tasks[#tasks + 1] = t
      end

      -- the driver: random cancellations while things run
      for _ = 1, random(5, 60) do
        coil.sleep(0)
        if random() < 0.15 then
          local victim = tasks[random(#tasks)]
          victim:cancel("property")
        end
      end
      -- a producer may wait on a full queue forever (every consumer was
      -- cancelled): closing the queue releases it (its put raises)
      settle(producers, 200, true)
      q:close()
      settle(tasks)

      local leftover = {}
      while true do
        local v = q:try_get()
        if v == nil then break end
        leftover[#leftover + 1] = v
      end

      local seen = {}
      local function see(v, where)
        check(put_ok[v], "%s got %d which no put delivered", where, v)
        check(not seen[v], "%d delivered twice", v)
        check(not failed_put[v], "%d came from a put that raised", v)
        seen[v] = true
      end
      for c, list in ipairs(got) do
        local last = {}
        for _, v in ipairs(list) do
          see(v, "consumer " .. c)
          local p, k = v // 1000, v % 1000
          check((last[p] or 0) < k, "consumer %d got %d after %d:%d", c, v, p, last[p] or 0)
          last[p] = k
        end
      end
      for _, v in ipairs(leftover) do see(v, "the final drain") end
      for v in pairs(put_ok) do check(seen[v], "item %d was lost", v) end
      check(q:size() == 0, "size %d after the drain", q:size())
    end)
  end)

  it("waiting getters are served in the order they came; a cancelled one takes nothing", function()
    for_seeds(function()
      local q = coil.queue()
      local n = random(1, 8)
      local getters, got, events = {}, {}, {}
      for i = 1, n do
        getters[i] = coil.spawn(function()
          got[i] = q:get()
        end)
      end
      turns(1) -- all parked, in order
      local next_item, cancelled_at = 1, {}
      local live = n
      local step = 0
      while live > 0 and step < 100 do
        step = step + 1
        local r = random()
        if r < 0.3 then
          local i = random(n)
          if not getters[i]:done() and not cancelled_at[i] then
            getters[i]:cancel()
            cancelled_at[i] = #events + 1
            events[#events + 1] = "cancel " .. i
          end
        elseif r < 0.6 then
          q:put(next_item)
          events[#events + 1] = "put " .. next_item
          next_item = next_item + 1
        else
          coil.sleep(0)
        end
        live = 0
        for i = 1, n do if not getters[i]:done() then live = live + 1 end end
      end
      q:close()
      settle(getters)
      local last, seen = 0, {}
      for i = 1, n do
        local v = got[i]
        if v ~= nil then
          check(v > last, "getter %d got %d after an earlier getter got %d (%s)",
            i, v, last, table.concat(events, ", "))
          last = v
          seen[v] = true
        else
          check(getters[i]:cancelled() or getters[i]:done(),
            "getter %d neither served nor cancelled", i)
        end
      end
      while true do
        local v = q:try_get()
        if v == nil then break end
        check(not seen[v], "%d both got and left in the queue", v)
        seen[v] = true
      end
      for v = 1, next_item - 1 do check(seen[v], "item %d lost (%s)", v, table.concat(events, ", ")) end
    end)
  end)
end)

describe("semaphore properties", function()
  it("never more than n holders, no permit leaked, under random cancellations", function()
    for_seeds(function()
      local n = random(1, 3)
      local s = random() < 0.2 and n == 1 and coil.lock() or coil.semaphore(n)
      local held, most = 0, 0
      local function hold()
        held = held + 1
        most = math.max(most, held)
        check(held <= n, "%d holders of %d permits", held, n)
        local ok, err = pcall(turns, random(0, 3))
        held = held - 1
        if not ok then error(err, 0) end
      end
      local tasks = {}
      for _ = 1, random(1, 8) do
        tasks[#tasks + 1] = coil.spawn(function()
          for _ = 1, random(1, 5) do
            local style = random(3)
            if style == 1 then
              s:with(hold)
            elseif style == 2 then
              s:acquire()
              local ok, err = pcall(hold)
              s:release()
              if not ok then error(err, 0) end
            else
              if s:try_acquire() then
                local ok, err = pcall(hold)
                s:release()
                if not ok then error(err, 0) end
              else
                coil.sleep(0)
              end
            end
          end
        end)
      end
      for _ = 1, random(5, 60) do
        coil.sleep(0)
        if random() < 0.15 then tasks[random(#tasks)]:cancel() end
      end
      settle(tasks)
      check(held == 0, "%d still held", held)
      check(s:value() == n, "%d of %d permits free at the end", s:value(), n)
      for _, t in ipairs(tasks) do
        local err = t:error()
        check(err == nil or coil.is_cancelled(err), "task failed: %s", tostring(err))
      end
    end)
  end)

  it("waiters are served in the order they came", function()
    for_seeds(function()
      local s = coil.semaphore(1)
      s:acquire()
      local n = random(1, 8)
      local order, waiters, cancelled = {}, {}, {}
      for i = 1, n do
        waiters[i] = coil.spawn(function()
          s:acquire()
          order[#order + 1] = i
          s:release()
        end)
      end
      turns(1)
      local released = false
      for _ = 1, random(1, 20) do
        local r = random()
        if r < 0.3 then
          local i = random(n)
          if not waiters[i]:done() then
            waiters[i]:cancel()
            cancelled[i] = true
          end
        elseif r < 0.45 and not released then
          s:release()
          released = true
        else
          coil.sleep(0)
        end
      end
      if not released then s:release() end
      settle(waiters)
      for k = 2, #order do
        check(order[k - 1] < order[k], "served %s", table.concat(order, ","))
      end
      for i = 1, n do
        if not cancelled[i] then
          check(waiters[i]:error() == nil, "waiter %d: %s", i, tostring(waiters[i]:error()))
        end
      end
      check(s:value() == 1, "permit leaked: %d free", s:value())
    end)
  end)
end)

describe("event properties", function()
  it("every waiter not cancelled before the set wakes exactly once", function()
    for_seeds(function()
      local e = coil.event()
      local n = random(1, 8)
      local woke, waiters, log = {}, {}, {}
      for i = 1, n do
        waiters[i] = coil.spawn(function()
          e:wait()
          woke[i] = (woke[i] or 0) + 1
        end)
      end
      turns(1)
      local set_at, cancel_at, clock = nil, {}, 0
      for _ = 1, random(1, 20) do
        clock = clock + 1
        local r = random()
        if r < 0.3 then
          local i = random(n)
          if not cancel_at[i] and not waiters[i]:done() then
            waiters[i]:cancel()
            cancel_at[i] = clock
            log[#log + 1] = "cancel " .. i
          end
        elseif r < 0.45 and not set_at then
          e:set()
          set_at = clock
          log[#log + 1] = "set"
        else
          coil.sleep(0)
          log[#log + 1] = "turn"
        end
      end
      if not set_at then
        clock = clock + 1
        e:set()
        set_at = clock
      end
      settle(waiters)
      for i = 1, n do
        local should_wake = not cancel_at[i] or cancel_at[i] > set_at
        if should_wake then
          check(woke[i] == 1, "waiter %d woke %s time(s) (%s)", i, tostring(woke[i]),
            table.concat(log, ", "))
        else
          check(woke[i] == nil and waiters[i]:cancelled(),
            "waiter %d cancelled before the set but woke (%s)", i, table.concat(log, ", "))
        end
      end
      check(e:_waiting() == 0, "%d waiters left", e:_waiting())
    end)
  end)
end)
