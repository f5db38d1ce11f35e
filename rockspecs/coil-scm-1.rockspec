-- luarocks --lua-version=5.4 make rockspecs/coil-scm-1.rockspec
-- builds coil with CMake and installs the Lua module `coil` (require "coil",
-- with coil.busted and the rest of lua/coil/ compiled in) and the `coil`
-- command into the rocks tree. The C library, header and coil.pc stay in
-- the rock's own directory; C embedders use `cmake --install` instead.
rockspec_format = "3.0"
package = "coil"
version = "scm-1"

-- `luarocks make` builds the working tree and never fetches this; the real
-- repository's address goes here once the project publishes one.
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
  -- no license has been chosen yet (there is no LICENSE file): until one
  -- is, all rights are reserved
  license = "UNLICENSED",
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
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    -- the module straight into the rock's lib/, which luarocks deploys
    COIL_LUA_CMOD_DIR = "$(LIBDIR)",
    -- the C library and coil.pc apart from it, so they are not deployed as
    -- Lua modules
    CMAKE_INSTALL_LIBDIR = "clib",
  },
}
