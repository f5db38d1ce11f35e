-- luv_plain.lua: a plain luv program, nothing of coil in it: a timer that
-- ticks and a TCP echo server, ending in uv.run(). It runs unchanged under
-- lua5.4 and under coil; under coil, Ctrl+C closes the server, the timer and
-- every connection, and the process dies by SIGINT (SPEC §7).
--
--   build/coil examples/luv_plain.lua [port]   (default 7001; 0 = any)
--   nc 127.0.0.1 7001                          (in another terminal)
local uv = require "luv"

local port = tonumber(arg and arg[1]) or 7001
io.stdout:setvbuf("line")

local ticks = 0
local timer = uv.new_timer()
timer:start(1000, 1000, function()
  ticks = ticks + 1
  print("tick " .. ticks)
end)

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", port))
assert(server:listen(128, function(err)
  assert(not err, err)
  local client = uv.new_tcp()
  server:accept(client)
  client:read_start(function(read_err, data)
    if read_err or not data then
      client:close()
    else
      client:write(data)
    end
  end)
end))
print("listening on 127.0.0.1:" .. server:getsockname().port)

uv.run()
