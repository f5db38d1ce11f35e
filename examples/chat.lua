-- chat.lua: a broadcast chat server. Every line a client sends goes to every
-- other client. Writes are buffered (coil.net streams queue up to 64 KiB
-- per client before write() waits), so one slow client never stalls the
-- broadcast: a client that falls that far behind is dropped instead.
-- SIGTERM or Ctrl+C: the server stops accepting, every client is told
-- goodbye, and the process ends by that signal.
--
--   build/coil examples/chat.lua [port]        (default 7001; 0 = any free port)
--   nc 127.0.0.1 7001                          (in two other terminals)
local coil = require "coil"

local port = tonumber(arg[1]) or 7001
io.stdout:setvbuf("line")

local clients = {} -- stream -> name

-- Queues line for everyone but `from`; never waits.
local function broadcast(line, from)
  for stream in pairs(clients) do
    if stream ~= from then
      if stream.queued >= 64 * 1024 then
        -- too far behind: its write would wait, and hold up the others
        clients[stream] = nil
        stream:close()
      else
        stream:write(line)
      end
    end
  end
end

local server = assert(coil.net.listen("127.0.0.1", port, function(stream)
  local name = coil.current():name()
  clients[stream] = name
  coil.defer(function()
    clients[stream] = nil
    if coil.stopping():is_set() then
      stream:write("server shutting down, goodbye\n") -- drained before close
    else
      broadcast(name .. " left\n")
    end
  end)
  stream:write("welcome " .. name .. "\n")
  broadcast(name .. " joined\n", stream)
  while true do
    local line = stream:read_line(4096)
    if not line then break end
    broadcast(name .. ": " .. line .. "\n", stream)
  end
end))

coil.on_shutdown(function()
  local n = 0
  for _ in pairs(clients) do n = n + 1 end
  print(("chat: shutting down, saying goodbye to %d client(s)"):format(n))
end)

print(("chat on port %d"):format(select(2, server:address())))
