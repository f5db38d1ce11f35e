-- shout: answers every event after a short await, and fails on every fourth
-- one: a failing event call is reported to the host's done callback and the
-- plugin carries on. Its cleanup is an on_shutdown hook that awaits.
local coil = require "coil"

local seen = 0

function on_event(name, data)
  coil.sleep(0.02)                -- an event handler may await
  seen = seen + 1
  if data % 4 == 0 then error("shout: " .. data .. " is too loud", 0) end
  return (name .. " " .. data):upper()
end

coil.on_shutdown(function()
  coil.sleep(0.05)                -- cleanup may await too
  print("shout: cleanup ran after " .. seen .. " events")
end)

print("shout: started")
