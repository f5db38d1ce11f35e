-- gather_vs_wait.lua: the classic pitfall, done right.
--   coil.wait does not own the tasks: cancelling the waiter leaves them alone.
--   coil.gather owns them: cancelling the gatherer cancels them, and a failing
--   child cancels its siblings; either way their cleanup has finished when
--   gather raises.
-- Run: build/coil examples/gather_vs_wait.lua   (ends by itself in < 1 s)
local coil = require "coil"

local function work(name, seconds, fail)
  return coil.spawn(function()
    coil.defer(function() print("   " .. name .. ": cleanup done") end)
    print("   " .. name .. ": started")
    coil.sleep(seconds)
    if fail then error(name .. " failed", 0) end
    print("   " .. name .. ": finished")
    return name .. "'s result"
  end)
end

-- The error a task ended with, as text.
local function outcome(task)
  local ok, err = pcall(task.await, task)
  return ok and "returned" or tostring(err)
end

print("1. cancel a task waiting in coil.wait({work}): the work goes on")
local a = work("work A", 0.2)
local waiter = coil.spawn(coil.wait, { a })
coil.sleep(0.05)
waiter:cancel("changed my mind")
print("   waiter: " .. outcome(waiter))
print("   work A still running: " .. tostring(not a:done()))
print("   work A gave: " .. a:await())

print("2. cancel a task awaiting coil.gather(work): the work is cancelled")
local b = work("work B", 0.2)
local gatherer = coil.spawn(coil.gather, b)
coil.sleep(0.05)
gatherer:cancel("changed my mind")
print("   gatherer: " .. outcome(gatherer)) -- only after B's cleanup
print("   work B cancelled: " .. tostring(b:cancelled()))

print("3. one child of coil.gather fails: its siblings are cancelled first")
local ok, err = pcall(coil.gather, work("work C", 0.2), work("work D", 0.05, true))
print("   gather raised: " .. tostring(err) .. " (ok = " .. tostring(ok) .. ")")

print("4. coil.gather(list, {return_errors = true}): every outcome, nothing cancelled")
local res = coil.gather({ work("work E", 0.1), work("work F", 0.05, true) },
                       { return_errors = true })
print("   slots: " .. tostring(res[1]) .. " | " .. tostring(res[2]))
