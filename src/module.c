/*
 * coil as a Lua C module (`require "coil"` from stock lua5.4 or busted):
 * luaopen_coil binds a runtime to luv's loop, and coil.run(fn, ...) drives
 * that loop until every task is done, with the §3 shutdown on SIGINT/SIGTERM
 * ending in coil.Interrupted instead of the process's death.
 */
#include <stdlib.h>
#include <string.h>

#include <luv/luv.h>

#include "coil_internal.h"

/* ---- coil.run ------------------------------------------------------------ */

/* Starts a new run: coil's handles reopened if the last run's shutdown
 * closed them, every trace of the last run cleared (C and Lua side). */
static void begin_run(coil_runtime *rt) {
  if (rt->run.phase == PHASE_CLOSED) coil__open_handles(rt);
  coil__run_reset(rt);
}

/* Pushes the error of a failed main task (the task is on top): a string
 * error comes with the task's traceback appended, anything else as it is. */
static void push_main_error(lua_State *L) {
  int task = lua_gettop(L);
  lua_getiuservalue(L, task, 1);
  if (lua_type(L, -1) == LUA_TSTRING &&
      lua_getiuservalue(L, task, 2) == LUA_TTABLE &&
      lua_getfield(L, -1, "tb") == LUA_TSTRING) {
    lua_replace(L, task + 1); /* the traceback begins with the message */
  }
  lua_settop(L, task + 1);
}

/* coil.run's options: a table without __call before the function. Removes
 * it; returns whether virtual time was asked for. */
static int run_options(lua_State *L) {
  int virtual_time;
  if (lua_type(L, 1) != LUA_TTABLE) return 0;
  if (luaL_getmetafield(L, 1, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING ||
        strcmp(lua_tostring(L, -1), "virtual_time") != 0) {
      lua_pushfstring(L, "coil: coil.run: unknown option '%s'",
                      luaL_tolstring(L, -1, NULL));
      return lua_error(L);
    }
  }
  lua_getfield(L, 1, "virtual_time");
  virtual_time = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_remove(L, 1);
  return virtual_time;
}

/* Turns virtual time on or off (lua/coil/clock.lua). */
static void run_virtual(lua_State *L, int on) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "coil.clock");
  lua_getfield(L, -1, on ? "start" : "stop");
  lua_call(L, 0, 0);
  lua_pop(L, 2);
}

static int l_run(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  int virtual_time = run_options(L);
  int nargs = lua_gettop(L) - 1, task_idx, installed;
  coil_task *t;
  coil__check_function(L, 1, "run");
  if (rt->current || rt->owns_state) {
    lua_pushliteral(L, "coil.run cannot be called from inside a task; use "
                       "coil.spawn or await");
    return lua_error(L);
  }
  if (rt->in_run) {
    lua_pushliteral(L, "coil: coil.run is already running");
    return lua_error(L);
  }
  begin_run(rt);
  rt->in_run = 1;
  rt->signals = 1;
  installed = coil__signals_install(rt) == 0;
  if (virtual_time) run_virtual(L, 1);

  t = coil__spawn(L, rt, nargs); /* pushes the task */
  t->flags |= TF_MAIN;
  rt->run.main_task = t;
  task_idx = lua_gettop(L);

  coil__drive(rt, 0);

  if (virtual_time) run_virtual(L, 0);
  if (installed) {
    /* an interrupt during the teardown ends this run by it too */
    int late = coil__signals_unhandled(rt);
    if (late && !rt->run.exit_signal) rt->run.exit_signal = late;
    coil__signals_uninstall(rt);
  }
  rt->signals = 0;
  rt->in_run = 0;
  rt->run.main_task = NULL;
  coil__report_unseen_all(rt);

  if (rt->run.exit_signal) {
    coil__new_interrupted(L, coil__signal_name(rt->run.exit_signal));
    return lua_error(L);
  }
  if (rt->run.deadlocked) {
    lua_pushliteral(L, "coil: deadlock: tasks were waiting with nothing to "
                       "wake them (see the report above)");
    return lua_error(L);
  }
  if (t->outcome == OUTCOME_FAILED) {
    push_main_error(L);
    return lua_error(L);
  }
  /* results, or the Cancelled that ended it (coil.shutdown, say) */
  lua_getfield(L, task_idx, "result");
  lua_pushvalue(L, task_idx);
  lua_call(L, 1, LUA_MULTRET);
  return lua_gettop(L) - task_idx;
}

/* ---- the module ------------------------------------------------------------- */

static void on_module_handle_closed(uv_handle_t *h) {
  coil_runtime *rt = (coil_runtime *)h->data;
  if (--rt->run.closing_count == 0) {
    coil__heap_free(rt);
    free(rt);
  }
}

/* The Lua state is closing (finalizers run newest first, so this comes
 * before luv's own loop finalizer): close coil's handles. luv's finalizer
 * runs the loop until they are closed; the last close frees the runtime. */
static int module_gc(lua_State *L) {
  coil_runtime **box = (coil_runtime **)lua_touserdata(L, 1);
  coil_runtime *rt = *box;
  if (!rt) return 0;
  *box = NULL;
  rt->L = NULL;
  rt->lua_closed = 1;
  rt->run.closing_count =
      coil__close_module_handles(rt, on_module_handle_closed);
  if (rt->run.closing_count == 0) {
    coil__heap_free(rt);
    free(rt);
  }
  return 0;
}

COIL_EXTERN int luaopen_coil(lua_State *L);
COIL_EXTERN int luaopen_coil_busted(lua_State *L);

/* require "coil" from a Lua state coil did not create. */
int luaopen_coil(lua_State *L) {
  coil_runtime *rt, **box;
  lua_State *main;

  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "coil") == LUA_TTABLE) return 1; /* in the host */
  lua_pop(L, 2);

  /* coil shares luv's loop */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luv");
  lua_call(L, 1, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  main = lua_tothread(L, -1);
  lua_pop(L, 1);

  rt = (coil_runtime *)calloc(1, sizeof *rt);
  if (!rt) return luaL_error(L, "coil: out of memory");
  rt->L = main;
  rt->loop = luv_loop(L);
  rt->module = 1;
  rt->grace = 5.0;
  box = (coil_runtime **)lua_newuserdatauv(L, sizeof *box, 0);
  *box = rt;
  lua_newtable(L);
  lua_pushcfunction(L, module_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "coil.module");
  coil__register_runtime(L, rt);
  coil__open_handles(rt);
  coil__open(L, rt);

  /* what only the module has */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "coil");
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, l_run, 1);
  lua_setfield(L, -2, "run");
  return 1;
}

/* require "coil.busted" first thing from stock Lua: Lua's C searcher finds
 * this in coil.so; coil itself must be loaded for the Lua half to exist. */
int luaopen_coil_busted(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "coil");
  lua_call(L, 1, 0);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_getfield(L, -1, "coil.busted");
  lua_pushliteral(L, "coil.busted");
  lua_call(L, 1, 1);
  return 1;
}
