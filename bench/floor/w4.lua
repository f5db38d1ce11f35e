-- W4 shutdown, the floor: N bare coroutines are suspended ("asleep"). The
-- program says READY and spins until SIGINT, which the stock lua5.4
-- interpreter turns into an "interrupted!" error that pcall catches. Then
-- each coroutine is resumed with a cancellation, its cleanup yields once
-- (one loop turn), and a second pass lets each count itself.
local N = tonumber(arg[1]) or 100000
local create, resume, yield = coroutine.create, coroutine.resume, coroutine.yield
local CANCEL = {}

local cleaned = 0
local function sleeper()
  local why = yield() -- asleep until cancelled
  assert(why == CANCEL)
  yield() -- the cleanup's loop turn
  cleaned = cleaned + 1
end

local cos = {}
for i = 1, N do
  local co = create(sleeper)
  assert(resume(co))
  cos[i] = co
end
local ok, err = pcall(function() -- READY inside: SIGINT may come at once
  print("READY")
  io.stdout:flush()
  while true do end
end)
assert(not ok and tostring(err):find("interrupted", 1, true), err)
for i = 1, N do assert(resume(cos[i], CANCEL)) end
for i = 1, N do assert(resume(cos[i])) end
print("cleaned " .. cleaned)
