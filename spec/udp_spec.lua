local coil = require "coil"
local net = coil.net

describe("coil.net.udp", function()
  it("echoes datagrams on 127.0.0.1", function()
    local server = assert(net.udp("127.0.0.1", 0))
    local ip, port = server:address()
    assert.equal("127.0.0.1", ip)
    assert.is_true(port > 0)
    local echo = coil.spawn(function()
      for _ = 1, 3 do
        local data, host, from = assert(server:recv())
        assert(server:send(data:upper(), host, from))
      end
    end)
    local client <close> = assert(net.udp("127.0.0.1", 0))
    local _, mine = client:address()
    for _, word in ipairs { "one", "two", ("x"):rep(1000) } do
      assert.is_true(client:send(word, "127.0.0.1", port))
      local data, host, from = client:recv()
      assert.equal(word:upper(), data)
      assert.equal("127.0.0.1", host)
      assert.equal(port, from)
    end
    echo:await()
    assert.is_true(mine > 0)
    server:close()
  end)

  it("keeps datagrams that arrive while nobody receives", function()
    local a <close> = assert(net.udp("127.0.0.1", 0))
    local b <close> = assert(net.udp("127.0.0.1", 0))
    local _, port = a:address()
    for i = 1, 5 do assert(b:send("d" .. i, "127.0.0.1", port)) end
    for i = 1, 5 do assert.equal("d" .. i, (a:recv())) end
  end)

  it("a close wakes a receiver; cancelling a recv leaves it usable", function()
    local s = assert(net.udp("127.0.0.1", 0))
    local t = coil.spawn(s.recv, s)
    coil.sleep(0.01)
    t:cancel()
    assert.is_false(pcall(t.await, t))
    t = coil.spawn(s.recv, s)
    coil.sleep(0.01)
    s:close()
    assert.same({ nil, "ECANCELED: operation canceled" }, { t:await() })
    assert.is_true(s:close())
    assert.error_matches(function() s:recv() end, "coil: udp:recv on a closed socket")
    assert.error_matches(function() s.send({}, "x", "h", 1) end, "expects a UDP socket")
  end)

  it("raises on mistakes and returns bind failures", function()
    assert.error_matches(function() net.udp("127.0.0.1", -1) end, "coil: net.udp: port")
    local a <close> = assert(net.udp("127.0.0.1", 0))
    local _, port = a:address()
    local b, err = net.udp("127.0.0.1", port)
    assert.is_nil(b)
    assert.equal("EADDRINUSE: address already in use", err)
    assert.error_matches(function() a:send(42, "127.0.0.1", port) end, "data must be a string")
  end)
end)
