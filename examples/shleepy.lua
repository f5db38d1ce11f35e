-- shleepy.lua: the classic "what is the correct way to clean up after an
-- interrupted event loop?", done right. Two tasks sleep 5 and 10 seconds and
-- have cleanup to do. Press Ctrl+C at any point: both are cancelled, both
-- clean up (cleanup that itself awaits included), and the process dies by
-- SIGINT, as a Unix program should. No signal code in sight.
local coil = require "coil"

local function shleepy(name, seconds)
  coil.defer(function()
    -- cleanup may await: say goodbye slowly
    coil.sleep(0.2)
    print(name .. ": cleaned up")
  end)
  print(("%s: sleeping %d s (Ctrl+C to interrupt)"):format(name, seconds))
  coil.sleep(seconds)
  print(name .. ": woke up")
end

local a = coil.spawn(shleepy, "first", 5)
local b = coil.spawn(shleepy, "second", 10)
a:await()
b:await()
print("both finished without an interrupt")
