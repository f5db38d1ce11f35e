-- coil.io.stdin / stdout / stderr with real processes: pipes, files,
-- /dev/null and a real pseudo-terminal (through script(1)).
local coil = require "coil"
local uv = require "luv"
local proc = require "spec.support.proc"

local FIXTURE = "spec/fixtures/io_stdin.lua"

-- Starts cmd with a stdin pipe we keep, stdout and stderr collected.
local function start(cmd, args)
  local self = { out = "", err = "" }
  local stdin, stdout, stderr = uv.new_pipe(), uv.new_pipe(), uv.new_pipe()
  self.stdin = stdin
  self.handle, self.pid = assert(uv.spawn(cmd, { args = args, stdio = { stdin, stdout, stderr } },
    function(code, signal) self.code, self.signal = code, signal end))
  self.started = uv.hrtime()
  stdout:read_start(function(_, d) if d then self.out = self.out .. d else stdout:close() end end)
  stderr:read_start(function(_, d) if d then self.err = self.err .. d else stderr:close() end end)
  function self.wait_for(pattern, limit)
    local deadline = coil.now() + (limit or 10)
    while not self.out:find(pattern) and self.code == nil and coil.now() < deadline do
      coil.sleep(0.01)
    end
    return self.out:find(pattern) ~= nil
  end
  function self.finish(limit)
    local deadline = coil.now() + (limit or 10)
    while self.code == nil and coil.now() < deadline do coil.sleep(0.01) end
    if self.code == nil then self.handle:kill("sigkill") end
    while self.code == nil do coil.sleep(0.01) end
    if not stdin:is_closing() then stdin:close() end
    self.handle:close()
    coil.sleep(0.02) -- the output pipes' ends
  end
  return self
end

describe("coil.io", function()
  it("reads stdin lines from a pipe while a ticker runs", function()
    local p = start(COIL_BIN, { FIXTURE })
    assert.is_true(p.wait_for("ready\n"))
    p.stdin:write("first\n")
    assert.is_true(p.wait_for("line first"))
    coil.sleep(0.2)
    p.stdin:write("second\n")
    assert.is_true(p.wait_for("line second"))
    p.stdin:shutdown()
    p.finish()
    assert.equal(0, p.code, p.err)
    local before, after = p.out:match("line first ticks (%d+)\nline second ticks (%d+)")
    assert.is_true(tonumber(after) - tonumber(before) >= 3, p.out) -- ticked while it waited
    assert.matches("end ticks %d+\n$", p.out)
    assert.equal("to stderr\n", p.err)
  end)

  it("Ctrl+C while a task waits on stdin exits at once", function()
    local p = start(COIL_BIN, { FIXTURE })
    assert.is_true(p.wait_for("ready\n"))
    coil.sleep(0.05)
    local t0 = coil.now()
    p.handle:kill("sigint")
    p.finish()
    assert.equal(2, p.signal, p.err)
    assert.is_true(coil.now() - t0 < 2, "took " .. (coil.now() - t0))
  end)

  it("reads a regular file and /dev/null on stdin, writes to a file", function()
    local dir = os.tmpname()
    os.remove(dir)
    uv.fs_mkdir(dir, 448)
    local input, output = dir .. "/in", dir .. "/out"
    local f = assert(io.open(input, "w"))
    f:write("one\r\ntwo\nthree")
    f:close()
    local r = proc.run({ "-e", "", FIXTURE }, { stdin = "" }) -- a pipe at its end at once
    assert.equal(0, r.code, r.stderr)
    r = proc.start("sh", { "-c", ('exec "$0" %s < %s > %s'):format(FIXTURE, input, output), COIL_BIN }):wait()
    assert.equal(0, r.code, r.stderr)
    local got = assert(io.open(output)):read("a")
    assert.matches("^ready\nline one ticks %d+\nline two ticks %d+\nline three ticks %d+\nend ticks", got)
    r = proc.start("sh", { "-c", ('exec "$0" %s < /dev/null'):format(FIXTURE), COIL_BIN }):wait()
    assert.equal(0, r.code, r.stderr)
    assert.matches("^ready\nend ticks %d+\n$", r.stdout)
    os.remove(input); os.remove(output); uv.fs_rmdir(dir)
  end)

  it("reads a terminal, and Ctrl+C typed on it ends coil by SIGINT", function()
    -- script(1) runs coil on a new pseudo-terminal fed from our pipe
    local cmd = ("exec %s --quiet %s"):format(COIL_BIN, FIXTURE)
    local p = start("script", { "-qec", cmd, "/dev/null" })
    assert.is_true(p.wait_for("ready"))
    p.stdin:write("typed\n")
    assert.is_true(p.wait_for("line typed ticks"))
    p.stdin:write("\3") -- Ctrl+C: the terminal sends SIGINT
    p.finish()
    assert.matches("line typed ticks %d+", p.out)
    assert.not_matches("end ticks", p.out) -- it did not see an end of input
    assert.is_not_equal(0, p.code + p.signal) -- script reports the child's death
  end)

  it("reads a socket on stdin", function()
    local server = assert(coil.net.listen("127.0.0.1", 0, function(stream)
      stream:write("over\nthe socket\n")
      stream:drain()
    end))
    local _, port = server:address()
    local tcp = uv.new_tcp()
    assert.is_nil(coil.await(tcp.connect, tcp, "127.0.0.1", port))
    local out, code = "", nil
    local pipe = uv.new_pipe()
    local handle = assert(uv.spawn(COIL_BIN, { args = { FIXTURE }, stdio = { tcp, pipe } },
                                   function(c) code = c end))
    tcp:close() -- the child has it
    pipe:read_start(function(_, d) if d then out = out .. d else pipe:close() end end)
    local deadline = coil.now() + 10
    while (code == nil or not pipe:is_closing()) and coil.now() < deadline do coil.sleep(0.01) end
    handle:close()
    server:close()
    assert.equal(0, code)
    assert.matches("line over ticks %d+\nline the socket ticks %d+\nend ticks", out)
  end)

  it("gives standard input back blocking, for the pipe's next reader", function()
    local script = [[print(require("coil").io.stdin:read_line())]]
    local r = proc.start("sh", { "-c", [[(echo first; sleep 0.3; echo second) | ("$0" -e "$1"; cat)]],
                                 COIL_BIN, script }):wait()
    assert.equal(0, r.code, r.stderr)
    assert.equal("first\nsecond\n", r.stdout)
    assert.equal("", r.stderr)
  end)

  it("raises on misuse", function()
    assert.error_matches(function() coil.io.stdout = 1 end, "cannot be assigned")
    assert.error_matches(function() coil.io.stdout.write({}, "x") end, "expects a stream")
    assert.is_nil(coil.io.nope)
    assert.same({ nil, "EBADF: bad file descriptor (not readable)" }, { coil.io.stderr:read() })
  end)
end)
