-- stdin_filter.lua: numbers the lines of its standard input, upper-cased,
-- while a ticker task keeps running beside it: reading coil.io.stdin never
-- blocks the other tasks (a terminal, a pipe, a file: all the same), and
-- Ctrl+C while it waits for input ends it at once.
--
--   printf 'one\ntwo\n' | build/coil examples/stdin_filter.lua
--   build/coil examples/stdin_filter.lua          (type lines; Ctrl+D ends)
local coil = require "coil"

local out, err = coil.io.stdout, coil.io.stderr
local ticks = 0
local ticker = coil.spawn(function()
  while true do
    coil.sleep(0.1)
    ticks = ticks + 1
  end
end)

local n = 0
while true do
  local line, e = coil.io.stdin:read_line()
  if not line then
    if e then err:write("stdin_filter: " .. e .. "\n") end
    break
  end
  n = n + 1
  out:write(("%4d  %s\n"):format(n, line:upper()))
end
ticker:cancel()
err:write(("stdin_filter: %d line(s); the ticker ticked %d time(s) meanwhile\n"):format(n, ticks))
out:drain()
