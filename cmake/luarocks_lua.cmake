# The Lua that LuaRocks builds for (its LUA_INCDIR, LUA_LIBDIR, LUA_LIBFILE
# and LUA variables), as the target COIL_LUA_TARGET. Checked to be Lua 5.4,
# so that `luarocks make` for another Lua fails at configure time instead of
# building a module that cannot load.
set(LUA_INCLUDE_DIRS "${LUA_INCDIR}")
if(NOT EXISTS "${LUA_INCDIR}/lua.h")
  message(FATAL_ERROR "coil: LUA_INCDIR=${LUA_INCDIR} has no lua.h")
endif()
file(STRINGS "${LUA_INCDIR}/lua.h" _coil_lua_num REGEX "define LUA_VERSION_NUM")
if(NOT _coil_lua_num MATCHES "LUA_VERSION_NUM[ \t]+504")
  message(FATAL_ERROR "coil: ${LUA_INCDIR}/lua.h is not Lua 5.4 (${_coil_lua_num})")
endif()
if(LUA)
  execute_process(COMMAND "${LUA}" -e "io.write(_VERSION)"
                  OUTPUT_VARIABLE _coil_lua_version RESULT_VARIABLE _coil_lua_rc)
  if(NOT _coil_lua_rc EQUAL 0 OR NOT _coil_lua_version STREQUAL "Lua 5.4")
    message(FATAL_ERROR "coil: LUA=${LUA} is not Lua 5.4 ('${_coil_lua_version}')")
  endif()
endif()
if(LUA_LIBFILE)
  set(_coil_lua_lib "${LUA_LIBDIR}/${LUA_LIBFILE}")
  # luv's shared library links the shared Lua: a static copy beside it would
  # be a second Lua in one process, so the shared one of the same name wins.
  string(REGEX REPLACE "\\.a$" ".so" _coil_lua_so "${_coil_lua_lib}")
  if(EXISTS "${_coil_lua_so}")
    set(_coil_lua_lib "${_coil_lua_so}")
  endif()
else()
  find_library(_coil_lua_lib NAMES lua5.4 lua54 lua HINTS "${LUA_LIBDIR}" REQUIRED)
endif()
add_library(coil_lua INTERFACE IMPORTED)
target_include_directories(coil_lua INTERFACE "${LUA_INCDIR}")
target_link_libraries(coil_lua INTERFACE "${_coil_lua_lib}")
set(COIL_LUA_TARGET coil_lua)
message(STATUS "coil: Lua from LuaRocks' variables: ${LUA_INCDIR}, ${_coil_lua_lib}")
# LUADIR is where LuaRocks puts pure Lua modules: coil has none to install
# (its Lua half is compiled in); read here so CMake does not call it unused.
if(LUADIR)
  message(STATUS "coil: nothing to install in LUADIR (${LUADIR})")
endif()
