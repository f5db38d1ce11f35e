-- W5 TCP echo: plain luv callbacks, no coroutines: each read callback
-- writes the chunk back. Prints READY <port>; runs until killed.
local uv = require "luv"
local port = tonumber(arg[1]) or 0

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", port))
assert(server:listen(511, function(err)
  assert(not err, err)
  local client = uv.new_tcp()
  server:accept(client)
  client:nodelay(true)
  client:read_start(function(rerr, data)
    if rerr or not data then
      client:close()
    else
      client:write(data)
    end
  end)
end))
print("READY " .. server:getsockname().port)
io.stdout:flush()
uv.run()
