-- The TCP echo server of bench/workers: `coil --workers N echo.lua port`.
-- Every worker listens on the same port (reuseport); the kernel spreads the
-- connections. Each connection echoes what it reads.
local coil = require "coil"
local port = assert(tonumber(arg[1]), "usage: echo.lua port")
assert(coil.net.listen("127.0.0.1", port, function(stream)
  while true do
    local data = stream:read()
    if not data then break end
    stream:write(data)
  end
end, { reuseport = true }))
coil.service.ready()
