local coil = require "coil"
local coil_core = require "coil.core"
local uv = require "luv"
local net = coil.net

local function wait_until(check, limit)
  local deadline = coil.now() + (limit or 2)
  while not check() and coil.now() < deadline do coil.sleep(0.005) end
  return check()
end

-- Runs fn(server, port) with an echo server on 127.0.0.1, port 0; closes it
-- and waits for its connection tasks after.
local function with_echo_server(fn, handler)
  local conns = {}
  local server = assert(net.listen("127.0.0.1", 0, function(stream)
    conns[#conns + 1] = coil.current()
    if handler then return handler(stream) end
    while true do
      local data = stream:read()
      if not data then return end
      if not stream:write(data) then return end
    end
  end))
  local _, port = server:address()
  local ok, err = pcall(fn, server, port, conns)
  server:close()
  for _, task in ipairs(conns) do pcall(task.await, task) end
  if not ok then error(err, 0) end
end

local function ipv6_available()
  local tcp = uv.new_tcp()
  local ok = tcp:bind("::1", 0)
  tcp:close()
  return ok
end

describe("coil.net", function()
  it("serves and calls on 127.0.0.1 port 0: lines, exact sizes, chunks", function()
    with_echo_server(function(server, port)
      local host, real = server:address()
      assert.equal("127.0.0.1", host)
      assert.is_true(real > 0)
      local c <close> = assert(net.connect("127.0.0.1", port))
      assert.is_true(c:write("hello\nwindows\r\n"))
      assert.equal("hello", c:read_line())
      assert.equal("windows", c:read_line())
      assert.is_true(c:write("0123456789"))
      assert.equal("0123", c:read_exactly(4))
      assert.equal("", c:read_exactly(0))
      assert.equal("456789", c:read_exactly(6))
      assert.is_true(c:write("a line\nand more"))
      assert.equal("a line", c:read_line())
      assert.equal("and more", c:read_exactly(8))
      assert.is_true(c:write("chunk"))
      assert.equal("chunk", c:read())
      assert.is_true(c:write(""))
    end)
  end)

  it("runs each connection in its own task named after the peer", function()
    local names = {}
    with_echo_server(function(_, port)
      local a <close> = assert(net.connect("127.0.0.1", port))
      local b <close> = assert(net.connect("127.0.0.1", port))
      a:write("x\n"); b:write("y\n")
      a:read_line(); b:read_line()
      assert.equal(2, #names)
      assert.not_equal(names[1], names[2])
      for _, name in ipairs(names) do assert.matches("^127%.0%.0%.1:%d+$", name) end
    end, function(stream)
      names[#names + 1] = coil.current():name()
      local line = stream:read_line()
      stream:write(line .. "\n")
      stream:read()
    end)
  end)

  it("passes 10 MB through a slow reader with memory bounded", function()
    local total, chunk = 10 * 1024 * 1024, ("0123456789abcdef"):rep(4096) -- 64 KiB
    local small = 64 * 1024
    with_echo_server(function(_, port)
      local c <close> = assert(net.connect("127.0.0.1", port))
      -- keep the kernel's buffers small so the lead the writer can take is
      -- coil's doing, not the kernel's
      c.handle:send_buffer_size(small)
      c.handle:recv_buffer_size(small)
      collectgarbage()
      local base = collectgarbage("count")
      local written, read, max_lead, max_mem = 0, 0, 0, 0
      local writer = coil.spawn(function()
        while written < total do
          assert(c:write(chunk))
          written = written + #chunk
          max_lead = math.max(max_lead, written - read)
        end
      end)
      local reads = 0
      while read < total do
        local data = assert(c:read())
        assert.equal(chunk:sub(read % #chunk + 1, read % #chunk + 1), data:sub(1, 1))
        read = read + #data
        reads = reads + 1
        if reads % 2 == 0 then coil.sleep(0.001) end -- a slow reader
        max_mem = math.max(max_mem, collectgarbage("count") - base)
      end
      writer:await()
      assert.equal(total, read)
      -- the writer waited for the reader: never more than the sockets' and
      -- the echo's buffers ahead of it
      assert.is_true(max_lead < 3 * 1024 * 1024, "writer ran ahead by " .. max_lead)
      -- and nothing piled up in memory (Lua's count is in KiB)
      assert.is_true(max_mem < 4 * 1024, "memory grew by " .. max_mem .. " KiB")
    end, function(stream)
      stream.handle:send_buffer_size(small)
      stream.handle:recv_buffer_size(small)
      while true do
        local data = stream:read()
        if not data then return end
        if not stream:write(data) then return end
      end
    end)
  end)

  it("returns ECONNREFUSED for a refused connection", function()
    local server = assert(net.listen("127.0.0.1", 0, function() end))
    local _, port = server:address()
    server:close()
    local s, err = net.connect("127.0.0.1", port)
    assert.is_nil(s)
    assert.equal("ECONNREFUSED: connection refused", err)
  end)

  it("sees a peer that disconnects in the middle of a read", function()
    with_echo_server(function(_, port)
      local c <close> = assert(net.connect("127.0.0.1", port))
      c:write("line\n")
      assert.equal("half a line", c:read_line())
      assert.is_nil(c:read_line())
      assert.is_nil(c:read())
      local d <close> = assert(net.connect("127.0.0.1", port))
      d:write("exact\n")
      local data, err = d:read_exactly(100)
      assert.is_nil(data)
      assert.equal("EOF: end of file", err)
      assert.equal("half a line", d:read()) -- what did arrive is still there
      assert.is_nil(d:read())
    end, function(stream)
      stream:read_line()
      stream:write("half a line")
      -- the handler returns: its stream is closed
    end)
  end)

  it("returns nil, err for a write to a peer that has gone", function()
    -- in a process of its own: without SIGPIPE ignored, the write kills it
    local r = require("spec.support.proc").run({ "spec/fixtures/io_epipe.lua" })
    if r.signal == 13 then
      pending("the core does not ignore SIGPIPE yet: a write to a vanished peer kills coil")
    end
    assert.equal(0, r.code, r.stderr)
    assert.matches("tcp: E[A-Z]+: ", r.stdout) -- EPIPE or ECONNRESET
    assert.matches("pipe: EPIPE: broken pipe", r.stdout)
  end)

  it("resolves names with libuv's resolver and reports failures", function()
    with_echo_server(function(_, port)
      local c <close> = assert(net.connect("localhost", port))
      c:write("via localhost\n")
      assert.equal("via localhost", c:read_line())
    end)
    local s, err = net.connect("no-such-host.invalid", 80)
    assert.is_nil(s)
    assert.matches("^EAI_", err)
  end)

  it("works over IPv6", function()
    if not ipv6_available() then
      pending("no IPv6 loopback here")
      return
    end
    local name
    local server = assert(net.listen("::1", 0, function(stream)
      name = coil.current():name()
      stream:write(stream:read_line() .. "\n")
    end))
    local host, port = server:address()
    assert.equal("::1", host)
    local c <close> = assert(net.connect("::1", port))
    c:write("six\n")
    assert.equal("six", c:read_line())
    assert.matches("^%[::1%]:%d+$", name)
    local d <close> = assert(net.connect("[::1]", port))
    d:write("brackets\n")
    assert.equal("brackets", d:read_line())
    server:close()
    assert.is_true(wait_until(function() return #coil.tasks() == 1 end))
  end)

  it("stops accepting on server:close(); connections go on", function()
    local gate = coil.event()
    with_echo_server(function(server, port)
      local c <close> = assert(net.connect("127.0.0.1", port))
      c:write("before\n")
      assert.equal("before", c:read_line())
      server:close()
      server:close() -- twice is fine
      assert.error_matches(function() server:address() end, "closed server")
      local s, err = net.connect("127.0.0.1", port)
      assert.is_nil(s)
      assert.equal("ECONNREFUSED: connection refused", err)
      gate:set()
      assert.equal("after", c:read_line())
    end, function(stream)
      stream:write(stream:read_line() .. "\n")
      gate:wait()
      stream:write("after\n")
    end)
  end)

  it("reports listen failures as nil, err", function()
    local a = assert(net.listen("127.0.0.1", 0, function() end))
    local _, port = a:address()
    local b, err = net.listen("127.0.0.1", port, function() end)
    assert.is_nil(b)
    assert.equal("EADDRINUSE: address already in use", err)
    a:close()
  end)

  it("raises on programming mistakes", function()
    assert.error_matches(function() net.connect(42, 80) end, "coil: net.connect: host")
    assert.error_matches(function() net.connect("127.0.0.1", -1) end, "coil: net.connect: port")
    assert.error_matches(function() net.connect("127.0.0.1", "80") end, "coil: net.connect: port")
    assert.error_matches(function() net.listen("127.0.0.1", 0, "nope") end,
                         "coil: net.listen: handler must be a function")
    with_echo_server(function(_, port)
      local c = assert(net.connect("127.0.0.1", port))
      assert.error_matches(function() c:read_exactly(-1) end, "non%-negative integer")
      assert.error_matches(function() c:read_exactly(1.5) end, "non%-negative integer")
      assert.error_matches(function() c:write(42) end, "data must be a string")
      -- two readers at once
      local first = coil.spawn(c.read, c)
      coil.sleep(0.01)
      assert.error_matches(function() c:read() end, "another task is already reading")
      c:close()
      assert.equal("ECANCELED: operation canceled", select(2, first:await()))
      assert.error_matches(function() c:read() end, "coil: stream:read on a closed stream")
      assert.error_matches(function() c:write("x") end, "coil: stream:write on a closed stream")
      assert.is_true(c:close())
    end)
  end)

  describe("cancelling a task blocked in I/O leaves nothing behind", function()
    local function settled(baseline)
      return wait_until(function()
        return #coil_core.open_handles() == baseline and coil_core.requests() == 0
      end)
    end

    it("in read, read_line and read_exactly", function()
      with_echo_server(function(_, port)
        local c <close> = assert(net.connect("127.0.0.1", port))
        for _, call in ipairs { { c.read }, { c.read_line }, { c.read_exactly, 10 } } do
          local task = coil.spawn(call[1], c, call[2])
          coil.sleep(0.02)
          assert.is_false(task:done())
          assert.is_true(c.reading) -- the read is on while a task waits ...
          task:cancel()
          assert.is_false(pcall(task.await, task))
          assert.is_false(c.reading) -- ... and off once it gave up
        end
        -- the stream still works
        c:write("still here\n")
        assert.equal("still here", c:read_line())
      end)
    end)

    it("in write, when the peer does not read", function()
      local stop = coil.event()
      with_echo_server(function(_, port)
        local baseline = #coil_core.open_handles()
        local c = assert(net.connect("127.0.0.1", port))
        local big = ("x"):rep(1024 * 1024)
        local task = coil.spawn(function() while true do assert(c:write(big)) end end)
        coil.sleep(0.1)
        assert.is_false(task:done())
        task:cancel()
        assert.is_false(pcall(task.await, task))
        c:close() -- the write still queued is cancelled by libuv
        stop:set()
        assert.is_true(settled(baseline))
      end, function() stop:wait() end)
    end)

    it("in connect, while the connection is being made", function()
      -- a listener with a full backlog leaves further connects hanging
      local raw = uv.new_tcp()
      raw:bind("127.0.0.1", 0)
      raw:listen(1, function() end)
      local port = raw:getsockname().port
      -- connect until one hangs: the accept queue is full then
      local fillers, connected = {}, 0
      repeat
        local tcp = uv.new_tcp()
        fillers[#fillers + 1] = tcp
        tcp:connect("127.0.0.1", port, function() connected = connected + 1 end)
      until not wait_until(function() return connected == #fillers end, 0.05)
        or #fillers == 16
      local baseline = #coil_core.open_handles()
      local task = coil.spawn(net.connect, "127.0.0.1", port)
      coil.sleep(0.1)
      local blocked = not task:done()
      task:cancel()
      local _, stream = pcall(task.await, task)
      if not blocked and stream then stream:close() end
      for _, tcp in ipairs(fillers) do tcp:close() end
      raw:close()
      assert.is_true(blocked, "the connect did not block")
      assert.is_true(settled(baseline - #fillers - 1))
    end)

    it("in connect, while the name is being resolved", function()
      local baseline = #coil_core.open_handles()
      local task = coil.spawn(net.connect, "localhost", 9)
      task:cancel()
      pcall(task.await, task)
      assert.is_true(settled(baseline))
    end)
  end)
end)
