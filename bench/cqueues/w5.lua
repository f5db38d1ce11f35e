-- W5 TCP echo: a cqueues socket server, a coroutine per connection that
-- writes back whatever it reads. Prints READY <port>; runs until killed.
local cqueues = require "cqueues"
local socket = require "cqueues.socket"
local port = tonumber(arg[1]) or 0

local cq = cqueues.new()
local server = socket.listen("127.0.0.1", port)
assert(server:listen())
local _, _, bound = server:localname()
print("READY " .. bound)
io.stdout:flush()

local function echo(con)
  con:setmode("b", "bn") -- binary; writes go out at once
  -- buffers of 64 KiB, like the reads of the other servers: with cqueues'
  -- default (4 KiB) a 64 KiB echo runs 5 times slower
  con:setbufsiz(65536, 65536)
  while true do
    local data = con:read(-65536) -- whatever is there, up to 64 KiB
    if not data or not con:write(data) then break end
  end
  con:close()
end

cq:wrap(function()
  -- a connection's error (a reset at the end of the load) ends that
  -- connection only, not cq:loop() and the server
  for con in server:clients() do cq:wrap(pcall, echo, con) end
end)
assert(cq:loop())
