-- luarocks --lua-version=5.4 make rockspecs/coil-scm-1.rockspec
-- builds coil with CMake and installs the Lua module `coil` (require "coil",
-- with coil.busted and the rest of lua/coil/ compiled in) and the `coil`
-- command into the rocks tree. The C library, header and coil.pc stay in
-- the rock's own directory; C embedders use `cmake --install` instead.
rockspec_format = "3.0"
package = "coil"
version = "scm-1"

-- The source is the working tree: `luarocks make` builds the checkout it is
-- run from and never fetches this URL. A release published somewhere gets
-- its own rockspec with that archive's address; none is named here.
source = {
  url = "git+file:///dev/null",
}

description = {
  summary = "An embeddable host for asynchronous Lua 5.4 on libuv and luv",
  detailed = [[
coil runs Lua 5.4 coroutines as tasks on libuv's loop, shared with luv:
sleep, spawn, gather, race, timeouts and cancellation, cleanup that may
await, and a clean shutdown on Ctrl+C. `coil.run(fn)` runs a task from stock
Lua; `require "coil.busted"` gives busted asynchronous tests that fail on
leaked tasks, open handles and errors nobody saw.]],
  license = "MIT", -- see LICENSE
  labels = { "async", "libuv", "luv", "coroutines", "busted" },
}

dependencies = {
  "lua >= 5.4, < 5.5",
}

-- libuv and luv's C API come from the system (Debian: libuv1-dev,
-- lua-luv-dev), found by CMake through pkg-config, not from rocks: coil
-- must share the very luv that `require "luv"` loads. (luv's header lives
-- under the Lua include directory, where luarocks does not look.)
external_dependencies = {
  LIBUV = { header = "uv.h" },
}

build = {
  type = "cmake",
  -- LuaRocks' own idea of the Lua to build for, passed on as luv's rockspec
  -- does; CMakeLists.txt uses them instead of pkg-config and checks that
  -- they are Lua 5.4
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA_LIBDIR = "$(LUA_LIBDIR)",
    LUA_LIBFILE = "$(LUALIB)",
    LUA = "$(LUA)",
    -- the module straight into the rock's lib/, which luarocks deploys
    LIBDIR = "$(LIBDIR)",
    LUADIR = "$(LUADIR)",
    -- the C library and coil.pc apart from it, so they are not deployed as
    -- Lua modules
    CMAKE_INSTALL_LIBDIR = "clib",
  },
  copy_directories = { "docs", "man", "types" },
}
