-- A server that runs out of file descriptors pauses (the connections wait
-- in the kernel's queue), says so, keeps the connections it has, and
-- resumes once descriptors are free.
local coil = require "coil"
local proc = require "spec.support.proc"
local net = coil.net

local function count(text, pattern) return select(2, text:gsub(pattern, "")) end

describe("a server out of file descriptors", function()
  it("under ulimit -n 64, 200 connections: it pauses, keeps, and serves them all", function()
    local p = proc.start("sh", { "-c", 'ulimit -n 64 && exec "$0" spec/fixtures/net_emfile.lua',
                                 COIL_BIN })
    assert.is_true(p:wait_for("ready %d+\n"), p.stderr)
    local port = tonumber(p.stdout:match "ready (%d+)")
    local served, open = {}, {}
    local clients = {}
    for i = 1, 200 do
      clients[i] = coil.spawn(function()
        local c = assert(net.connect("127.0.0.1", port))
        open[#open + 1] = c
        assert(c:write("hi " .. i .. "\n"))
        assert.equal("echo hi " .. i, c:read_line())
        served[#served + 1] = c
      end)
    end
    -- waits until no connection has been served for a while
    local function settle()
      local last, since = -1, coil.now()
      while #served < 200 and coil.now() - since < 0.5 do
        if #served ~= last then last, since = #served, coil.now() end
        coil.sleep(0.02)
      end
    end
    settle()
    local first = #served
    assert.is_true(first > 10 and first < 200, "served " .. first .. " at first")
    assert.matches("out of file descriptors %(EMFILE", p.stderr)
    -- the connections it has still work, while the rest wait
    for i, c in ipairs(served) do
      assert.is_true(c:write("again " .. i .. "\n"))
      assert.equal("echo again " .. i, c:read_line())
    end
    -- free descriptors, round after round: it resumes and serves the rest
    local closed = 0
    for _ = 1, 20 do
      if #served == 200 then break end
      for i = closed + 1, #served do served[i]:close() end
      closed = #served
      settle()
    end
    assert.equal(200, #served)
    for _, t in ipairs(clients) do t:await() end
    for _, c in ipairs(open) do c:close() end
    assert.matches("accepting again", p.stderr)
    -- one line per time it ran out, not one per connection
    assert.is_true(count(p.stderr, "out of file descriptors") <= count(p.stderr, "accepting again") + 1,
                   p.stderr)
    p:kill("sigterm")
    local r = p:wait()
    assert.equal(15, r.signal, r.stderr)
  end)
end)
