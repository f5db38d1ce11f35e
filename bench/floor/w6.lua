-- W6 churn, the floor: N bare coroutines started over time, at most 1000
-- alive at once; each yields once (its loop turn) and returns. The loop
-- fills the window, then resumes every queued coroutine once per turn.
local N = tonumber(arg[1]) or 1000000
local WINDOW = 1000
local create, resume, yield, status = coroutine.create, coroutine.resume, coroutine.yield,
  coroutine.status

local sum, done = 0, 0
local function task(i)
  yield()
  sum = sum + i
  done = done + 1
end

local queue, head, tail = {}, 1, 0 -- coroutines to resume on the next turn
local alive, started = 0, 0
while started < N or alive > 0 do
  while alive < WINDOW and started < N do -- start tasks into free slots
    local co = create(task)
    assert(resume(co, started))
    started, alive = started + 1, alive + 1
    tail = tail + 1
    queue[tail] = co
  end
  local last = tail -- one turn: each queued coroutine once
  while head <= last do
    local co = queue[head]
    queue[head] = nil
    head = head + 1
    assert(resume(co))
    if status(co) == "dead" then
      alive = alive - 1
    else
      tail = tail + 1
      queue[tail] = co
    end
  end
end
print(("churned %d sum %d"):format(done, sum))
