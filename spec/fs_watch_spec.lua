local coil = require "coil"
local uv = require "luv"
local fs = coil.fs

local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(uv.fs_mkdir(dir, 448))
  return dir
end

local function contains(list, x)
  for _, v in ipairs(list) do if v == x then return true end end
  return false
end

describe("coil.fs.watch", function()
  it("sees a write to a file, and a rename in a directory", function()
    local dir = tmpdir()
    local path = dir .. "/watched"
    assert(fs.write_file(path, "one"))
    local w <close> = assert(fs.watch(path))
    local writer = coil.spawn(function() coil.sleep(0.05); assert(fs.write_file(path, "two")) end)
    local events, name = coil.timeout(5, w.wait, w)
    writer:await()
    assert.is_true(contains(events, "change"), table.concat(events, ","))
    assert.equal("watched", name)
    w:close()

    local d <close> = assert(fs.watch(dir))
    local mover = coil.spawn(function() coil.sleep(0.05); assert(fs.rename(path, dir .. "/moved")) end)
    coil.timeout(5, function()
      repeat events, name = d:wait() until contains(events, "rename")
    end)
    mover:await()
    d:close()
    assert.same({ nil, "ECANCELED: operation canceled" }, { d:wait() })
    os.remove(dir .. "/moved")
    uv.fs_rmdir(dir)
  end)

  it("close wakes a waiting task; a missing path is nil, err", function()
    local dir = tmpdir()
    local w = assert(fs.watch(dir))
    local t = coil.spawn(w.wait, w)
    coil.sleep(0.01)
    w:close()
    assert.same({ nil, "ECANCELED: operation canceled" }, { t:await() })
    local none, err = fs.watch(dir .. "/nope")
    assert.is_nil(none)
    assert.matches("^ENOENT", err)
    uv.fs_rmdir(dir)
  end)
end)

describe("file:seek", function()
  it("moves and tells the position as Lua's file:seek", function()
    local dir = tmpdir()
    local path = dir .. "/f"
    assert(fs.write_file(path, "0123456789"))
    local f <close> = assert(fs.open(path, "r+"))
    assert.equal(0, f:seek())
    assert.equal(10, f:seek("end"))
    assert.equal(2, f:seek("set", 2))
    assert.equal("234", f:read(3))
    assert.equal(5, f:seek())
    assert.equal(3, f:seek("cur", -2))
    assert.is_true(f:write("X"))
    assert.equal(8, f:seek("end", -2))
    assert.equal("89", f:read())
    local none, err = f:seek("set", -1)
    assert.is_nil(none)
    assert.matches("^EINVAL", err)
    assert.error_matches(function() f:seek("top") end, 'whence must be "set", "cur" or "end"')
    assert.error_matches(function() f:seek("set", 1.5) end, "offset must be an integer")
    f:close()
    assert.equal("012X456789", fs.read_file(path))
    assert.error_matches(function() f:seek() end, "coil: file:seek on a closed file")
    os.remove(path)
    uv.fs_rmdir(dir)
  end)
end)

describe("methods called on the wrong thing", function()
  it("raise a clear coil: error", function()
    local path = os.tmpname()
    local f <close> = assert(fs.open(path))
    for _, m in ipairs { "read", "write", "seek", "close" } do
      assert.error_matches(function() f[m]({}) end, "^coil: file:" .. m .. " expects a file")
    end
    local server = assert(coil.net.listen("127.0.0.1", 0, function() end))
    for _, m in ipairs { "address", "close" } do
      assert.error_matches(function() server[m]("x") end, "^coil: server:" .. m .. " expects a server")
    end
    local _, port = server:address()
    local c <close> = assert(coil.net.connect("127.0.0.1", port))
    for _, m in ipairs { "read", "read_line", "read_exactly", "write", "drain", "close", "set_high_water" } do
      assert.error_matches(function() c[m](42) end, "^coil: stream:" .. m .. " expects a stream")
    end
    server:close()
    local p = assert(coil.process.spawn("true", {}))
    for _, m in ipairs { "wait", "kill" } do
      assert.error_matches(function() p[m]({}) end, "^coil: process:" .. m .. " expects a process")
    end
    p:wait()
    local w <close> = assert(fs.watch(path))
    for _, m in ipairs { "wait", "close" } do
      assert.error_matches(function() w[m](f) end, "^coil: watcher:" .. m .. " expects a watcher")
    end
    local u <close> = assert(coil.net.udp("127.0.0.1", 0))
    for _, m in ipairs { "send", "recv", "address", "close" } do
      assert.error_matches(function() u[m](c) end, "^coil: udp:" .. m .. " expects a UDP socket")
    end
    os.remove(path)
  end)
end)
