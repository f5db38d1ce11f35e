-- A callable table is run as coil accepts it (issue 11, item 6): coil.spawn
-- takes it too, so call_later no longer fails later inside coil's timer.
local coil = require "coil"
local proc = require "spec.support.proc"

local function callable(fn)
  return setmetatable({}, { __call = function(_, ...) return fn(...) end })
end

describe("a callable table given to coil", function()
  it("runs as a task: coil.spawn", function()
    assert.equal(42, coil.spawn(callable(function(a) return a * 2 end), 21):await())
  end)

  it("runs after call_later's delay instead of failing in coil's timer", function()
    local h = coil.call_later(0.01, callable(function(a) return a + 1 end), 1)
    coil.sleep(0.05)
    assert.equal(2, h:task():await())
  end)

  it("does not end a real program with status 1", function()
    local r = proc.run({ "-e", [[
      local coil = require "coil"
      coil.call_later(0.01, setmetatable({}, { __call = function() print("ran") end }))]] })
    assert.equal("ran\n", r.stdout)
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
  end)

  it("is still refused at once when it is not callable", function()
    assert.has_error(function() coil.call_later(0.01, {}) end,
                     "coil: call_later expects a function, got table")
    assert.is_false(pcall(coil.spawn, {}))
  end)
end)
