-- The options and environment of the stock lua 5.4 interpreter (SPEC §2),
-- run side by side: the same small programs under `coil` and `lua5.4`, and
-- the same output expected from both.
local proc = require "spec.support.proc"

local tmp = os.tmpname()
local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

--- env: a list of "K=V" added to a minimal environment.
local function env_with(extra)
  local env = { "PATH=" .. (os.getenv "PATH" or "/usr/bin:/bin") }
  for _, kv in ipairs(extra or {}) do env[#env + 1] = kv end
  return env
end

local function both(args, opts)
  opts = opts or {}
  local o = { env = env_with(opts.env), stdin = opts.stdin }
  local c = proc.coil(args, o):wait()
  local l = proc.start("lua5.4", args, o):wait()
  return c, l
end

--- Runs both and expects the same standard output and status.
local function same(args, opts)
  local c, l = both(args, opts)
  assert.equal(l.stdout, c.stdout)
  assert.equal(l.code, c.code)
  return c, l
end

describe("coil beside lua5.4", function()
  teardown(function() os.remove(tmp) end)

  it("runs LUA_INIT first, before -e, in the same state", function()
    same({ "-e", "print(x)" }, { env = { "LUA_INIT=x = 'from init'" } })
  end)

  it("prefers LUA_INIT_5_4 to LUA_INIT", function()
    same({ "-e", "print(x)" },
         { env = { "LUA_INIT_5_4=x = 54", "LUA_INIT=x = 'plain'" } })
  end)

  it("runs LUA_INIT=@file as a file", function()
    write(tmp, "y = 'from a file'\n")
    same({ "-e", "print(y)" }, { env = { "LUA_INIT=@" .. tmp } })
  end)

  it("ignores LUA_INIT and LUA_PATH under -E", function()
    local c = same({ "-E", "-e", "print(x, package.path:find('/nowhere', 1, true))" },
                   { env = { "LUA_INIT=x = 1", "LUA_PATH=/nowhere/?.lua" } })
    assert.equal("nil\tnil\n", c.stdout)
  end)

  it("reads LUA_PATH_5_4 without -E", function()
    same({ "-e", "print(package.path)" },
         { env = { "LUA_PATH_5_4=/a/?.lua;;" } })
  end)

  it("fails with status 1 when LUA_INIT fails", function()
    local c = same({ "-e", "print('not reached')" },
                   { env = { "LUA_INIT=error('init failed')" } })
    assert.equal(1, c.code)
    assert.matches("init failed", c.stderr)
  end)

  it("turns warnings on with -W, in order with -e", function()
    local c, l = both({ "-e", "warn('one')", "-W", "-e", "warn('two')" })
    assert.equal(l.stderr:match "Lua warning: two", c.stderr:match "Lua warning: two")
    assert.is_nil(c.stderr:match "one")
  end)

  it("binds -l g=name to the global g", function()
    same({ "-l", "s=string", "-e", "print(s.rep('ab', 2), string ~= nil)" })
  end)

  it("sets arg and ... as lua does, with options before the script", function()
    write(tmp, "print(#arg, arg[0] ~= nil, ...)\nfor i = -3, #arg do print(i, arg[i] ~= nil) end\n")
    same({ "-e", "x=1", tmp, "a", "b" })
  end)

  it("gives the script the arg table -e left", function()
    same({ "-e", "arg[1] = 'changed'", "-", "orig" }, { stdin = "print(...)" })
  end)

  it("reads the script from stdin with -, and runs a file named - after --",
     function()
    same({ "-", "x" }, { stdin = "print('stdin', ...)" })
  end)

  it("runs standard input when no script is named, with arg as lua sets it",
     function()
    same({ "-W" }, { stdin = "print(arg[0] ~= nil, arg[-1], #arg, arg[1], ...)" })
    same({}, { stdin = "print(#arg, ...)" })
  end)

  it("prints require's not-found message exactly as lua does", function()
    same({ "-e", "print(select(2, pcall(require, 'no.such.module')))" },
         { env = { "LUA_PATH=./?.lua", "LUA_CPATH=./?.so" } })
  end)

  it("refuses what lua refuses, with status 1", function()
    for _, args in ipairs { { "-x" }, { "-Ex" }, { "-e" }, { "-e", "-v" },
                            { "-l" }, { "--x" } } do
      local c, l = both(args)
      assert.equal(1, l.code)
      assert.equal(1, c.code, table.concat(args, " "))
      assert.matches("^coil: ", c.stderr)
    end
  end)

  it("prints the usage on --help and exits 0", function()
    local r = proc.run({ "--help" })
    assert.equal(0, r.code)
    assert.matches("%-E ", r.stdout)
    assert.matches("%-W ", r.stdout)
    assert.matches("%-l g=name", r.stdout)
  end)
end)
