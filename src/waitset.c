/*
 * Waitsets: a waitset watches the tasks of one gather/wait/race call for one
 * waiting task, with a pointer in each task and counters here: nothing
 * allocated per task, no callback per completion. A task is in at most one
 * waitset; the Lua side watches a task already in another one with on_done
 * and core.waitset_notify. spawn.c tells a task's waitset when it is done.
 *
 * The list given to core.waitset is the combinator's own copy (coil.gather
 * and friends copy the caller's at the call: a supervisor may refill its
 * list while the call waits), kept as user value 3: closing the waitset
 * unlinks the tasks of that list still pointing at it. Should the list
 * have changed all the same (core is private, but not sealed), the live
 * tasks are searched for the rest, so no task keeps a pointer to a freed
 * waitset. User value 1 anchors the waiting task (`owner`) and user value
 * 2 maps the indices of shared tasks to the tasks.
 */
#include <string.h>

#include "coil_internal.h"

#define WAITSET_MT "coil.waitset"

enum { WS_ALL, WS_FIRST, WS_ERROR, WS_BAD };
static const char *const ws_modes[] = {"all", "first", "error", "bad", NULL};

struct coil_waitset {
  coil_task *owner;
  uint32_t n, ndone;
  uint32_t first_done, first_error, first_bad; /* 1-based; 0 = none yet */
  uint32_t nlinked;                            /* tasks pointing here */
  int waiting; /* mode the owner waits for, or -1 */
  int closed;
};

static int waitset_met(const coil_waitset *ws, int mode) {
  if (ws->ndone == ws->n) return 1;
  switch (mode) {
  case WS_FIRST:
    return ws->ndone > 0;
  case WS_ERROR:
    return ws->first_error != 0;
  case WS_BAD:
    return ws->first_bad != 0;
  default:
    return 0;
  }
}

static void waitset_task_done(coil_runtime *rt, coil_waitset *ws,
                              uint32_t index, int outcome) {
  ws->ndone++;
  if (!ws->first_done) ws->first_done = index;
  if (outcome == OUTCOME_FAILED && !ws->first_error) ws->first_error = index;
  if (outcome != OUTCOME_OK && !ws->first_bad) ws->first_bad = index;
  if (ws->waiting >= 0 && waitset_met(ws, ws->waiting)) {
    coil_task *owner = ws->owner;
    ws->waiting = -1;
    if (owner->state == TASK_SUSPENDED && owner->wait == WAIT_PARKED) {
      owner->nargs = 0;
      coil__make_ready(rt, owner);
    }
  }
}

/* A linked task ended (spawn.c tells): it no longer points at ws. */
void coil__waitset_linked_done(coil_runtime *rt, coil_task *t) {
  coil_waitset *ws = t->ws;
  ws->nlinked--;
  t->ws = NULL;
  waitset_task_done(rt, ws, t->ws_index, t->outcome);
}

static void unlink_if_here(coil_waitset *ws, coil_task *t) {
  if (t && t->ws == ws) {
    t->ws = NULL;
    ws->nlinked--;
  }
}

/* Unlinks the tasks still pointing at the waitset at idx (every one of them
 * is alive, so anchored: the pointers are good). */
static void waitset_unlink(lua_State *L, int idx) {
  coil_waitset *ws = (coil_waitset *)lua_touserdata(L, idx);
  uint32_t i;
  ws->waiting = -1;
  ws->closed = 1;
  if (ws->nlinked == 0) return;
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, 3);
  for (i = 1; i <= ws->n && ws->nlinked > 0 && lua_istable(L, -1); i++) {
    lua_rawgeti(L, -1, i);
    unlink_if_here(ws, coil__test_task(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (ws->nlinked > 0) { /* the list was changed: search the live tasks */
    coil_runtime *rt = ws->owner->rt;
    for (i = 1; i <= (uint32_t)rt->anchored && ws->nlinked > 0; i++) {
      lua_rawgeti(rt->keep, 1, i);
      unlink_if_here(ws, (coil_task *)lua_touserdata(rt->keep, -1));
      lua_pop(rt->keep, 1);
    }
  }
}

/* core.waitset(list, n) -> ws, shared: watches list[1..n] for the running
 * task; `shared` lists the indices of tasks already watched elsewhere (the
 * caller watches those with on_done + core.waitset_notify), or is nil. */
static int l_waitset(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  lua_Integer len, want;
  uint32_t n, i, nshared = 0;
  coil_waitset *ws;
  luaL_checktype(L, 1, LUA_TTABLE);
  want = luaL_checkinteger(L, 2);
  coil__inside_task(L, "wait");
  len = (lua_Integer)lua_rawlen(L, 1);
  if (want < 0 || want > len || want > (lua_Integer)INT32_MAX)
    return luaL_error(L,
                      "coil: _waitset: count %I out of range (the list "
                      "has %I)",
                      want, len);
  n = (uint32_t)want;
  /* every entry is checked before any task is linked */
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    if (!coil__test_task(L, -1))
      return luaL_error(L, "coil: _waitset: entry %d is a %s, not a task",
                        (int)i, luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  lua_settop(L, 2);
  ws = (coil_waitset *)lua_newuserdatauv(L, sizeof *ws, 3); /* 3 */
  memset(ws, 0, sizeof *ws);
  ws->owner = rt->current;
  ws->n = n;
  ws->waiting = -1;
  luaL_setmetatable(L, WAITSET_MT);
  coil__push_task(L, rt->current);
  lua_setiuservalue(L, 3, 1);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, 3, 3);
  lua_pushnil(L); /* 4: shared */
  for (i = 1; i <= n; i++) {
    coil_task *t;
    lua_rawgeti(L, 1, i);
    t = (coil_task *)lua_touserdata(L, -1);
    if (t->state == TASK_DONE) {
      coil__mark_seen(L, -1);
      waitset_task_done(rt, ws, i, t->outcome);
    } else if (!t->ws) {
      t->ws = ws;
      t->ws_index = i;
      ws->nlinked++;
    } else {
      /* watched by another waitset already: the caller uses on_done */
      if (lua_isnil(L, 4)) {
        lua_newtable(L);
        lua_setiuservalue(L, 3, 2); /* the shared tasks, by index */
        lua_newtable(L);
        lua_replace(L, 4); /* their indices, for the caller */
      }
      lua_getiuservalue(L, 3, 2);
      lua_insert(L, -2);
      lua_rawseti(L, -2, i);
      lua_pop(L, 1);
      lua_pushinteger(L, i);
      lua_rawseti(L, 4, ++nshared);
      continue;
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 4);
  return 2;
}

/* core.waitset_notify(ws, i): shared task i, watched by on_done, is done.
 * Counts once per task. */
static int l_waitset_notify(lua_State *L) {
  coil_waitset *ws = (coil_waitset *)luaL_checkudata(L, 1, WAITSET_MT);
  lua_Integer i = luaL_checkinteger(L, 2);
  coil_task *t;
  if (lua_getiuservalue(L, 1, 2) != LUA_TTABLE ||
      lua_rawgeti(L, -1, i) == LUA_TNIL)
    return luaL_error(L,
                      "coil: _waitset_notify: %I is not a shared task "
                      "of this waitset, or was notified already",
                      i);
  t = (coil_task *)lua_touserdata(L, -1);
  if (t->state != TASK_DONE)
    return luaL_error(L, "coil: _waitset_notify: task %I is not done", i);
  lua_pushnil(L);
  lua_rawseti(L, -3, i);
  waitset_task_done(RT_UP(L), ws, (uint32_t)i, t->outcome);
  return 0;
}

static int waitset_wait_k(lua_State *L, int status, lua_KContext ctx) {
  coil_waitset *ws = (coil_waitset *)lua_touserdata(L, 1);
  (void)status;
  (void)ctx;
  ws->waiting = -1;
  coil__check_throw(L, RT_UP(L)->current);
  return 0;
}

/* core.waitset_wait(ws, mode) ⏳: until every task is done, or for mode
 * "first" one is, "error" one failed, "bad" one failed or was cancelled. */
static int l_waitset_wait(lua_State *L) {
  coil_waitset *ws = (coil_waitset *)luaL_checkudata(L, 1, WAITSET_MT);
  int mode = luaL_checkoption(L, 2, "all", ws_modes);
  coil_task *t = coil__await_check(L, "wait");
  if (waitset_met(ws, mode)) return 0;
  if (ws->closed) return luaL_error(L, "coil: wait on a closed waitset");
  if (ws->waiting >= 0 && ws->owner != t && ws->owner->state == TASK_SUSPENDED)
    return luaL_error(L, "coil: another task waits on this waitset");
  lua_settop(L, 1);
  coil__push_task(L, t); /* the waiting task stays anchored by ws */
  lua_setiuservalue(L, 1, 1);
  ws->owner = t;
  ws->waiting = mode;
  return coil__suspend(L, t, WAIT_PARKED, waitset_wait_k, 0);
}

/* core.waitset_state(ws) -> ndone, first_done, first_error, first_bad
 * (indices, nil for none) */
static int l_waitset_state(lua_State *L) {
  coil_waitset *ws = (coil_waitset *)luaL_checkudata(L, 1, WAITSET_MT);
  lua_pushinteger(L, ws->ndone);
  if (ws->first_done) lua_pushinteger(L, ws->first_done);
  else lua_pushnil(L);
  if (ws->first_error) lua_pushinteger(L, ws->first_error);
  else lua_pushnil(L);
  if (ws->first_bad) lua_pushinteger(L, ws->first_bad);
  else lua_pushnil(L);
  return 4;
}

/* core.waitset_close(ws): stop watching (also done by __gc). */
static int l_waitset_close(lua_State *L) {
  luaL_checkudata(L, 1, WAITSET_MT);
  waitset_unlink(L, 1);
  return 0;
}

static int waitset_gc(lua_State *L) {
  waitset_unlink(L, 1);
  return 0;
}

/* core.gather_results(list, n, return_errors) -> a new list of the first
 * result of each of list's n tasks (each one's error, with return_errors),
 * raising the first error without it. Returns nothing when an entry is not
 * a done task or the list has a metatable: the caller then takes the
 * results one by one, as task:result() says (the user may have changed
 * the list while gather waited). One C loop instead of a protected call
 * of task:result() per task. */
static int l_gather_results(lua_State *L) {
  lua_Integer i, n = luaL_checkinteger(L, 2);
  int return_errors = lua_toboolean(L, 3);
  luaL_checktype(L, 1, LUA_TTABLE);
  if (n < 0 || n > INT32_MAX)
    return luaL_error(L, "coil: _gather_results: count %I out of range", n);
  if (lua_getmetatable(L, 1)) return 0;
  lua_settop(L, 3);
  lua_createtable(L, (int)n, 0); /* 4 */
  for (i = 1; i <= n; i++) {
    coil_task *t;
    lua_rawgeti(L, 1, i); /* 5 */
    t = coil__test_task(L, 5);
    if (t == NULL || t->state != TASK_DONE) return 0;
    coil__mark_seen(L, 5);
    lua_getiuservalue(L, 5, 1); /* 6: its results, or its error */
    if (t->outcome != OUTCOME_OK) {
      if (!return_errors) return lua_error(L);
    } else if (t->nresults == 0) {
      lua_pushnil(L);
      lua_replace(L, 6);
    } else if (t->nresults > 1) {
      lua_rawgeti(L, 6, 1);
      lua_replace(L, 6);
    }
    lua_rawseti(L, 4, i);
    lua_pop(L, 1);
  }
  return 1;
}

static const luaL_Reg waitset_funcs[] = {{"waitset", l_waitset},
                                         {"gather_results", l_gather_results},
                                         {"waitset_notify", l_waitset_notify},
                                         {"waitset_wait", l_waitset_wait},
                                         {"waitset_state", l_waitset_state},
                                         {"waitset_close", l_waitset_close},
                                         {NULL, NULL}};

void coil__waitset_open(lua_State *L, coil_runtime *rt) {
  luaL_newmetatable(L, WAITSET_MT);
  lua_pushcfunction(L, waitset_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, waitset_funcs, 1);
}
