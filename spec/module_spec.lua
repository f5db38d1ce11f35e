-- coil as a Lua module (SPEC §4 "Running from stock Lua"): stock lua5.4 as a
-- subprocess loading the build's coil.so, on spec/fixtures/module_run.lua:
-- coil.run's results, errors, repeated calls, the nested-call error, a real
-- SIGINT; then `cmake --install` into a staging directory, the installed
-- module loaded from there and coil.pc used to build an embedding program.
local proc = require "spec.support.proc"
local uv = require "luv"

local ROOT = uv.cwd()
local function absolute(path)
  return path:sub(1, 1) == "/" and path or ROOT .. "/" .. path
end
local BUILD = absolute(COIL_BIN):match "^(.*)/[^/]+$"
local SANITIZED = os.getenv "COIL_SANITIZED" ~= nil

-- a sanitized coil.so loads into stock lua5.4 behind the sanitizers' runtimes
local preload = require("spec.support.stock").preload

-- Runs a shell line (arguments as $1, $2, ...) and waits for its end.
local function sh(line, args, opts)
  local argv = { "-c", line, "sh" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local p = proc.start("sh", argv, opts)
  return p
end

-- Starts stock lua5.4 with package.cpath on opts.cpath (default: the
-- build directory) and the given arguments.
local function lua(args, opts)
  opts = opts or {}
  local line = 'dir=$1; shift; ' .. preload ..
               'exec lua5.4 -e "package.cpath = \\"$dir/?.so;\\" .. package.cpath" "$@"'
  local argv = { opts.cpath or BUILD }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return sh(line, argv, opts)
end

local function run_fixture(mode)
  local r = lua({ "spec/fixtures/module_run.lua", mode }):wait(30)
  assert.is_false(r.timed_out, r.stderr)
  return r
end

describe("coil.run from stock lua5.4", function()
  it("returns the main task's results, nils included, given its arguments", function()
    local r = run_fixture "results"
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
    assert.equal("4\n42\tdone\ntrue\tmain\n", r.stdout)
  end)

  it("raises the main task's error, a string with the task's traceback", function()
    local r = run_fixture "error"
    assert.equal(0, r.code)
    assert.matches("^false\nspec/fixtures/module_run%.lua:%d+: boom in the main task\n" ..
                   "stack traceback of task 'main':\n.-module_run%.lua:%d+", r.stdout)
    -- a non-string error comes back as it was raised
    assert.matches("\nfalse\ttrue\n$", r.stdout)
    assert.equal("", r.stderr)
  end)

  it("can be called again and again, leaving luv's loop empty each time", function()
    local r = run_fixture "repeat"
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
    assert.equal("run\t1\tfalse\t0\nrun\t2\tfalse\t0\nrun\t3\tfalse\t0\n" ..
                 "spawned finished\ttrue\nplain luv timer\n", r.stdout)
  end)

  it("raises the SPEC's message when called from inside a task", function()
    local r = run_fixture "nested"
    assert.equal(0, r.code)
    assert.equal("false\tcoil.run cannot be called from inside a task; " ..
                 "use coil.spawn or await\n", r.stdout)
  end)

  it("works from any directory", function()
    local r = lua({ "-e", 'print(require "coil".run(function() return 42 end))' },
                  { cwd = "/" }):wait(30)
    assert.equal(0, r.code, r.stderr)
    assert.equal("42\n", r.stdout)
  end)

  for _, sig in ipairs { "SIGINT", "SIGTERM" } do
    it("on a real " .. sig .. " runs the cleanup, then raises coil.Interrupted", function()
      local p = lua({ "spec/fixtures/module_run.lua", "signal" })
      assert.is_true(p:wait_for("ready\n", 20), p.stderr)
      p:kill(sig:lower())
      local r = p:wait(30)
      assert.is_false(r.timed_out, r.stderr)
      -- the process was not killed: coil.run raised, and ran again after
      assert.equal(0, r.signal)
      assert.equal(0, r.code, r.stderr)
      assert.matches("^coil: " .. sig .. " received, cancelling 2 task%(s%)", r.stderr)
      -- the cleanup (which awaits) finished before coil.run raised
      local cleanup = r.stdout:find("worker cleanup ran\n", 1, true)
      local main_cleanup = r.stdout:find("main cleanup ran\n", 1, true)
      local after = r.stdout:find("after run\tfalse\ttrue\t" .. sig ..
                                  "\tinterrupted: " .. sig .. "\n", 1, true)
      assert.is_truthy(cleanup, r.stdout)
      assert.is_truthy(main_cleanup, r.stdout)
      assert.is_truthy(after, r.stdout)
      assert.is_true(cleanup < after and main_cleanup < after, r.stdout)
      assert.matches("again\tfine\n$", r.stdout)
    end)
  end
end)

describe("cmake --install", function()
  local stage

  -- CMAKE_INSTALL_PREFIX of the build
  local function prefix()
    for line in io.lines(BUILD .. "/CMakeCache.txt") do
      local p = line:match "^CMAKE_INSTALL_PREFIX:PATH=(.*)$"
      if p then return p end
    end
    error "no CMAKE_INSTALL_PREFIX in CMakeCache.txt"
  end

  local function exists(path)
    return uv.fs_stat(path) ~= nil
  end

  lazy_setup(function()
    stage = assert(uv.fs_mkdtemp("/tmp/coil-install-XXXXXX"))
    local r = sh('DESTDIR="$1" cmake --install "$2"', { stage, BUILD }):wait(120)
    assert(r.code == 0, "cmake --install failed:\n" .. r.stdout .. r.stderr)
  end)

  lazy_teardown(function()
    if stage then sh('rm -rf "$1"', { stage }):wait(30) end
  end)

  it("puts the module where Debian's lua5.4 looks, and it runs from there", function()
    -- lua5.4's own search path, without the build's
    local r = sh('lua5.4 -e "print(package.cpath)"'):wait(10)
    local dir
    for template in r.stdout:gsub("\n$", ""):gmatch "[^;]+" do
      local d = template:match "^(.*)/%?%.so$"
      if d and exists(stage .. d .. "/coil.so") then dir = d end
    end
    assert.is_truthy(dir, "coil.so is in none of lua5.4's package.cpath " ..
                     "directories under " .. stage .. prefix())
    local run = lua({ "-e", 'local coil = require "coil"; ' ..
                            'print(coil.run(function() coil.sleep(0.01); return "installed" end))' },
                    { cpath = stage .. dir, cwd = "/" }):wait(30)
    assert.equal(0, run.code, run.stderr)
    assert.equal("installed\n", run.stdout)
  end)

  it("installs the coil command, the header, the libraries and coil.pc", function()
    local p = stage .. prefix()
    assert.is_true(exists(p .. "/bin/coil"))
    assert.is_true(exists(p .. "/include/coil.h"))
    local r = sh('find "$1" -name "libcoil.*" -o -name coil.pc', { p }):wait(10)
    assert.matches("/libcoil%.so\n", r.stdout .. "\n")
    assert.matches("/libcoil%.a\n", r.stdout .. "\n")
    assert.matches("/pkgconfig/coil%.pc\n", r.stdout .. "\n")
    local v = sh('"$1" -v', { p .. "/bin/coil" }):wait(10)
    assert.equal(0, v.code, v.stderr)
    assert.matches("^coil %d", v.stdout)
  end)

  -- Builds and runs a C program embedding coil with `flags`; returns the
  -- result of running it.
  local function embed(dir, flags, libdir)
    assert(uv.fs_mkdir(dir, 493))
    local f = assert(io.open(dir .. "/main.c", "w"))
    f:write [[
#include <stdio.h>
#include <coil.h>

int main(void) {
  coil_runtime *rt;
  int status;
  if (coil_new(&rt, NULL) != 0) return 2;
  coil_spawn_string(rt, "local coil = require 'coil'; coil.sleep(0.01); "
                        "print('embedded coil ' .. coil.version)", "=main");
  status = coil_run(rt);
  coil_free(rt);
  return status;
}
]]
    f:close()
    return sh('cd "$1" && cc ' .. (SANITIZED and "-fsanitize=address,undefined " or "") ..
              '-o main main.c $2 && LD_LIBRARY_PATH="$3" ./main',
              { dir, flags, libdir }):wait(60)
  end

  it("gives pkg-config the flags to build and run an embedding program", function()
    local p = stage .. prefix()
    local pc = sh('find "$1" -name coil.pc', { p }):wait(10).stdout:match "[^\n]+"
    local pcdir = pc:match "^(.*)/coil%.pc$"
    -- a staged install: pkg-config maps coil's paths into the stage
    local flags = sh('PKG_CONFIG_SYSROOT_DIR="$1" PKG_CONFIG_PATH="$2" ' ..
                     'pkg-config --cflags --libs coil', { stage, pcdir }):wait(10)
    assert.equal(0, flags.code, flags.stderr)
    local quoted = p:gsub("%p", "%%%0")
    -- coil's own -I (pkg-config leaves a relocated path unnormalised)
    local include = flags.stdout:match "%-I(%S*coil%-install%S*/include)%s"
    assert.is_not_nil(include, flags.stdout)
    assert.equal(sh('realpath "$1"', { p .. "/include" }):wait(10).stdout,
                 sh('realpath "$1"', { include }):wait(10).stdout)
    assert.matches("%-L" .. quoted .. "/%S*lib%s", flags.stdout)
    assert.matches("%-lcoil%s", flags.stdout)
    -- (the sysroot moves the dependencies' paths too: add them as they are)
    local deps = sh("pkg-config --cflags --libs lua5.4 libuv lua5.4-luv"):wait(10)
    local r = embed(stage .. "/embed", flags.stdout:gsub("\n", "") .. " " ..
                    deps.stdout:gsub("\n", ""), pcdir:match "^(.*)/pkgconfig$")
    assert.equal(0, r.code, r.stderr)
    assert.equal("embedded coil 0.2.0\n", r.stdout)
  end)

  -- coil.pc finds its prefix from where it lies, whatever the configure-time
  -- prefix was.
  it("with --prefix, gives pkg-config that prefix's flags", function()
    local p = stage .. "/prefix"
    local r = sh('cmake --install "$1" --prefix "$2"', { BUILD, p }):wait(120)
    assert.equal(0, r.code, r.stderr)
    local pc = sh('find "$1" -name coil.pc', { p }):wait(10).stdout:match "[^\n]+"
    local pcdir = pc:match "^(.*)/coil%.pc$"
    local flags = sh('PKG_CONFIG_PATH="$1" pkg-config --cflags --libs coil',
                     { pcdir }):wait(10)
    assert.equal(0, flags.code, flags.stderr)
    local include = flags.stdout:match "%-I(%S*coil%-install%S*)"
    assert.is_not_nil(include, flags.stdout)
    local real = sh('realpath "$1"', { include }):wait(10).stdout
    assert.equal(p .. "/include\n", real)
    local run = embed(stage .. "/embed-prefix", flags.stdout:gsub("\n", ""),
                      pcdir:match "^(.*)/pkgconfig$")
    assert.equal(0, run.code, run.stderr)
    assert.equal("embedded coil 0.2.0\n", run.stdout)
  end)
end)
