/*
 * The Lua module: the C core functions, luv bound to the runtime's loop, and
 * the Lua half of coil (the files of lua/coil, compiled in) put together.
 */
#include <string.h>

#include <luv/luv.h>

#include "coil_internal.h"

static unsigned long luv_callbacks; /* raw callbacks run, for uv.run "once" */

/* luv calls every raw callback through this (luv_set_callback): an error is
 * reported with its traceback and starts the shutdown with status 1, instead
 * of luv's default print-and-exit(-1). */
static int luv_pcall_cb(lua_State *L, int nargs, int nresults, int flags) {
  coil_runtime *rt = coil__rt(L);
  int base = lua_gettop(L) - nargs, st;
  lua_State *prev = atomic_load(&rt->as.running_L);
  (void)flags;
  luv_callbacks++;
  if (prev == NULL) atomic_store(&rt->as.running_L, L);
  st = coil__pcall(L, nargs, nresults);
  if (prev == NULL) {
    atomic_store(&rt->as.running_L, NULL);
    if (atomic_load(&rt->as.hook_armed)) coil__clear_hook(rt, L);
  }
  if (rt->run.mem_exceeded == 1) coil__check_memory(rt);
  if (st != LUA_OK) {
    if (!coil__is_cancelled(L, -1)) {
      coil__report_error(L, "error in a luv callback", -1);
      if (!rt->module || rt->in_run) coil__request(rt, 1, 0, "error");
    }
    lua_pop(L, 1);
  }
  /* act on what the callback asked for (a luv callback runs outside any
   * task, never inside a shutdown step) */
  if (prev == NULL) coil__shutdown_step(rt);
  if (st != LUA_OK) return -st;
  return nresults == LUA_MULTRET ? lua_gettop(L) - base + 1 : nresults;
}

/* core.uv_errors() -> {NAME = message}: libuv's error messages, so that Lua
 * code can spell a bare error name the way luv spells a failure. */
static int l_uv_errors(lua_State *L) {
  char buf[64];
  int code;
  lua_newtable(L);
  for (code = -1; code >= -4096; code--) {
    const char *name = uv_err_name_r(code, buf, sizeof buf);
    if (strncmp(name, "Unknown", 7) == 0) continue;
    lua_pushstring(L, uv_strerror(code));
    lua_setfield(L, -2, name);
  }
  return 1;
}

/* core.grace() -> the seconds cleanup gets on shutdown (--grace) */
static int l_grace(lua_State *L) {
  lua_pushnumber(L, coil__rt(L)->grace);
  return 1;
}

/* core.loop_info() -> pending requests and closes on the loop, raw
 * callbacks run so far: what uv.run and uv.loop_alive look at besides the
 * script's handles. A handle being closed keeps a libuv loop alive until its
 * close callback ran (closing_handles: libuv's unix loop field). */
static int l_loop_info(lua_State *L) {
  coil_runtime *rt = coil__rt(L);
  lua_pushinteger(L, (lua_Integer)rt->loop->active_reqs.count +
                         (rt->loop->closing_handles != NULL));
  lua_pushinteger(L, (lua_Integer)luv_callbacks);
  return 2;
}

/* package.preload loader of an embedded file: upvalue 1 = index */
static int load_embedded(lua_State *L) {
  const coil_embedded *f =
      &coil__lua_files[lua_tointeger(L, lua_upvalueindex(1))];
  if (luaL_loadbuffer(L, (const char *)f->data, f->size, f->chunkname) !=
      LUA_OK)
    return lua_error(L);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

static void register_embedded(lua_State *L) {
  int i;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (i = 0; coil__lua_files[i].name; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, coil__lua_files[i].name);
  }
  lua_pop(L, 1);
}

/* Builds the coil module in L (with luv on rt->loop) and leaves
 * package.loaded.coil set; pushes nothing. */
int coil__open(lua_State *L, coil_runtime *rt) {
  if (rt->module) {
    /* luv is already loaded and owns the loop: take over its callbacks */
    luv_set_callback(L, luv_pcall_cb);
  } else {
    /* luv on our loop, the Neovim way: before luaopen_luv */
    luv_set_loop(L, rt->loop);
    luv_set_callback(L, luv_pcall_cb);
    luaL_requiref(L, "luv", luaopen_luv, 0);
    lua_pop(L, 1);
    /* a plugin on a host's loop never runs it itself: uv.run refuses */
    if (!rt->owns_loop) luv_context(L)->mode = UV_RUN_DEFAULT;
  }

  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "coil.hooks");

  /* the C core goes into package.loaded.coil at once, so the Lua files can
   * require "coil" while init completes it (one name for each function in
   * tracebacks) */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_newtable(L);
  coil__task_object_open(L, rt);
  coil__error_open(L, rt);
  coil__scheduler_open(L, rt);
  coil__timer_open(L, rt);
  coil__cancel_open(L, rt);
  coil__waitset_open(L, rt);
  coil__spawn_open(L, rt);
  coil__signal_open(L, rt);
  coil__shutdown_open(L, rt);
  coil__net_open(L);
  coil__fs_open(L);
  coil__thread_open(L);
  coil__coroutine_open(L, rt);
  coil__service_open(L, rt);
  lua_pushboolean(L, rt->owns_state);
  lua_setfield(L, -2, "host");
  lua_pushboolean(L, !rt->owns_loop && !rt->module);
  lua_setfield(L, -2, "host_loop");
  lua_getfield(L, LUA_REGISTRYINDEX, "coil.hooks");
  lua_setfield(L, -2, "hooks");
  lua_pushcfunction(L, l_uv_errors);
  lua_setfield(L, -2, "uv_errors");
  lua_pushcfunction(L, l_grace);
  lua_setfield(L, -2, "grace");
  lua_pushcfunction(L, l_loop_info);
  lua_setfield(L, -2, "loop_info");
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "coil.core"); /* the private table */
  lua_setfield(L, -2, "coil");      /* until coil.init puts the public one */
  lua_pop(L, 1);

  register_embedded(L);

  /* the Lua half completes the module */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "coil.init");
  lua_call(L, 1, 0);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushnil(L);
  lua_setfield(L, -2, "coil.init");
  lua_pop(L, 1);
  return 0;
}
