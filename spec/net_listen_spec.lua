local coil = require "coil"
local uv = require "luv"
local proc = require "spec.support.proc"
local net = coil.net

local function round_trip(port, text)
  local c <close> = assert(net.connect("127.0.0.1", port))
  assert(c:write(text .. "\n"))
  return c:read_line()
end

local function echo(stream) stream:write(stream:read_line() .. "\n") end

describe("coil.net.listen options", function()
  it("reuseport lets two servers share a port; without it the port is taken", function()
    local a = assert(net.listen("127.0.0.1", 0, echo, { reuseport = true }))
    local _, port = a:address()
    local b = assert(net.listen("127.0.0.1", port, echo, { reuseport = true, backlog = 16 }))
    local c, err = net.listen("127.0.0.1", port, echo)
    assert.is_nil(c)
    assert.equal("EADDRINUSE: address already in use", err)
    assert.equal("one", round_trip(port, "one"))
    a:close()
    assert.equal("two", round_trip(port, "two")) -- b still serves
    b:close()
    coil.sleep(0.01)
  end)

  it("reads the options table once, before it opens anything", function()
    -- every read of a missing option raises: only the first pass may read
    local opts = setmetatable({}, { __index = function() error("read again") end })
    local s = assert(net.listen("127.0.0.1", 0, echo, opts))
    s:close()
    coil.sleep(0.01)
  end)

  it("takes a backlog", function()
    local s = assert(net.listen("127.0.0.1", 0, echo, { backlog = 1 }))
    local _, port = s:address()
    assert.equal("small queue", round_trip(port, "small queue"))
    s:close()
    coil.sleep(0.01)
  end)

  it("raises on unknown or malformed options", function()
    assert.error_matches(function() net.listen("127.0.0.1", 0, echo, { reuse_port = true }) end,
                         "coil: net.listen: unknown option reuse_port")
    assert.error_matches(function() net.listen("127.0.0.1", 0, echo, { backlog = 0 }) end,
                         "coil: net.listen: opts.backlog must be a positive integer")
    assert.error_matches(function() net.listen("127.0.0.1", 0, echo, { reuseport = 1 }) end,
                         "coil: net.listen: opts.reuseport must be a boolean")
    assert.error_matches(function() net.listen("127.0.0.1", 0, echo, "fast") end,
                         "coil: net.listen: opts must be a table")
  end)
end)

describe("coil.net.listen_fd", function()
  it("serves a socket inherited as an fd (socket activation)", function()
    local tcp = uv.new_tcp("inet")
    assert(tcp:bind("127.0.0.1", 0))
    local port = tcp:getsockname().port
    local out = uv.new_pipe()
    local stdout, code, signal = "", nil, nil
    local handle = assert(uv.spawn(COIL_BIN, {
      args = { "--quiet", "spec/fixtures/net_listen_fd.lua" },
      stdio = { nil, out, 2, tcp },
    }, function(c, s) code, signal = c, s end))
    tcp:close() -- the child has it now
    out:read_start(function(_, data) if data then stdout = stdout .. data end end)
    local ok, err = pcall(function()
      local deadline = coil.now() + 10
      while not stdout:find("ready") and coil.now() < deadline do coil.sleep(0.01) end
      assert.equal("ready " .. port .. "\n", stdout)
      assert.equal("fd says hi", round_trip(port, "hi"))
    end)
    handle:kill("sigterm") -- whatever happened: no child left behind
    local deadline = coil.now() + 10
    while code == nil and coil.now() < deadline do coil.sleep(0.01) end
    out:close()
    handle:close()
    if not ok then error(err, 0) end
    assert.equal(15, signal)
  end)

  it("serves an inherited Unix domain socket", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(uv.fs_mkdir(dir, 448))
    local path = dir .. "/s.sock"
    local pipe = uv.new_pipe(false)
    assert(pipe:bind(path))
    local code, signal
    local out, stdout = uv.new_pipe(), ""
    local handle = assert(uv.spawn(COIL_BIN, {
      args = { "--quiet", "spec/fixtures/net_listen_fd.lua" },
      stdio = { nil, out, 2, pipe },
    }, function(c, s) code, signal = c, s end))
    out:read_start(function(_, data) if data then stdout = stdout .. data end end)
    local ok, err = pcall(function()
      local deadline = coil.now() + 10
      while not stdout:find("ready") and coil.now() < deadline do coil.sleep(0.01) end
      assert.equal("ready " .. path .. "\n", stdout)
      local c <close> = assert(net.connect_unix(path))
      c:write("over unix\n")
      assert.equal("fd says over unix", c:read_line())
    end)
    handle:kill("sigterm")
    local deadline = coil.now() + 10
    while code == nil and coil.now() < deadline do coil.sleep(0.01) end
    out:close()
    handle:close()
    pipe:close() -- (libuv removes the socket file of a pipe it bound)
    coil.sleep(0.01)
    uv.fs_rmdir(dir)
    if not ok then error(err, 0) end
    assert.equal(15, signal)
  end)

  it("refuses what is not a stream socket, raises on a bad fd", function()
    local s, err = net.listen_fd(0, echo) -- stdin: no socket
    assert.is_nil(s)
    assert.matches("^ENOTSOCK", err)
    assert.error_matches(function() net.listen_fd(-1, echo) end,
                         "coil: net.listen_fd: fd must be a non%-negative integer")
    assert.error_matches(function() net.listen_fd(3, 42) end,
                         "coil: net.listen_fd: handler must be a function")
  end)
end)
