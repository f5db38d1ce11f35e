local coil = require "coil"
local coil_core = require "coil.core"
local uv = require "luv"
local fs = coil.fs

local function wait_until(check, limit)
  local deadline = coil.now() + (limit or 2)
  while not check() and coil.now() < deadline do coil.sleep(0.005) end
  return check()
end

-- How many fds this process has open.
local function open_fds()
  local n = 0
  local req = assert(uv.fs_scandir("/proc/self/fd"))
  while uv.fs_scandir_next(req) do n = n + 1 end
  return n
end

local function is_root()
  local p = io.popen("id -u")
  local id = p:read("l")
  p:close()
  return id == "0"
end

describe("coil.fs", function()
  local dir
  before_each(function() dir = assert(uv.fs_mkdtemp("/tmp/coil-fs-XXXXXX")) end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  describe("round trips", function()
    it("write_file and read_file, text and binary", function()
      local path = dir .. "/a.txt"
      assert.is_true(fs.write_file(path, "hello\nworld\n"))
      assert.equal("hello\nworld\n", fs.read_file(path))
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local binary = table.concat(bytes):rep(4096) -- 1 MiB
      assert.is_true(fs.write_file(path, binary))
      assert.equal(binary, fs.read_file(path))
      assert.is_true(fs.write_file(path, ""))
      assert.equal("", fs.read_file(path))
    end)

    it("open, write, read, close", function()
      local path = dir .. "/b.txt"
      local f = assert(fs.open(path, "w"))
      assert.is_true(f:write("one "))
      assert.is_true(f:write("two"))
      assert.is_true(f:close())
      assert.is_true(f:close()) -- twice is fine
      f = assert(fs.open(path, "a"))
      assert.is_true(f:write(" three"))
      f:close()
      local g <close> = assert(fs.open(path)) -- "r" by default
      assert.equal("one", g:read(3))
      assert.equal(" two three", g:read())
      assert.is_nil(g:read()) -- the end
      assert.equal("", g:read(0))
      assert.matches("coil.file %(.*b.txt%)", tostring(g))
    end)

    it("stat, mkdir, readdir, rename, remove", function()
      assert.is_true(fs.mkdir(dir .. "/sub"))
      assert.is_true(fs.write_file(dir .. "/sub/x", "12345"))
      assert.is_true(fs.write_file(dir .. "/b", ""))
      local st = assert(fs.stat(dir .. "/sub/x"))
      assert.equal("file", st.type)
      assert.equal(5, st.size)
      assert.equal("directory", fs.stat(dir .. "/sub").type)
      local names, types = fs.readdir(dir)
      assert.same({ "b", "sub" }, names)
      assert.same({ b = "file", sub = "directory" }, types)
      assert.is_true(fs.rename(dir .. "/sub/x", dir .. "/y"))
      assert.same({ "b", "sub", "y" }, (fs.readdir(dir)))
      assert.is_true(fs.remove(dir .. "/y"))
      assert.is_true(fs.remove(dir .. "/sub"))
      assert.same({ "b" }, (fs.readdir(dir)))
    end)
  end)

  describe("failures return nil, err", function()
    local function fails(pattern, value, err)
      assert.is_nil(value)
      assert.matches(pattern, err)
    end

    it("for a missing file", function()
      local missing = dir .. "/missing"
      fails("^ENOENT: no such file or directory: " .. missing:gsub("%p", "%%%0"),
            fs.read_file(missing))
      fails("^ENOENT: no such file or directory", fs.write_file(dir .. "/no/dir", "x"))
      fails("^ENOENT", fs.open(missing))
      fails("^ENOENT", fs.stat(missing))
      fails("^ENOENT", fs.remove(missing))
      fails("^ENOENT", fs.rename(missing, dir .. "/other"))
      fails("^ENOENT", fs.readdir(missing))
      fails("^ENOENT", fs.mkdir(dir .. "/no/dir"))
    end)

    it("for the wrong kind of file", function()
      assert.is_true(fs.write_file(dir .. "/file", "x"))
      fails("^EISDIR: illegal operation on a directory", fs.read_file(dir))
      fails("^EISDIR", fs.write_file(dir, "x"))
      fails("^ENOTDIR: not a directory", fs.readdir(dir .. "/file"))
      fails("^EEXIST: file already exists", fs.mkdir(dir .. "/file"))
      fails("^EEXIST", fs.open(dir .. "/file", "wx"))
      assert.is_true(fs.mkdir(dir .. "/full"))
      assert.is_true(fs.write_file(dir .. "/full/x", "x"))
      fails("^ENOTEMPTY: directory not empty", fs.remove(dir .. "/full"))
    end)

    it("for permission denied", function()
      -- /proc/sys files without write permission refuse writes even to
      -- root (CAP_DAC_OVERRIDE does not apply to them)
      fails("^EACCES: permission denied", fs.write_file("/proc/sys/kernel/version", "x"))
      fails("^EACCES: permission denied", fs.open("/proc/sys/kernel/version", "w"))
      if not is_root() then -- root reads anything: this half needs a plain user
        local path = dir .. "/secret"
        assert.is_true(fs.write_file(path, "x"))
        assert(uv.fs_chmod(path, 0))
        fails("^EACCES: permission denied", fs.read_file(path))
        assert(uv.fs_chmod(dir, 320)) -- 0500: no writing in dir
        fails("^EACCES", fs.write_file(dir .. "/new", "x"))
        fails("^EACCES", fs.remove(path))
        assert(uv.fs_chmod(dir, 448))
      end
    end)
  end)

  it("raises on programming mistakes", function()
    assert.error_matches(function() fs.read_file(42) end, "coil: fs.read_file: path must be a string")
    assert.error_matches(function() fs.write_file(dir .. "/x", {}) end,
                         "coil: fs.write_file: data must be a string")
    assert.error_matches(function() fs.open(dir .. "/x", "rw") end, "coil: fs.open: invalid mode")
    assert.error_matches(function() fs.mkdir(dir .. "/x", -1) end, "coil: fs.mkdir: mode")
    local f = assert(fs.open(dir .. "/x", "w"))
    assert.error_matches(function() f:read(-1) end, "non%-negative integer")
    assert.error_matches(function() f:write(1) end, "data must be a string")
    f:close()
    assert.error_matches(function() f:read() end, "coil: file:read on a closed file")
    assert.error_matches(function() f:write("x") end, "coil: file:write on a closed file")
    local timer, caught = uv.new_timer(), nil
    timer:start(1, 0, function()
      caught = select(2, pcall(fs.stat, "/"))
      timer:close()
    end)
    assert.is_true(wait_until(function() return caught ~= nil end))
    assert.matches("coil: fs.stat must be called from inside a task", caught)
  end)

  it("closes a file still open when its task ends", function()
    local before = open_fds()
    local file
    coil.spawn(function()
      file = assert(fs.open(dir .. "/kept", "w"))
      assert.equal(before + 1, open_fds())
    end):await()
    assert.matches("closed", tostring(file))
    assert.equal(before, open_fds())
    -- and one closed by a <close> variable first is not closed twice
    coil.spawn(function()
      local f <close> = assert(fs.open(dir .. "/kept"))
    end):await()
    assert.equal(before, open_fds())
  end)

  describe("cancelling a task blocked in", function()
    it("a read leaves no request and no fd behind", function()
      local fifo = dir .. "/fifo"
      assert(os.execute("mkfifo " .. fifo))
      local before = open_fds()
      local task = coil.spawn(function()
        local f = assert(fs.open(fifo, "r+")) -- never blocks on Linux
        return f:read() -- blocks a threadpool thread: nothing was written
      end)
      coil.sleep(0.05)
      assert.equal(1, coil_core.requests())
      task:cancel()
      assert.is_false(pcall(task.await, task))
      -- the file is closed, but its fd only once the read gives it back
      assert.equal(before + 1, open_fds())
      local writer = assert(uv.fs_open(fifo, "w", 438))
      uv.fs_write(writer, "late", -1)
      uv.fs_close(writer)
      assert.is_true(wait_until(function() return coil_core.requests() == 0 end))
      assert.equal(before, open_fds())
    end)

    it("an open closes the fd the open brings later", function()
      local fifo = dir .. "/fifo"
      assert(os.execute("mkfifo " .. fifo))
      local before = open_fds()
      local task = coil.spawn(fs.open, fifo, "r") -- waits for a writer
      coil.sleep(0.05)
      task:cancel()
      assert.is_false(pcall(task.await, task))
      assert.equal(1, coil_core.requests())
      local writer = assert(uv.fs_open(fifo, "w", 438)) -- the open completes
      assert.is_true(wait_until(function() return coil_core.requests() == 0 end))
      uv.fs_close(writer)
      assert.equal(before, open_fds())
    end)
  end)

  it("follows a file in examples/tail.lua", function()
    local proc = require "spec.support.proc"
    local path = dir .. "/log"
    local lines = {}
    for i = 1, 20 do lines[i] = "line " .. i end
    assert.is_true(fs.write_file(path, table.concat(lines, "\n") .. "\n"))
    local p = proc.coil({ "examples/tail.lua", path, "3" })
    assert.is_true(p:wait_for("line 20\n"))
    assert.equal("line 18\nline 19\nline 20\n", p.stdout)
    local f = assert(fs.open(path, "a"))
    f:write("more\nand a ")
    assert.is_true(p:wait_for("more\n"))
    f:write("half\n")
    f:close()
    assert.is_true(p:wait_for("and a half\n"))
    assert.is_true(fs.write_file(path, "rotated\n")) -- truncated
    assert.is_true(p:wait_for("rotated\n"))
    p:kill("sigint")
    local r = p:wait()
    assert.equal(2, r.signal, r.stderr)
    assert.equal("line 18\nline 19\nline 20\nmore\nand a half\nrotated\n", r.stdout)
  end)
end)
