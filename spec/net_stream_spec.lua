-- Buffered writes, drain and read_line's limit, on real sockets.
local coil = require "coil"
local net = coil.net

-- A server whose one connection runs handler(stream); returns the client
-- stream, the server and the handler's task (via a table filled later).
local function pair(handler)
  local conn = {}
  local server = assert(net.listen("127.0.0.1", 0, function(stream)
    conn.task = coil.current()
    return handler(stream)
  end))
  local _, port = server:address()
  local c = assert(net.connect("127.0.0.1", port))
  return c, server, conn
end

local function finish(c, server, conn)
  c:close()
  server:close()
  while not conn.task do coil.sleep(0.001) end
  pcall(conn.task.await, conn.task)
end

describe("stream writes", function()
  it("1000 buffered writes to a slow reader, then drain", function()
    local received, n = {}, 0
    local c, server, conn = pair(function(stream)
      stream.handle:recv_buffer_size(16 * 1024)
      while true do
        local data = stream:read()
        if not data then return end
        received[#received + 1] = data
        n = n + #data
        coil.sleep(0.001) -- slow
      end
    end)
    c.handle:send_buffer_size(16 * 1024)
    local chunk = ("0123456789abcdef"):rep(64) -- 1 KiB
    local max_queued, returned_at_once = 0, 0
    for i = 1, 1000 do
      local before = c.queued
      assert.is_true(c:write(chunk:sub(1, 1023) .. string.char(i % 256)))
      if c.queued > before then returned_at_once = returned_at_once + 1 end
      max_queued = math.max(max_queued, c.queued)
    end
    -- the mark bounds what waits in coil: a write waits once it is reached
    assert.is_true(max_queued < 64 * 1024 + 1024, "queued " .. max_queued)
    assert.is_true(returned_at_once > 0)
    assert.is_true(c:drain())
    assert.equal(0, c.queued)
    c.handle:shutdown()
    while n < 1000 * 1024 do coil.sleep(0.005) end
    local all = table.concat(received)
    for i = 1, 1000 do
      assert.equal(string.char(i % 256), all:sub(i * 1024, i * 1024))
    end
    finish(c, server, conn)
  end)

  it("set_high_water changes when write waits", function()
    local gate = coil.event()
    local c, server, conn = pair(function(stream)
      gate:wait()
      while stream:read() do end
    end)
    c:set_high_water(1)
    -- with a mark of 1 byte, a write waits until its data has gone
    assert.is_true(c:write("x"))
    assert.equal(0, c.queued)
    assert.error_matches(function() c:set_high_water(0) end, "positive integer")
    gate:set()
    finish(c, server, conn)
  end)

  it("a write error comes out of the next write, drain or close", function()
    local c, server, conn = pair(function() end) -- closes at once
    assert.is_nil(c:read())
    local big = ("x"):rep(256 * 1024)
    local ok, err
    for _ = 1, 50 do
      ok, err = c:write(big)
      if ok then ok, err = c:drain() end
      if not ok then break end
      coil.sleep(0.01)
    end
    assert.is_nil(ok)
    assert.matches("^E[A-Z]+: ", err)
    assert.same({ nil, err }, { c:write("more") }) -- it stays
    assert.same({ nil, err }, { c:drain() })
    assert.same({ nil, err }, { c:close() })
    finish(c, server, conn)
  end)
end)

describe("stream:read_line limit", function()
  it("gives ELINE for an over-long line, then goes on", function()
    local c, server, conn = pair(function(stream)
      stream:write(("y"):rep(200 * 1024) .. "\nnext\n")
      stream:write(("z"):rep(20) .. "\r\nshort\r\n" .. ("w"):rep(10) .. "\n")
      stream:write(("v"):rep(30) .. "\nlast")
      stream:drain()
    end)
    assert.same({ nil, "ELINE: line too long" }, { c:read_line() })
    assert.equal("next", c:read_line())
    assert.same({ nil, "ELINE: line too long" }, { c:read_line(10) })
    assert.equal("short", c:read_line(10))
    assert.equal(("w"):rep(10), c:read_line(10)) -- exactly the limit
    assert.same({ nil, "ELINE: line too long" }, { c:read_line(10) })
    assert.equal("last", c:read_line(10))
    assert.is_nil(c:read_line())
    assert.error_matches(function() c:read_line(0) end, "max must be a positive integer")
    finish(c, server, conn)
  end)
end)
