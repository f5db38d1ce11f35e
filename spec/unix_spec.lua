local coil = require "coil"
local uv = require "luv"
local net = coil.net

local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(uv.fs_mkdir(dir, 448))
  return dir
end

local function exists(path) return uv.fs_stat(path) ~= nil end

describe("coil.net Unix domain sockets", function()
  it("echo round trip; the socket file is removed when the server closes", function()
    local dir = tmpdir()
    local path = dir .. "/echo.sock"
    local names = {}
    local server = assert(net.listen_unix(path, function(stream)
      names[#names + 1] = coil.current():name()
      while true do
        local line = stream:read_line()
        if not line then return end
        stream:write(line:upper() .. "\n")
      end
    end))
    assert.equal(path, server:address())
    assert.is_true(exists(path))
    for i = 1, 2 do
      local c <close> = assert(net.connect_unix(path))
      c:write("hello " .. i .. "\n")
      assert.equal("HELLO " .. i, c:read_line())
    end
    server:close()
    assert.is_false(exists(path))
    local c, err = net.connect_unix(path)
    assert.is_nil(c)
    assert.matches("^ENOENT", err)
    coil.sleep(0.01)
    assert.same({ "unix:" .. path .. "#1", "unix:" .. path .. "#2" }, names)
    uv.fs_rmdir(dir)
  end)

  it("a path in use gives EADDRINUSE; the shutdown removes the file", function()
    local dir = tmpdir()
    local path = dir .. "/s.sock"
    local a = assert(net.listen_unix(path, function() end))
    local b, err = net.listen_unix(path, function() end)
    assert.is_nil(b)
    assert.equal("EADDRINUSE: address already in use", err)
    a:close()
    -- a real process: SIGTERM while it serves
    local p = require("spec.support.proc").coil({ "--quiet", "-e", ([[
      local coil = require "coil"
      assert(coil.net.listen_unix(%q, function() end))
      print("ready")
    ]]):format(path) })
    assert.is_true(p:wait_for("ready"))
    assert.is_true(exists(path))
    p:kill("sigterm")
    local r = p:wait()
    assert.equal(15, r.signal, r.stderr)
    assert.is_false(exists(path))
    uv.fs_rmdir(dir)
  end)

  it("raises on mistakes", function()
    assert.error_matches(function() net.listen_unix("", function() end) end,
                         "coil: net.listen_unix: path must be a non%-empty string")
    assert.error_matches(function() net.connect_unix(nil) end, "coil: net.connect_unix: path")
    assert.error_matches(function() net.listen_unix("/tmp/x", function() end, { reuseport = true }) end,
                         "unknown option reuseport")
  end)
end)
