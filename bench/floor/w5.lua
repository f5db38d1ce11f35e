-- W5 TCP echo, the floor for a Lua server: lua5.4 + luv, one bare coroutine
-- per connection, resumed straight from its read callback with each chunk
-- (no scheduler, no run queue). Prints READY <port>; runs until killed.
local uv = require "luv"
local port = tonumber(arg[1]) or 0

local function serve(client)
  local co = coroutine.create(function()
    while true do
      local data = coroutine.yield() -- the next chunk, or nil at the end
      if not data then break end
      client:write(data)
    end
    client:close()
  end)
  coroutine.resume(co)
  client:read_start(function(err, data)
    assert(coroutine.resume(co, not err and data or nil))
  end)
end

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", port))
assert(server:listen(511, function(err)
  assert(not err, err)
  local client = uv.new_tcp()
  server:accept(client)
  client:nodelay(true)
  serve(client)
end))
print("READY " .. server:getsockname().port)
io.stdout:flush()
uv.run()
