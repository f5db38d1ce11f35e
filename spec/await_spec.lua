local coil = require "coil"
local coil_core = require "coil.core"
local uv = require "luv"

-- Opens a FIFO for reading and writing (O_RDWR never blocks on Linux), so a
-- read on it blocks a threadpool thread until something is written.
local function blocking_fd(dir, name)
  local path = dir .. "/" .. name
  assert(os.execute("mkfifo " .. path))
  return assert(uv.fs_open(path, "r+", 438))
end

local function wait_until(check, limit)
  local deadline = coil.now() + (limit or 2)
  while not check() and coil.now() < deadline do coil.sleep(0.005) end
  return check()
end

describe("coil.await", function()
  local dir
  before_each(function() dir = assert(uv.fs_mkdtemp("/tmp/coil-await-XXXXXX")) end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  it("returns the callback's arguments", function()
    local err, st = coil.await(uv.fs_stat, dir)
    assert.is_nil(err)
    assert.equal("directory", st.type)
    err, st = coil.await(uv.fs_stat, dir .. "/missing")
    assert.matches("^ENOENT: no such file or directory", err)
    assert.is_nil(st)
    assert.equal(0, coil_core.requests())
  end)

  it("returns the error at once when the call fails before starting", function()
    local tcp = uv.new_tcp() -- never connected: no socket to write to
    local err, name = coil.await(tcp.write, tcp, "x")
    tcp:close()
    assert.equal("EBADF: bad file descriptor", err)
    assert.equal("EBADF", name)
    assert.equal(0, coil_core.requests())
  end)

  it("works for handle methods and getaddrinfo", function()
    local err, res = coil.await(uv.getaddrinfo, "127.0.0.1", nil, { socktype = "stream" })
    assert.is_nil(err)
    assert.equal("127.0.0.1", res[1].addr)
  end)

  it("takes only the first call of a callback that fires again", function()
    local timer = uv.new_timer()
    local t0 = coil.now()
    coil.await(timer.start, timer, 20, 5) -- repeats every 5 ms
    assert.is_true(coil.now() - t0 >= 0.015)
    coil.sleep(0.03) -- the repeats come and are ignored
    timer:close()
    assert.equal(0, coil_core.requests())
  end)

  it("raises on programming mistakes", function()
    assert.error_matches(function() coil.await(42) end,
                         "coil: await expects a function, got number")
    -- outside a task (a raw luv callback)
    local timer, caught = uv.new_timer(), nil
    timer:start(1, 0, function()
      caught = select(2, pcall(coil.await, uv.fs_stat, "/"))
      timer:close()
    end)
    assert.is_true(wait_until(function() return caught ~= nil end))
    assert.matches("coil: await must be called from inside a task", caught)
  end)

  it("cancels a request still queued (uv_cancel) and ignores its callback", function()
    -- occupy every threadpool thread with a blocked read
    local size = tonumber(os.getenv("UV_THREADPOOL_SIZE")) or 4
    local fds, done = {}, 0
    for i = 1, size do
      fds[i] = blocking_fd(dir, "fifo" .. i)
      uv.fs_read(fds[i], 1, -1, function() done = done + 1 end)
    end
    coil.sleep(0.05)
    local task = coil.spawn(coil.await, uv.fs_stat, dir)
    coil.sleep(0.01)
    assert.equal(1, coil_core.requests())
    task:cancel()
    local ok, err = pcall(task.await, task)
    assert.is_false(ok)
    assert.is_true(coil.is_cancelled(err))
    -- uv_cancel made libuv call back with ECANCELED at once
    assert.is_true(wait_until(function() return coil_core.requests() == 0 end))
    for i = 1, size do uv.fs_write(fds[i], "x", -1) end
    assert.is_true(wait_until(function() return done == size end))
    for i = 1, size do uv.fs_close(fds[i]) end
  end)

  it("never resumes a task that stopped waiting when a late callback fires", function()
    local fd = blocking_fd(dir, "fifo")
    local slept
    local task = coil.spawn(function()
      local ok, err = pcall(coil.await, uv.fs_read, fd, 10, -1)
      assert(not ok and coil.is_cancelled(err))
      -- the read's callback fires while this sleeps: it must not wake it
      local t0 = coil.now()
      coil.sleep(0.15)
      slept = coil.now() - t0
      error(err, 0)
    end)
    coil.sleep(0.05) -- the read is running in a thread: uv_cancel cannot stop it
    task:cancel()
    coil.sleep(0.02)
    assert.equal(1, coil_core.requests())
    uv.fs_write(fd, "late", -1)
    assert.is_true(wait_until(function() return coil_core.requests() == 0 end))
    local ok, err = pcall(task.await, task)
    assert.is_false(ok)
    assert.is_true(coil.is_cancelled(err))
    assert.is_true(slept >= 0.14, "slept only " .. tostring(slept))
    uv.fs_close(fd)
  end)
end)
