-- The core is built for scale: 100 000 tasks spawn, yield, get cancelled.
local coil = require "coil"

describe("at scale", function()
  it("runs 100 000 tasks that each yield once", function()
    local n, finished = 100000, 0
    local tasks = {}
    for i = 1, n do
      tasks[i] = coil.spawn(function()
        coil.sleep(0)
        finished = finished + 1
        return i
      end)
    end
    local sum = 0
    for i = 1, n do sum = sum + tasks[i]:await() end
    assert.equal(n, finished)
    assert.equal(n * (n + 1) // 2, sum)
  end)

  it("cancels 100 000 sleeping tasks, running every defer exactly once", function()
    local n = 100000
    local ran = {}
    local tasks = {}
    for i = 1, n do
      tasks[i] = coil.spawn(function()
        coil.defer(function() ran[i] = (ran[i] or 0) + 1 end)
        coil.sleep(3600)
      end)
    end
    coil.sleep(0)
    for i = 1, n do assert.is_true(tasks[i]:cancel()) end
    for i = 1, n do pcall(tasks[i].await, tasks[i]) end
    local once = 0
    for i = 1, n do if ran[i] == 1 then once = once + 1 end end
    assert.equal(n, once)
    for i = 1, n do assert.is_true(tasks[i]:cancelled()) end
  end)
end)
