-- W2 switch, the floor: one bare coroutine yields M times to a loop that
-- resumes it at once (no I/O poll: bare Lua has none).
local M = tonumber(arg[1]) or 1000000
local resume, yield = coroutine.resume, coroutine.yield

local count = 0
local co = coroutine.create(function()
  for _ = 1, M do
    count = count + 1
    yield()
  end
end)
while coroutine.status(co) ~= "dead" do assert(resume(co)) end
print("count " .. count)
