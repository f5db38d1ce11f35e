-- W1 spawn, the floor: bare Lua 5.4 coroutines, no runtime. N coroutines
-- are created; each yields once (its "loop turn") and returns i; the loop
-- resumes every one of them twice and sums what they return. All N are
-- alive at once, as in every peer's W1.
local N = tonumber(arg[1]) or 100000
local create, resume, yield = coroutine.create, coroutine.resume, coroutine.yield

local function task(i)
  yield()
  return i
end

local cos = {}
for i = 0, N - 1 do
  local co = create(task)
  assert(resume(co, i))
  cos[i + 1] = co
end
local sum = 0
for i = 1, N do
  local ok, v = resume(cos[i])
  assert(ok, v)
  sum = sum + v
end
print("sum " .. sum)
