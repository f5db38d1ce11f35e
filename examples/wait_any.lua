-- wait_any.lua: "wait for any, cancel the rest" with coil.race, three ways.
-- A download races a watcher that returns when the connection is lost:
--   1. the download finishes first: the watcher is cancelled;
--   2. the connection is lost first: the download is cancelled;
--   3. the racing task itself is cancelled: both are cancelled.
-- In every case the losers' cleanup has finished when race returns.
-- Run: build/coil examples/wait_any.lua   (ends by itself in < 1 s)
local coil = require "coil"

local function download(seconds)
  return function()
    coil.defer(function() print("   download: cleanup done") end)
    coil.sleep(seconds)
    return "42 bytes"
  end
end

local function watch(lost)
  return function()
    coil.defer(function() print("   watcher: cleanup done") end)
    lost:wait()
    return "connection lost"
  end
end

local function scenario(title, download_time, lose_after, cancel_after)
  print(title)
  local lost = coil.event()
  if lose_after then coil.call_later(lose_after, lost.set, lost) end
  local racer = coil.spawn(coil.race, download(download_time), watch(lost))
  if cancel_after then
    coil.sleep(cancel_after)
    racer:cancel("user pressed stop")
  end
  local ok, i, what = pcall(racer.await, racer)
  if ok then
    print(("   race returned: #%d won with %q"):format(i, what))
  else
    print("   race raised: " .. tostring(i))
  end
end

scenario("1. the download finishes first", 0.05, nil, nil)
scenario("2. the connection is lost first", 10, 0.05, nil)
scenario("3. the racing task is cancelled", 10, nil, 0.05)
