-- greedy: misbehaves on purpose. From its third event on it hoards memory
-- without bound. The host gave every plugin a memory_limit: the allocation
-- that crosses it fails ("not enough memory"), coil shuts this runtime down
-- with status 1 (its cleanup still runs, with a quarter more room), and the
-- host logs the status while the other plugins go on.
local coil = require "coil"

local events = 0

function on_event(name, data)
  events = events + 1
  if events < 3 then return "fine so far" end
  local hoard = {}
  for i = 1, math.huge do
    hoard[i] = ("x"):rep(1000) .. i
    if i % 100 == 0 then coil.sleep(0) end  -- still a good citizen
  end
end

coil.on_shutdown(function()
  print("greedy: cleanup ran after " .. events .. " events")
end)

print("greedy: started")
