-- W3 timers, the floor: N bare coroutines, coroutine i "sleeps" (i mod 1000)
-- ms by yielding its deadline; the loop files each one in a wheel of 1000
-- one-millisecond slots and resumes the slots in order. It does not wait
-- (bare Lua cannot sleep), so its whole run time is its overhead.
local N = tonumber(arg[1]) or 100000
local create, resume, yield = coroutine.create, coroutine.resume, coroutine.yield

local count = 0
local function task(ms)
  yield(ms)
  count = count + 1
end

local wheel = {}
for ms = 0, 999 do wheel[ms] = {} end
for i = 0, N - 1 do
  local co = create(task)
  local ok, ms = resume(co, i % 1000)
  assert(ok, ms)
  local slot = wheel[ms]
  slot[#slot + 1] = co
end
for ms = 0, 999 do
  local slot = wheel[ms]
  for j = 1, #slot do assert(resume(slot[j])) end
  wheel[ms] = nil
end
print("count " .. count)
