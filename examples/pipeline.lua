-- pipeline.lua: a producer feeds a bounded queue, three workers drain it.
--
-- Without an argument it runs until you press Ctrl+C (or send SIGTERM):
--   build/coil examples/pipeline.lua
-- With a number it handles that many items and ends by itself:
--   build/coil examples/pipeline.lua 12
--
-- On Ctrl+C nothing is lost: an on_shutdown hook stops the producer (an item
-- it was still putting never enters the queue), closes the queue and gives
-- the workers a moment to drain it; a worker cancelled after that with an
-- item in hand hands it back. The tally at the end accounts for every item:
-- produced = processed + handed back + left in the queue.
local coil = require "coil"

local limit = tonumber(arg and arg[1])
local queue = coil.queue(3) -- bounded: the producer waits when it is full
local produced, processed, handed_back = 0, 0, {}

local producer = coil.spawn(function()
  local n = 0
  while not limit or n < limit do
    n = n + 1
    queue:put(n) -- waits while the queue is full (back-pressure)
    produced = n
    print(("producer: item %d queued (%d in the queue)"):format(n, queue:size()))
    coil.sleep(0.05)
  end
  queue:close() -- bounded mode: the workers drain what is left and stop
  print("producer: done")
end)
producer:name("producer")

local function worker(id)
  coil.current():name("worker-" .. id)
  while true do
    local item = queue:get()
    if item == nil then -- closed and drained
      print(("worker %d: queue closed and empty, stopping"):format(id))
      return
    end
    -- from here on this worker holds the item: it must not be lost
    local ok, err = pcall(function()
      print(("worker %d: processing item %d"):format(id, item))
      coil.sleep(0.1 + 0.07 * id) -- the work
    end)
    if not ok then
      handed_back[#handed_back + 1] = item -- to be retried by the next run
      print(("worker %d: cancelled while processing item %d; handed it back")
            :format(id, item))
      error(err, 0)
    end
    processed = processed + 1
    print(("worker %d: item %d done"):format(id, item))
  end
end

-- Step 2 of the shutdown: stop intake, let the workers drain for a moment.
coil.on_shutdown(function()
  print("shutdown: stopping the producer, closing the queue")
  producer:cancel("shutdown")
  pcall(producer.await, producer)
  queue:close()
  local workers = {}
  for _, t in ipairs(coil.tasks()) do
    if t:name():match "^worker" then workers[#workers + 1] = t end
  end
  local _, pending = coil.wait(workers, { timeout = 0.25 })
  print(("shutdown: %d worker(s) still busy; they will be cancelled"):format(#pending))
end)

-- The tally runs however the main task ends: finished, or cancelled.
coil.defer(function()
  local left = {}
  while true do
    local item = queue:try_get()
    if item == nil then break end
    left[#left + 1] = item
  end
  print(("tally: produced %d = processed %d + handed back %d {%s} + left in queue %d {%s}")
        :format(produced, processed, #handed_back, table.concat(handed_back, ","),
                #left, table.concat(left, ",")))
  print(produced == processed + #handed_back + #left and "tally: nothing lost"
        or "tally: ITEMS LOST")
end)

if not limit then print("pipeline: running; press Ctrl+C to stop") end
coil.gather(function() worker(1) end, function() worker(2) end, function() worker(3) end)
print("pipeline: all items processed")
