-- echo_server.lua: a TCP echo server. Each client gets its own task; it
-- sends lines and gets them back. Press Ctrl+C: the server stops accepting
-- at once, every connected client is told goodbye (cleanup that writes to
-- the socket, which stays open until that cleanup has run), and the process
-- dies by SIGINT. No signal code in sight.
--
--   build/coil examples/echo_server.lua [port [host]]   (default 7000 127.0.0.1)
--   nc 127.0.0.1 7000                                   (in another terminal)
local coil = require "coil"

local port = tonumber(arg[1]) or 7000
local host = arg[2] or "127.0.0.1"
io.stdout:setvbuf("line")

local clients = 0

local server, err = coil.net.listen(host, port, function(stream)
  -- this task is named after the peer: "127.0.0.1:50312"
  local peer = coil.current():name()
  clients = clients + 1
  print(("%s connected (%d client(s))"):format(peer, clients))
  coil.defer(function()
    clients = clients - 1
    if coil.stopping():is_set() then
      stream:write("server shutting down, goodbye\n")
    end
    print(peer .. " gone")
  end)

  stream:write("welcome, " .. peer .. "\n")
  while true do
    local line = stream:read_line()
    if not line then break end -- the client hung up
    if not stream:write(line .. "\n") then break end
  end
end)
if not server then
  io.stderr:write("echo_server: cannot listen on ", host, " port ", port, ": ", err, "\n")
  os.exit(1)
end

coil.on_shutdown(function()
  -- runs once the server stopped accepting, before the clients are cancelled
  print(("shutting down: no new connections, saying goodbye to %d client(s)"):format(clients))
end)

local h, p = server:address()
print(("echo server on %s port %d (Ctrl+C to stop)"):format(h, p))
-- the main task ends here; the listening server keeps the process running
