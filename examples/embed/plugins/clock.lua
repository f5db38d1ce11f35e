-- clock: keeps time in a task of its own; on_event reports how far it got.
-- Its cleanup is a coil.defer in that task: it runs when the host shuts the
-- plugin down (or reloads it after this file changed).
local coil = require "coil"

local ticks = 0

coil.spawn(function()
  coil.defer(function()
    print("clock: cleanup ran after " .. ticks .. " ticks")
  end)
  while true do
    coil.sleep(0.1)
    ticks = ticks + 1
  end
end):name("clock")

-- The host calls this as a task of its own, once per event.
function on_event(name, data)
  return ticks .. " ticks"
end

print("clock: started")
