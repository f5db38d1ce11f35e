-- rockspecs/coil-scm-1.rockspec: `luarocks make` into a tree of its own
-- builds and installs the module the way Lua users expect; stock lua5.4
-- then loads it from that tree, and the tree's bin/ has the coil command.
-- The build runs on a copy of the sources, so the working tree stays clean.
local proc = require "spec.support.proc"
local uv = require "luv"

local ROOT = uv.cwd()

local function on_path(name)
  for dir in (os.getenv "PATH" or ""):gmatch "[^:]+" do
    if uv.fs_access(dir .. "/" .. name, "X") then return dir .. "/" .. name end
  end
  return nil
end

local function sh(line, args, limit)
  local argv = { "-c", line, "sh" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return proc.start("sh", argv):wait(limit or 60)
end

describe("luarocks make rockspecs/coil-scm-1.rockspec", function()
  local tmp, tree

  lazy_setup(function()
    assert(on_path "luarocks",
           "luarocks is not installed: the rockspec cannot be checked. " ..
           "Install Debian's package (apt-get install luarocks); " ..
           "scripts/setup installs it.")
    tmp = assert(uv.fs_mkdtemp("/tmp/coil-rock-XXXXXX"))
    tree = tmp .. "/tree"
    -- the sources, without builds and git's data
    local copy = sh('mkdir "$2/src" && tar -C "$1" --exclude=./.git ' ..
                    '--exclude="./build*" -cf - . | tar -C "$2/src" -xf -',
                    { ROOT, tmp })
    assert(copy.code == 0, copy.stderr)
  end)

  lazy_teardown(function()
    if tmp then sh('rm -rf "$1"', { tmp }) end
  end)

  it("passes luarocks lint", function()
    local r = sh('luarocks --lua-version=5.4 lint "$1"',
                 { ROOT .. "/rockspecs/coil-scm-1.rockspec" })
    assert.equal(0, r.code, r.stdout .. r.stderr)
  end)

  it("builds and installs the module into the tree", function()
    local r = sh('cd "$1/src" && luarocks --lua-version=5.4 make --tree "$2" ' ..
                 'rockspecs/coil-scm-1.rockspec', { tmp, tree }, 300)
    assert.is_false(r.timed_out)
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("coil scm%-1 is now installed in", r.stdout)
    assert.is_truthy(uv.fs_stat(tree .. "/lib/lua/5.4/coil.so"))
  end)

  it("is loaded by stock lua5.4 from the tree, coil.busted included", function()
    local r = sh('cd / && lua5.4 -e "package.cpath = \\"$1/lib/lua/5.4/?.so;\\" .. package.cpath" ' ..
                 '-e "$2"', { tree, [[
local coil = require "coil"
print(coil.run(function() coil.sleep(0.01); return "from the rock" end))
print(type(require "coil.busted"))
print(package.searchpath("coil", package.cpath))]] })
    assert.equal(0, r.code, r.stderr)
    assert.equal("from the rock\ntable\n" .. tree .. "/lib/lua/5.4/coil.so\n", r.stdout)
  end)

  it("is found through `luarocks path` for the tree", function()
    local r = sh('eval "$(luarocks --lua-version=5.4 path --tree "$1")" && cd / && ' ..
                 'lua5.4 -e "print(require \\"coil\\".run(function() return 42 end))"',
                 { tree })
    assert.equal(0, r.code, r.stderr)
    assert.equal("42\n", r.stdout)
  end)

  it("puts the coil command in the tree's bin/", function()
    local r = sh('"$1/bin/coil" -e "print(require \\"coil\\".version)"', { tree })
    assert.equal(0, r.code, r.stderr)
    assert.equal("0.2.0\n", r.stdout)
  end)

  it("names the MIT licence", function()
    local r = sh('luarocks --lua-version=5.4 show --tree "$1" coil', { tree })
    assert.equal(0, r.code, r.stderr)
    assert.matches("License:%s*MIT", r.stdout)
  end)

  it("was built against the Lua luarocks named (its variables reached CMake)", function()
    local cache = sh('find "$1/src" -name CMakeCache.txt', { tmp }).stdout:match "[^\n]+"
    assert.is_not_nil(cache, "no CMakeCache.txt left in the build copy")
    local f = assert(io.open(cache))
    local text = f:read "a"
    f:close()
    local incdir = sh("luarocks --lua-version=5.4 config variables.LUA_INCDIR").stdout:match "%S+"
    assert.matches("LUA_INCDIR:%w+=" .. incdir:gsub("%p", "%%%0") .. "\n", text)
    assert.matches("\nLUA:%w+=%S*lua", text)
    assert.matches("\nLIBDIR:%w+=" .. tree:gsub("%p", "%%%0"), text)
  end)

  it("refuses at configure time a Lua that LuaRocks names and that is not 5.4", function()
    local r = sh([[
      mkdir -p "$2/lua53" && printf '#define LUA_VERSION_NUM\t\t503\n' > "$2/lua53/lua.h"
      printf '#!/bin/sh\nprintf "Lua 5.3"\n' > "$2/lua53/lua" && chmod +x "$2/lua53/lua"
      cmake -S "$1" -B "$2/cfg1" -DLUA_INCDIR="$2/lua53" 2>&1; echo "status $?"
      cmake -S "$1" -B "$2/cfg2" -DLUA_INCDIR=/usr/include/lua5.4 -DLUA="$2/lua53/lua" 2>&1; echo "status $?"
      rm -rf "$2/cfg1" "$2/cfg2" "$2/lua53"]], { ROOT, tmp }, 120)
    assert.equal(0, r.code, r.stderr)
    assert.matches("lua53/lua.h is not Lua 5.4", r.stdout)
    assert.matches("lua53/lua is not Lua 5.4 %('Lua 5.3'%)", r.stdout)
    assert.not_matches("status 0", r.stdout)
  end)

  it("installs a coil.pc that a C host builds and runs with", function()
    local pc = sh('find "$1" -name coil.pc', { tree }).stdout:match "[^\n]+"
    assert.is_not_nil(pc, "no coil.pc in the tree")
    local pcdir = pc:match "^(.*)/coil%.pc$"
    local r = sh('flags=$(PKG_CONFIG_PATH="$2" pkg-config --cflags --libs coil) && ' ..
                 'cc -o "$3/pc_consumer" "$1/tests/pc_consumer.c" $flags && ' ..
                 'LD_LIBRARY_PATH="$4" "$3/pc_consumer"',
                 { ROOT, pcdir, tmp, pcdir:match "^(.*)/pkgconfig$" }, 120)
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.equal("pc consumer: coil 0.2.0\n", r.stdout)
  end)
end)
