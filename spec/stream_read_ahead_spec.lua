-- Streams read ahead between two reads (up to a mark), write at once when
-- nothing is queued, and coil.net sets TCP_NODELAY: what must still hold.
local coil = require "coil"
local coil_core = require "coil.core"
local proc = require "spec.support.proc"
local net = coil.net

local READ_AHEAD = 64 * 1024

-- A server whose one connection runs handler(stream); returns the client
-- stream and a function that closes everything and waits for the handler.
local function pair(handler, listen_opts, connect_opts)
  local task
  local server = assert(net.listen("127.0.0.1", 0, function(stream)
    task = coil.current()
    return handler(stream)
  end, listen_opts))
  local _, port = server:address()
  local c = assert(net.connect("127.0.0.1", port, connect_opts))
  return c, function()
    c:close()
    server:close()
    while not task do coil.sleep(0.001) end
    pcall(task.await, task)
  end
end

-- A string of n bytes in which every 4-byte group is its own offset, so a
-- lost, repeated or reordered piece shows.
local function pattern(n)
  local parts = {}
  for i = 0, n // 4 - 1 do parts[#parts + 1] = string.pack("<I4", i) end
  return table.concat(parts)
end

describe("stream read-ahead", function()
  it("stops reading once the mark is buffered: a slow reader bounds memory", function()
    local data = pattern(2 * 1024 * 1024)
    local c, finish = pair(function(stream)
      assert.is_true(stream:write(data))
      assert.is_true(stream:drain())
    end)
    local got = { c:read() }
    -- nobody reads for a while: the stream fills its buffer and stops
    local deadline = coil.now() + 5
    while c.reading and coil.now() < deadline do
      coil.sleep(0.005)
      assert.is_true(c.size < READ_AHEAD + 64 * 1024, "buffered " .. c.size)
    end
    assert.is_false(c.reading)
    assert.is_true(c.size >= READ_AHEAD, "buffered " .. c.size)
    coil.sleep(0.02)
    assert.is_true(c.size < READ_AHEAD + 64 * 1024, "buffered " .. c.size)
    local n = #got[1]
    while n < #data do
      local chunk = assert(c:read())
      got[#got + 1] = chunk
      n = n + #chunk
      assert.is_true(c.size < READ_AHEAD + 64 * 1024, "buffered " .. c.size)
    end
    assert.is_true(table.concat(got) == data, "the data came back changed")
    finish()
  end)

  it("goes on reading past the mark while a task waits for a longer line", function()
    local line = ("L"):rep(300 * 1024)
    local c, finish = pair(function(stream)
      stream:write(line .. "\n" .. ("x"):rep(2 * 1024 * 1024))
      stream:drain()
    end)
    assert.equal(line, c:read_line(400 * 1024))
    -- the default limit still holds, and what is buffered stays bounded
    assert.same({ nil, "ELINE: line too long" }, { c:read_line() })
    assert.is_true(c.size < 64 * 1024 + 2 + 64 * 1024, "buffered " .. c.size)
    finish()
  end)

  it("leaves a stream nobody reads idle: it keeps nothing alive", function()
    local c, finish = pair(function(stream)
      stream:write("one\n")
      coil.sleep(0.05)
      stream:write("two\n")
      stream:read() -- until the client closes
    end)
    assert.equal("one", c:read_line())
    -- the handle reads on, unreferenced; a reader references it again
    assert.is_true(c.reading)
    assert.is_false(c.handle:has_ref())
    assert.equal("two", c:read_line())
    finish()
  end)

  it("a reader cancelled while it waits leaves the stream readable", function()
    local go = coil.event()
    local c, finish = pair(function(stream)
      stream:write("one\n")
      go:wait()
      stream:write("two\n")
      stream:read() -- until the client closes
    end)
    assert.equal("one", c:read_line())
    local reader = coil.spawn(function() return c:read_line() end)
    coil.sleep(0.01)
    reader:cancel()
    assert.is_false(pcall(reader.await, reader))
    go:set()
    assert.equal("two", c:read_line())
    finish()
  end)

  it("a script that leaves a read stream open still ends", function()
    local served = coil.event()
    local server = assert(net.listen("127.0.0.1", 0, function(stream)
      stream:write("hello\n")
      stream:read()
      served:set()
    end))
    local _, port = server:address()
    local r = proc.run({ "-e", ([[
      local coil = require "coil"
      S = assert(coil.net.connect("127.0.0.1", %d)) -- kept, never closed
      print(S:read_line())
    ]]):format(port) }, { limit = 10 })
    server:close()
    -- the handler sees the end of its connection a loop turn or two later
    coil.timeout(10, served.wait, served)
    assert.is_false(r.timed_out)
    assert.equal(0, r.code, r.stderr)
    assert.equal("hello\n", r.stdout)
  end)

  it("a loop of writes to a reader that keeps up still lets other tasks run", function()
    local p = proc.coil({ "spec/fixtures/stream_fair_writer.lua" })
    assert.is_true(p:wait_for("ready %d+\n"), p.stderr)
    local port = tonumber(p.stdout:match "ready (%d+)")
    local c <close> = assert(net.connect("127.0.0.1", port))
    local got = 0
    while got < 16 * 1024 * 1024 do
      local data = c:read()
      if not data then break end
      got = got + #data
    end
    local r = p:wait(20)
    assert.equal(0, r.code, r.stderr)
    assert.equal(16 * 1024 * 1024, got)
    -- the writer passed through the loop at least once per high-water mark
    -- (64 KiB) the kernel took at once plus one queued (a write waits
    -- beyond it), each with one more 4 KiB write
    local ticks, longest = r.stdout:match "ticks (%d+) longest (%d+)"
    assert.is_true(tonumber(ticks) >= 16 * 1024 * 1024 // (136 * 1024), r.stdout)
    assert.is_true(tonumber(longest) <= 136 * 1024, r.stdout)
  end)

  it("standard input reads only while a task waits: other processes share it", function()
    -- the pipe stays open (no end of file to stop the reading)
    local script = [[
      local coil = require "coil"
      local first = coil.io.stdin:read_line()
      coil.sleep(0.05)
      print(first, coil.io.stdin.reading)
    ]]
    local r = proc.start("/bin/sh", { "-c", '(echo one; sleep 2) | "$0" -e "$1"',
                                      COIL_BIN, script }):wait(20)
    assert.equal(0, r.code, r.stderr)
    assert.equal("one\tfalse\n", r.stdout)
  end)

  it("a stream read by a look-alike handle (coil.io's) reads chunk by chunk", function()
    local r = proc.run({ "-e", [[
      local coil = require "coil"
      local n = 0
      while true do
        local chunk = coil.io.stdin:read()
        if not chunk then break end
        n = n + #chunk
      end
      print(n)
    ]] }, { stdin = ("z"):rep(300 * 1024), limit = 20 })
    assert.equal(0, r.code, r.stderr)
    assert.equal(tostring(300 * 1024) .. "\n", r.stdout)
  end)
end)

describe("stream writes without a queue", function()
  it("a large write goes out in order, partly at once and partly queued", function()
    local data = pattern(4 * 1024 * 1024)
    local received = {}
    local c, finish = pair(function(stream)
      local n = 0
      while n < #data do
        local chunk = stream:read()
        if not chunk then break end
        received[#received + 1] = chunk
        n = n + #chunk
      end
    end)
    assert.is_true(c:write(data:sub(1, 100)))
    assert.is_true(c:write(data:sub(101)))
    assert.is_true(c:drain())
    assert.equal(0, c.queued)
    finish()
    assert.is_true(table.concat(received) == data, "the data arrived changed")
  end)
end)

describe("TCP_NODELAY", function()
  local function nodelay(stream)
    local family, kind, listening, on = coil_core.socket_info(stream.handle:fileno())
    assert.equal("inet", family)
    assert.equal("stream", kind)
    assert.is_false(listening)
    return on
  end

  it("is set on accepted and connected TCP streams by default", function()
    local server_side
    local c, finish = pair(function(stream)
      server_side = nodelay(stream)
      stream:write("x")
    end)
    assert.equal("x", c:read())
    assert.is_true(server_side)
    assert.is_true(nodelay(c))
    finish()
  end)

  it("is left off with opts.nodelay = false", function()
    local server_side
    local c, finish = pair(function(stream)
      server_side = nodelay(stream)
      stream:write("x")
    end, { nodelay = false }, { nodelay = false })
    assert.equal("x", c:read())
    assert.is_false(server_side)
    assert.is_false(nodelay(c))
    finish()
  end)

  it("refuses a bad nodelay option", function()
    assert.error_matches(function() net.connect("127.0.0.1", 1, { nodelay = 1 }) end,
                         "coil: net.connect: opts.nodelay must be a boolean, got number")
    assert.error_matches(function() net.connect("127.0.0.1", 1, { delay = true }) end,
                         "coil: net.connect: unknown option delay")
    assert.error_matches(function() net.connect("127.0.0.1", 1, 5) end,
                         "coil: net.connect: opts must be a table, got number")
    assert.error_matches(function()
      net.listen("127.0.0.1", 0, function() end, { nodelay = "no" })
    end, "coil: net.listen: opts.nodelay must be a boolean, got string")
  end)
end)
