/*
 * The task object: a full userdata (struct coil_task) whose first user value
 * is its coroutine while it runs and its results once it is done; its second
 * user value is a lazily created table of rarely used extras (name, defers,
 * on_done callbacks, a pending Cancelled, a traceback). While a task is
 * alive it is anchored in the live-task table, so C may keep plain pointers
 * to it. This file only reads and describes tasks; spawn.c gives them life.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "coil_internal.h"

#define TASK_MT "coil.task"

/* registry[&coil__task_mt_key]: the task metatable, found without a string */
const char coil__task_mt_key = 't';

static const char *const state_names[] = {"ready", "running", "suspended",
                                          "done"};
const char *const coil__wait_names[] = {"", "sleep", "await", "shield", "wait"};

/* Pushes the task's userdata. */
void coil__push_task(lua_State *L, coil_task *t) {
  /* it has a free slot: see pool_can_keep (spawn.c) */
  lua_State *keep = t->rt->keep;
  lua_rawgeti(keep, 1, t->anchor);
  lua_xmove(keep, L, 1);
}

/* The task at idx, or NULL if the value there is not a task. */
coil_task *coil__test_task(lua_State *L, int idx) {
  void *p = lua_touserdata(L, idx), *ud;
  if (p && lua_getmetatable(L, idx)) {
    int same;
    if (lua_getallocf(L, &ud) == coil__alloc) {
      /* coil made the state, with its runtime as the allocator's data: one
       * pointer comparison instead of a registry lookup */
      same = lua_topointer(L, -1) == ((coil_runtime *)ud)->task_mt;
      lua_pop(L, 1);
      return same ? (coil_task *)p : NULL;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &coil__task_mt_key);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (same) return (coil_task *)p;
  }
  return NULL;
}

/* The task at idx, or raises a `coil: ` line naming what was there instead
 * (Lua's own message would say "bad argument #1 to '?'" for a method). */
coil_task *coil__check_task(lua_State *L, int idx) {
  coil_task *t = coil__test_task(L, idx);
  lua_Debug ar;
  const char *got, *name = NULL;
  if (t) return t;
  got = luaL_getmetafield(L, idx, "__name") == LUA_TSTRING
            ? lua_tostring(L, -1) /* pushed: the error unwinds it */
            : luaL_typename(L, idx);
  if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar)) name = ar.name;
  if (name)
    luaL_error(L,
               "coil: bad argument #%d to '%s' (a coil.task expected, got %s)",
               idx, name, got);
  luaL_error(L, "coil: bad argument #%d (a coil.task expected, got %s)", idx,
             got);
  return NULL;
}

/* Pushes the extras table of the task at idx, creating it if asked;
 * returns 0 (and pushes nothing) when it does not exist and create is 0.
 * (A task whose only extra is one coil.defer(fn) keeps fn itself as its user
 * value instead: the common case costs no table. It moves into the table
 * once one is needed.) */
int coil__push_extras(lua_State *L, int idx, int create) {
  int type;
  idx = lua_absindex(L, idx);
  type = lua_getiuservalue(L, idx, 2);
  if (type == LUA_TTABLE) return 1;
  if (!create) {
    lua_pop(L, 1);
    return 0;
  }
  lua_createtable(L, 0, 4);
  if (type == LUA_TFUNCTION) {
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, -3);
    lua_rawseti(L, -2, 1);
    lua_setfield(L, -2, "defers");
  }
  lua_remove(L, -2);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, 2);
  ((coil_task *)lua_touserdata(L, idx))->flags |= TF_EXTRAS;
  return 1;
}

/* Same, for a task given by pointer (alive or not). */
int coil__push_extras_of(lua_State *L, coil_task *t, int create) {
  int ok;
  coil__push_task(L, t);
  ok = coil__push_extras(L, -1, create);
  if (ok) lua_remove(L, -2);
  else lua_pop(L, 1);
  return ok;
}

/* Pushes the name of the task whose userdata is at idx (default task-<id>,
 * "main" for the main task). */
void coil__push_name_at(lua_State *L, int idx) {
  coil_task *t = (coil_task *)lua_touserdata(L, idx);
  if (coil__push_extras(L, idx, 0)) {
    if (lua_getfield(L, -1, "name") == LUA_TSTRING) {
      lua_remove(L, -2);
      return;
    }
    lua_pop(L, 2);
  }
  if (t->flags & TF_MAIN) lua_pushliteral(L, "main");
  else lua_pushfstring(L, "task-%I", (lua_Integer)t->id);
}

/* Same for a live task given by pointer. */
void coil__push_name(lua_State *L, coil_task *t) {
  if (t->anchor == LUA_NOREF) {
    lua_pushfstring(L, "task-%I", (lua_Integer)t->id);
    return;
  }
  coil__push_task(L, t);
  coil__push_name_at(L, -1);
  lua_remove(L, -2);
}

/* The live tasks, oldest first, in a malloc'd array (NULL if none or out
 * of memory); *count says how many. */
static int cmp_id(const void *a, const void *b) {
  const coil_task *x = *(coil_task *const *)a, *y = *(coil_task *const *)b;
  return x->id < y->id ? -1 : x->id > y->id;
}

coil_task **coil__live_tasks(coil_runtime *rt, size_t *count) {
  lua_State *L = rt->L;
  coil_task **all = (coil_task **)malloc((rt->live + 1) * sizeof *all);
  size_t n = 0;
  *count = 0;
  if (!all) return NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchors_ref);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -1) == LUA_TUSERDATA && n < rt->live)
      all[n++] = (coil_task *)lua_touserdata(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  qsort(all, n, sizeof *all, cmp_id);
  *count = n;
  return all;
}

/* ---- methods that describe a task ----------------------------------------- */

static int task_done(lua_State *L) {
  lua_pushboolean(L, coil__check_task(L, 1)->state == TASK_DONE);
  return 1;
}

static int task_cancelled(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  lua_pushboolean(L, t->state == TASK_DONE && t->outcome == OUTCOME_CANCELLED);
  return 1;
}

static int task_name(lua_State *L) {
  coil__check_task(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    if (!lua_isstring(L, 2)) coil__arg_error(L, 2, "task:name", "a string");
    lua_tolstring(L, 2, NULL); /* a number becomes its string, in place */
    coil__push_extras(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "name");
    lua_settop(L, 1);
    return 1;
  }
  coil__push_name_at(L, 1);
  return 1;
}

/* core.remove_on_done(task, fn): for helpers that stop watching a task. */
static int task_remove_on_done(lua_State *L) {
  lua_Integer i, n;
  coil__check_task(L, 1);
  if (!coil__push_extras(L, 1, 0)) return 0;
  if (lua_getfield(L, -1, "on_done") != LUA_TTABLE) return 0;
  n = luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (lua_rawequal(L, -1, 2)) {
      lua_pop(L, 1);
      for (; i < n; i++) {
        lua_rawgeti(L, -1, i + 1);
        lua_rawseti(L, -2, i);
      }
      lua_pushnil(L);
      lua_rawseti(L, -2, n);
      return 0;
    }
    lua_pop(L, 1);
  }
  return 0;
}

static int task_tostring(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  coil__push_name_at(L, 1);
  lua_pushfstring(L, "coil.task '%s' (%s)", lua_tostring(L, -1),
                  state_names[t->state]);
  return 1;
}

/* coil.current() -> the running task or nil */
static int l_current(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  if (rt->current) coil__push_task(L, rt->current);
  else lua_pushnil(L);
  return 1;
}

/* core.state(task) -> "ready"|"running"|"suspended"|"done", wait kind, id,
 * start time */
static int l_state(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  lua_pushstring(L, state_names[t->state]);
  lua_pushstring(L, coil__wait_names[t->wait]);
  lua_pushinteger(L, (lua_Integer)t->id);
  lua_pushnumber(L, (double)t->started / 1000.0);
  return 4;
}

/* core.traceback(task) -> string: where the task waits. */
static int l_task_traceback(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  if (t->co) luaL_traceback(L, t->co, NULL, 0);
  else lua_pushliteral(L, "");
  return 1;
}

/* coil.tasks() -> list of live tasks, oldest first */
static int l_tasks(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  size_t n, i;
  coil_task **all = coil__live_tasks(rt, &n);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    coil__push_task(L, all[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free(all);
  return 1;
}

static const luaL_Reg task_methods[] = {{"done", task_done},
                                        {"cancelled", task_cancelled},
                                        {"name", task_name},
                                        {NULL, NULL}};

/* core.task_list(list, n) -> a copy of list[1..n] when they are all tasks,
 * else false: one C loop, and a table sized at once, for the combinators'
 * usual case. False when the list has a metatable (its entries are then
 * read one by one in Lua). */
static int l_task_list(lua_State *L) {
  lua_Integer i, n = luaL_checkinteger(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  if (n < 0 || n > INT_MAX || lua_getmetatable(L, 1)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_settop(L, 2);
  lua_createtable(L, (int)n, 0);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    if (!coil__test_task(L, 4)) {
      lua_pushboolean(L, 0);
      return 1;
    }
    lua_rawseti(L, 3, i);
  }
  return 1;
}

static const luaL_Reg task_funcs[] = {{"current", l_current},
                                      {"task_list", l_task_list},
                                      {"remove_on_done", task_remove_on_done},
                                      {"tasks", l_tasks},
                                      {"state", l_state},
                                      {"traceback", l_task_traceback},
                                      {NULL, NULL}};

/* Creates the task metatable (the object's own methods) and the live-task
 * table; adds the functions to the coil table on top of L's stack. Layers
 * above add their methods with coil__task_methods. */
void coil__task_object_open(lua_State *L, coil_runtime *rt) {
  luaL_newmetatable(L, TASK_MT);
  lua_pushliteral(L, TASK_MT);
  lua_setfield(L, -2, "__name");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &coil__task_mt_key);
  lua_newtable(L);
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, task_methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, task_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  rt->keep = lua_newthread(L);
  luaL_ref(L, LUA_REGISTRYINDEX); /* kept for the state's life */
  lua_newtable(L);
  lua_pushvalue(L, -1);
  rt->anchors_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_xmove(L, rt->keep, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &coil__task_mt_key);
  rt->task_mt = lua_topointer(L, -1);
  lua_xmove(L, rt->keep, 1);

  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, task_funcs, 1);
}

/* Adds methods (upvalue: rt) to the task metatable's __index. */
void coil__task_methods(lua_State *L, coil_runtime *rt,
                        const luaL_Reg *methods) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &coil__task_mt_key);
  lua_getfield(L, -1, "__index");
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, methods, 1);
  lua_pop(L, 2);
}
