local coil = require "coil"
local uv = require "luv"

describe("coil.await_at", function()
  it("puts the callback at position n, nil-padding the rest", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w")); f:write("0123456789"); f:close()
    local err, fd = coil.await_at(4, uv.fs_open, path, "r", 420)
    assert.is_nil(err)
    -- fs_read(fd, size, offset, cb): offset left out, the callback fourth
    local e, data = coil.await_at(4, uv.fs_read, fd, 4)
    assert.is_nil(e)
    assert.equal("0123", data)
    uv.fs_close(fd)
    local e2 = coil.await_at(2, uv.fs_stat, "/no/such/file")
    assert.matches("^ENOENT", e2)
    os.remove(path)
  end)

  it("raises on a bad position or function", function()
    assert.error_matches(function() coil.await_at(1, uv.fs_stat, "/") end,
                         "coil: await_at: n must be an integer above the 1 argument")
    assert.error_matches(function() coil.await_at("2", uv.fs_stat, "/") end, "coil: await_at: n")
    assert.error_matches(function() coil.await_at(2, 42, "/") end, "coil: await_at expects a function")
  end)
end)

describe("coil.now", function()
  it("is current after code that blocked the loop", function()
    local t0 = coil.now()
    local stop = uv.hrtime() + 0.3e9
    while uv.hrtime() < stop do end -- a busy loop: the loop does not turn
    local elapsed = coil.now() - t0
    assert.is_true(elapsed >= 0.29, "now advanced by " .. elapsed)
    -- and sleeping still counts from there
    local t1 = coil.now()
    coil.sleep(0.05)
    assert.is_true(coil.now() - t1 >= 0.049)
  end)
end)
