-- Plain luv code inside coil (SPEC §7, §4 "libuv through luv"): uv.run,
-- uv.stop and friends, in a harness shaped like luv's own tests (the body,
-- then uv.run(), then a walk for unclosed handles), and raw signal watchers.
local coil = require "coil"
local uv = require "luv"
local proc = require "spec.support.proc"

--- luv's way: run the body, uv.run(), check every expected callback fired
-- once and no handle is left open.
local function luv_test(body)
  return function()
    local expected = 0
    local function expect(fn, count)
      expected = expected + (count or 1)
      return function(...)
        expected = expected - 1
        return fn(...)
      end
    end
    body(expect)
    uv.run()
    assert.equal(0, expected, "expected callbacks that never fired")
    local unclosed = {}
    uv.walk(function(handle) unclosed[#unclosed + 1] = tostring(handle) end)
    assert.same({}, unclosed)
  end
end

describe("uv.run in a task, luv-test style", function()
  it("waits for a timer and its close callback", luv_test(function(expect)
    local timer = uv.new_timer()
    timer:start(5, 0, expect(function()
      timer:close(expect(function() end))
    end))
  end))

  it("waits for a repeating timer until the callback closes it",
     luv_test(function(expect)
    local timer, n = uv.new_timer(), 0
    timer:start(1, 1, expect(function()
      n = n + 1
      if n == 3 then timer:close() end
    end, 3))
  end))

  it("waits for a TCP echo round trip", luv_test(function(expect)
    local server = uv.new_tcp()
    assert(server:bind("127.0.0.1", 0))
    assert(server:listen(8, expect(function()
      local conn = uv.new_tcp()
      server:accept(conn)
      conn:read_start(expect(function(err, data)
        assert(not err, err)
        conn:write(data, function() conn:close(); server:close() end)
      end))
    end)))
    local client = uv.new_tcp()
    client:connect("127.0.0.1", server:getsockname().port, expect(function(err)
      assert(not err, err)
      client:read_start(expect(function(_, data)
        assert.equal("ping", data)
        client:close()
      end))
      client:write("ping")
    end))
  end))

  it("waits for a pending fs request", luv_test(function(expect)
    uv.fs_stat("/", expect(function(err, stat)
      assert(not err, err)
      assert.equal("directory", stat.type)
    end))
  end))

  it("waits for prepare, check and idle handles until stopped",
     luv_test(function(expect)
    local idle, check = uv.new_idle(), uv.new_check()
    check:start(expect(function() check:stop(); check:close() end, 1))
    idle:start(expect(function() idle:stop(); idle:close() end, 1))
  end))

  it("returns at once when nothing is alive", function()
    assert.is_false(uv.run())
    assert.is_false(uv.loop_alive())
  end)

  it("does not count an unreferenced handle", function()
    local timer = uv.new_timer()
    timer:start(100000, 0, function() end)
    timer:unref()
    assert.is_false(uv.run())
    timer:close()
    uv.run()
  end)

  it("returns on uv.stop() while a handle is still active", function()
    local timer, stopper = uv.new_timer(), uv.new_timer()
    timer:start(100000, 0, function() end)
    stopper:start(5, 0, function() uv.stop() end)
    assert.is_true(uv.loop_alive())
    assert.is_true(uv.run())
    timer:close()
    stopper:close()
    uv.run()
  end)

  it("runs once and nowait as libuv does", function()
    local timer, fired = uv.new_timer(), 0
    timer:start(5, 5, function() fired = fired + 1 end)
    assert.is_true(uv.run("nowait"))
    assert.is_true(uv.run("once"))
    assert.is_true(fired >= 1)
    timer:close()
    assert.is_false(uv.run("once"))
  end)

  it("keeps waiting while other tasks can still run", function()
    local done = false
    local t = coil.spawn(function() coil.sleep(0.02); done = true end)
    uv.run()
    assert.is_true(done)
    t:await()
  end)

  it("does not wait for a task that waits for it", function()
    local me = coil.current()
    local waiter = coil.spawn(function() return coil.shield(me) end)
    coil.sleep(0)
    assert.is_false(uv.run())
    waiter:cancel()
    pcall(waiter.await, waiter)
  end)

  it("says 'loop already running' from a raw callback", function()
    local timer, r = uv.new_timer(), nil
    timer:start(1, 0, function() r = { uv.run() }; timer:close() end)
    uv.run()
    assert.same({ nil, "loop already running" }, r)
  end)

  it("raises for a bad mode, as luv does", function()
    assert.has_error(function() uv.run("sometimes") end)
  end)

  it("answers loop_mode, loop_alive and loop_close for the script's handles",
     function()
    assert.is_nil(uv.loop_mode())
    local timer, mode = uv.new_timer(), nil
    timer:start(1, 0, function() mode = uv.loop_mode() end)
    assert.same({ nil, "EBUSY: resource busy or locked", "EBUSY" },
                { uv.loop_close() })
    uv.run()
    assert.equal("default", mode)
    timer:close()
    uv.run()
    assert.equal(0, uv.loop_close())
  end)

  it("waits inside a coroutine of the task", function()
    local timer, fired = uv.new_timer(), false
    timer:start(5, 0, function() fired = true; timer:close() end)
    coroutine.wrap(function() uv.run() end)()
    assert.is_true(fired)
  end)

  it("is cancelled like any await", function()
    local t = coil.spawn(function()
      local timer = uv.new_timer()
      local _ <close> = setmetatable({}, { __close = function() timer:close() end })
      timer:start(100000, 0, function() end)
      uv.run()
    end)
    coil.sleep(0.01)
    t:cancel()
    assert.is_true(coil.is_cancelled(select(2, pcall(t.await, t))))
  end)
end)

describe("coil.run from stock lua5.4", function()
  it("leaves plain luv alone outside it and emulates uv.run inside", function()
    if os.getenv "COIL_SANITIZED" then return end -- module_spec covers ASan
    local dir = COIL_BIN:match "^(.*)/[^/]+$"
    local r = proc.start("lua5.4", {
      "-e", ("package.cpath = %q .. package.cpath"):format(dir .. "/?.so;"),
      "spec/fixtures/compat_module.lua" }):wait()
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
    assert.equal("plain luv before\nrun\tfalse\ninside coil.run\n" ..
                 "false\tgenerator\ttrue\tfalse\nplain luv after\nrun\tfalse\n",
                 r.stdout)
  end)
end)

describe("a plain luv program under coil", function()
  local function fixture(name) return "spec/fixtures/" .. name .. ".lua" end

  it("prints in the same order as under lua5.4", function()
    local a = proc.run({ fixture "compat_luv_order" })
    local b = proc.start("lua5.4", { fixture "compat_luv_order" }):wait()
    assert.equal(0, a.code)
    assert.equal(b.stdout, a.stdout)
    assert.equal("", a.stderr)
  end)

  it("cleans up and dies by SIGINT on Ctrl+C during uv.run()", function()
    local p = proc.coil({ "examples/luv_plain.lua", "0" })
    assert.is_true(p:wait_for("listening on 127.0.0.1:%d+"))
    local port = tonumber(p.stdout:match "listening on 127%.0%.0%.1:(%d+)")
    local c = assert(coil.net.connect("127.0.0.1", port))
    c:write("hello\n")
    assert.equal("hello", c:read_line())
    c:close()
    p:kill("sigint")
    local r = p:wait()
    assert.equal(2, r.signal)
    assert.matches("coil: SIGINT received", r.stderr)
  end)

  it("takes SIGTERM with uv.signal_start and SIGHUP once with start_oneshot",
     function()
    local p = proc.coil({ fixture "compat_luv_signal2" })
    assert.is_true(p:wait_for("ready"))
    p:kill("sighup")
    assert.is_true(p:wait_for("hup active false"))
    p:kill("sigterm")
    assert.is_true(p:wait_for("ready again"))
    assert.matches("oneshot got sighup 1\n", p.stdout)
    assert.matches("term watcher got sigterm", p.stdout)
    p:kill("sigterm")
    local r = p:wait()
    assert.equal(15, r.signal)
  end)

  it("lets a raw SIGINT watcher take the signal, and gives it back", function()
    local p = proc.coil({ fixture "compat_luv_signal" })
    assert.is_true(p:wait_for("ready"))
    p:kill("sigint")
    assert.is_true(p:wait_for("ready again"))
    assert.matches("watcher got sigint", p.stdout)
    p:kill("sigint")
    local r = p:wait()
    assert.equal(2, r.signal)
    assert.matches("coil: SIGINT received", r.stderr)
  end)
end)
