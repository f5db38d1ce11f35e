-- Waitsets (coil.wait, gather, race) do not depend on the caller's list
-- staying the same while they wait (issue 11, item 1), and the exported
-- waitset internals check their arguments (item 8).
local coil = require "coil"
local coil_core = require "coil.core"
local proc = require "spec.support.proc"

describe("a wait whose list is refilled while it waits", function()
  it("never lets a replaced task reach the waitset (a real process)", function()
    -- under the ASan build this is where heap-use-after-free was reported
    local r = proc.run({ "spec/fixtures/reliab_pool_refill.lua" }, { limit = 60 })
    assert.equal("", r.stderr)
    assert.equal("ok\n", r.stdout)
    assert.equal(0, r.code)
    assert.equal(0, r.signal)
  end)

  it("returns done and pending of the tasks it was given, not of the list now", function()
    local pool = { coil.spawn(function() coil.sleep(0.01) end) }
    local replaced = pool[1]
    local waiter = coil.spawn(function()
      return coil.wait(pool, { return_when = "first" })
    end)
    coil.sleep(0)
    local fresh = coil.spawn(function() coil.sleep(0.05) end)
    pool[1] = fresh
    local done, pending = waiter:await()
    assert.same({ replaced }, done)
    assert.same({}, pending)
    fresh:await()
  end)

  it("survives entries replaced by non-tasks while gather waits", function()
    local list = { coil.spawn(function() coil.sleep(0.01); return 1 end),
                   coil.spawn(function() coil.sleep(0.02); return 2 end) }
    local gatherer = coil.spawn(function() return pcall(coil.gather, list) end)
    coil.sleep(0)
    local a, b = list[1], list[2]
    list[1], list[2] = "junk", nil
    collectgarbage()
    local ok = gatherer:await()
    assert.is_boolean(ok)
    a:await(); b:await()
    collectgarbage()
  end)
end)

describe("the waitset internals", function()
  it("refuse a count outside the list", function()
    local ok, err = pcall(coil_core.waitset, {}, -1)
    assert.is_false(ok)
    assert.matches("^coil: _waitset: count %-1 out of range", err)
    ok, err = pcall(coil_core.waitset, { coil.current() }, 2)
    assert.is_false(ok)
    assert.matches("^coil: _waitset: count 2 out of range", err)
    ok, err = pcall(coil_core.waitset, {}, math.maxinteger)
    assert.is_false(ok)
    collectgarbage()
  end)

  it("refuse entries that are not tasks, before linking any", function()
    local t = coil.spawn(function() coil.sleep(0.01) end)
    local ok, err = pcall(coil_core.waitset, { t, 42 }, 2)
    assert.is_false(ok)
    assert.equal("coil: _waitset: entry 2 is a number, not a task", err)
    -- t was not left linked: a real wait on it works
    local done = coil.wait({ t })
    assert.same({ t }, done)
  end)

  it("unlink every task on close, even when its list was changed", function()
    -- the waitset keeps the list it was given and unlinks through it; a
    -- list changed behind its back leaves tasks it no longer names: those
    -- are found among the live tasks, so none keeps a pointer to a freed
    -- waitset (ASan: heap-use-after-free when a task then ends)
    local a = coil.spawn(function() coil.sleep(0.01) end)
    local b = coil.spawn(function() coil.sleep(0.01) end)
    local list = { a, b }
    local ws = coil_core.waitset(list, 2)
    list[1], list[2] = 42, b
    coil_core.waitset_close(ws)
    ws = nil -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    local ws2, shared = coil_core.waitset({ a, b }, 2)
    assert.is_nil(shared) -- neither still points at the closed waitset
    coil_core.waitset_close(ws2)
    a:await(); b:await()
    collectgarbage()
  end)

  it("count a shared task once, and only once it is done", function()
    local t = coil.spawn(function() coil.sleep(0.01) end)
    local ws1 = coil_core.waitset({ t }, 1)
    local ws2, shared = coil_core.waitset({ t }, 1)
    assert.same({ 1 }, shared)
    local ok, err = pcall(coil_core.waitset_notify, ws2, 1)
    assert.is_false(ok)
    assert.equal("coil: _waitset_notify: task 1 is not done", err)
    ok, err = pcall(coil_core.waitset_notify, ws1, 1)
    assert.is_false(ok)
    assert.matches("^coil: _waitset_notify: 1 is not a shared task", err)
    t:await()
    coil_core.waitset_notify(ws2, 1)
    assert.is_false(pcall(coil_core.waitset_notify, ws2, 1))
    assert.equal(1, (coil_core.waitset_state(ws2)))
    assert.equal(1, (coil_core.waitset_state(ws1)))
    coil_core.waitset_close(ws1)
    coil_core.waitset_close(ws2)
  end)

  it("refuse to wait on a closed waitset", function()
    local t = coil.spawn(function() coil.sleep(0.01) end)
    local ws = coil_core.waitset({ t }, 1)
    coil_core.waitset_close(ws)
    local ok, err = pcall(coil_core.waitset_wait, ws, "all")
    assert.is_false(ok)
    assert.equal("coil: wait on a closed waitset", err)
    t:await()
  end)
end)
