-- W5 TCP echo: a coil.net server, a task per connection that writes back
-- every chunk it reads. Prints READY <port>; runs until SIGTERM.
local coil = require "coil"
local port = tonumber(arg[1]) or 0

local server = assert(coil.net.listen("127.0.0.1", port, function(stream)
  while true do
    local data = stream:read()
    if not data or not stream:write(data) then break end
  end
end))
local _, bound = server:address()
print("READY " .. bound)
io.stdout:flush()
