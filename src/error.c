/*
 * Errors and their reporting: the error classes (Cancelled, Timeout,
 * Interrupted), tracebacks that name the task, the one protected-call path
 * every entry into Lua uses (lua.c's msghandler/docall), and unseen errors:
 * a task that failed with nobody looking is reported when it becomes garbage
 * or before the state closes.
 */
#include <stdio.h>
#include <string.h>

#include "coil_internal.h"

#define CANCELLED_MT "coil.Cancelled"
#define TIMEOUT_MT "coil.Timeout"
#define UNSEEN_MT "coil.unseen_sentinel"
#define INTERRUPTED_MT "coil.Interrupted"

/* ---- error objects ------------------------------------------------------ */

/* Pushes a new Cancelled error object carrying reason (may be NULL). */
void coil__new_cancelled(lua_State *L, const char *reason) {
  lua_createtable(L, 0, 1);
  if (reason) {
    lua_pushstring(L, reason);
    lua_setfield(L, -2, "reason");
  }
  luaL_setmetatable(L, CANCELLED_MT);
}

int coil__is_cancelled(lua_State *L, int idx) {
  int r;
  if (!lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, CANCELLED_MT);
  r = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return r;
}

static int cancelled_tostring(lua_State *L) {
  if (lua_getfield(L, 1, "reason") == LUA_TSTRING)
    lua_pushfstring(L, "cancelled: %s", lua_tostring(L, -1));
  else lua_pushliteral(L, "cancelled");
  return 1;
}

static int timeout_tostring(lua_State *L) {
  char buf[64];
  lua_Number s;
  lua_getfield(L, 1, "seconds");
  s = lua_tonumber(L, -1);
  snprintf(buf, sizeof buf, "timeout after %.1f s", (double)s);
  lua_pushstring(L, buf);
  return 1;
}

/* coil.Cancelled([reason]) / coil.Timeout(seconds): constructors. */
static int cancelled_new(lua_State *L) {
  if (!lua_isnoneornil(L, 2) && !lua_isstring(L, 2))
    coil__arg_error(L, 2, "Cancelled", "a reason (a string) or nothing");
  coil__new_cancelled(L, lua_tostring(L, 2));
  return 1;
}

static int timeout_new(lua_State *L) {
  lua_Number s;
  if (!lua_isnoneornil(L, 2) && !lua_isnumber(L, 2))
    coil__arg_error(L, 2, "Timeout", "a number of seconds or nothing");
  s = lua_tonumber(L, 2);
  lua_createtable(L, 0, 1);
  lua_pushnumber(L, s);
  lua_setfield(L, -2, "seconds");
  luaL_setmetatable(L, TIMEOUT_MT);
  return 1;
}

/* Pushes a coil.Interrupted error naming the signal (coil.run raises it). */
void coil__new_interrupted(lua_State *L, const char *signal) {
  lua_createtable(L, 0, 1);
  lua_pushstring(L, signal);
  lua_setfield(L, -2, "signal");
  luaL_setmetatable(L, INTERRUPTED_MT);
}

static int interrupted_tostring(lua_State *L) {
  lua_getfield(L, 1, "signal");
  lua_pushfstring(L, "interrupted: %s", luaL_optstring(L, -1, "signal"));
  return 1;
}

static int interrupted_new(lua_State *L) {
  if (!lua_isnoneornil(L, 2) && !lua_isstring(L, 2))
    coil__arg_error(L, 2, "Interrupted", "a signal name or nothing");
  coil__new_interrupted(L,
                        lua_isnoneornil(L, 2) ? "SIGINT" : lua_tostring(L, 2));
  return 1;
}

static int is_of(lua_State *L, const char *mt) {
  int r = 0;
  if (lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, mt);
    r = lua_rawequal(L, -1, -2);
  }
  lua_pushboolean(L, r);
  return 1;
}

static int l_is_cancelled(lua_State *L) { return is_of(L, CANCELLED_MT); }
static int l_is_timeout(lua_State *L) { return is_of(L, TIMEOUT_MT); }
static int l_is_interrupted(lua_State *L) { return is_of(L, INTERRUPTED_MT); }

/* ---- tracebacks and the protected call ------------------------------------ */

/* Pushes the traceback of co prefixed by msg; when t is given the header
 * names the task ("stack traceback of task 'x':"). */
void coil__traceback(lua_State *L, lua_State *co, const char *msg,
                     coil_task *t) {
  luaL_traceback(L, co, msg, co == L ? 1 : 0);
  if (t) {
    const char *header;
    coil__push_name(L, t);
    header = lua_pushfstring(
        L, "stack traceback of task '%s':", lua_tostring(L, -1));
    luaL_gsub(L, lua_tostring(L, -3), "stack traceback:", header);
    lua_replace(L, -4);
    lua_pop(L, 2);
  }
}

/* The message handler of coil's one protected-call path (lua.c's msghandler):
 * Cancelled passes through untouched; anything else becomes a string with
 * the traceback of where it was raised, naming the task. */
int coil__msgh(lua_State *L) {
  const char *msg;
  coil_runtime *rt;
  if (lua_type(L, 1) == LUA_TTABLE && coil__is_cancelled(L, 1)) return 1;
  msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
  }
  rt = coil__rt(L);
  coil__traceback(L, L, msg,
                  rt && rt->current && rt->current->co == L ? rt->current
                                                            : NULL);
  return 1;
}

/* lua_pcall through coil__msgh; on error the message (with traceback) or the
 * Cancelled object is on top. */
int coil__pcall(lua_State *L, int nargs, int nresults) {
  int base = lua_gettop(L) - nargs, st;
  lua_pushcfunction(L, coil__msgh);
  lua_insert(L, base);
  st = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  return st;
}

/* Calls registry["coil.hooks"][name] (a function of the Lua half) with the
 * nargs values on top of rt->L, protected; errors are reported. Returns the
 * pcall status. */
int coil__call_hook(coil_runtime *rt, const char *name, int nargs,
                    int nresults) {
  lua_State *L = rt->L;
  int st;
  lua_getfield(L, LUA_REGISTRYINDEX, "coil.hooks");
  if (lua_getfield(L, -1, name) != LUA_TFUNCTION) {
    lua_pop(L, 2 + nargs);
    return LUA_ERRRUN;
  }
  lua_remove(L, -2);
  lua_insert(L, -(nargs + 1));
  st = coil__pcall(L, nargs, nresults);
  if (st != LUA_OK) {
    if (!coil__is_cancelled(L, -1)) {
      lua_pushfstring(L, "internal error in %s", name);
      coil__report_error(L, lua_tostring(L, -1), -2);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return st;
}

/* Pushes what to print for the failed task at idx: its traceback when the
 * message handler caught one, else its error as a string. */
void coil__push_error_text(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (coil__push_extras(L, idx, 0)) {
    lua_getfield(L, -1, "tb");
    lua_remove(L, -2);
    if (lua_type(L, -1) == LUA_TSTRING) return;
    lua_pop(L, 1);
  }
  lua_getiuservalue(L, idx, 1);
  luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);
}

/* ---- unseen errors -------------------------------------------------------- */

/* A task that fails with nobody listening gets a sentinel with a __gc: if the
 * task becomes garbage with its error unseen, the sentinel reports it; the
 * runtime reports the rest before it closes. The weak-keyed table
 * registry["coil.unseen"] maps task -> sentinel. */
typedef struct {
  int pending; /* 1 until reported or seen */
} unseen_sentinel;

static void report_unseen(coil_runtime *rt, lua_State *L, int task_idx) {
  task_idx = lua_absindex(L, task_idx);
  lua_getfield(L, LUA_REGISTRYINDEX, "coil.on_error");
  if (lua_isfunction(L, -1)) {
    lua_pushvalue(L, task_idx);
    lua_getiuservalue(L, task_idx, 1);
    coil__push_error_text(L, task_idx);
    if (coil__pcall(L, 3, 0) != LUA_OK) {
      /* os.exit in the handler is a request, not an error */
      if (!coil__is_cancelled(L, -1))
        coil__report_error(L, "error in the coil.on_error handler", -1);
      lua_pop(L, 1);
    }
    return;
  }
  lua_pop(L, 1);
  coil__push_name_at(L, task_idx);
  lua_pushfstring(
      L, "task '%s' failed and nobody awaited it: ", lua_tostring(L, -1));
  coil__push_error_text(L, task_idx);
  lua_concat(L, 2);
  coil__message(rt, lua_tostring(L, -1));
  lua_pop(L, 2);
}

/* Reports the tasks a finalizer set aside (registry["coil.unseen_late"]),
 * from the loop (a coil_post), as Lua code that a coil_shutdown or an
 * interrupt can stop: running_L points at it meanwhile. */
static void report_late(coil_runtime *rt, void *ud) {
  lua_State *L = rt->L, *prev;
  lua_Integer i, n;
  (void)ud;
  if (!L) return;
  if (lua_getfield(L, LUA_REGISTRYINDEX, "coil.unseen_late") != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "coil.unseen_late");
  prev = atomic_load(&rt->as.running_L);
  if (!prev) atomic_store(&rt->as.running_L, L);
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    report_unseen(rt, L, -1);
    lua_pop(L, 1);
  }
  if (!prev) {
    atomic_store(&rt->as.running_L, NULL);
    if (atomic_load(&rt->as.hook_armed)) coil__clear_hook(rt, L);
  }
  lua_pop(L, 1);
}

/* Puts the task on top into registry["coil.unseen_late"], posting a
 * report_late for the first one; 0 if posts are refused (the teardown). */
static int set_aside(coil_runtime *rt, lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, "coil.unseen_late") != LUA_TTABLE) {
    lua_pop(L, 1);
    if (coil_post(rt, report_late, NULL) != 0) return 0;
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "coil.unseen_late");
  }
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
  return 1;
}

static int unseen_gc(lua_State *L) {
  unseen_sentinel *s = (unseen_sentinel *)lua_touserdata(L, 1);
  coil_runtime *rt = RT_UP(L);
  int handler;
  if (!s->pending) return 0;
  s->pending = 0;
  lua_getiuservalue(L, 1, 1); /* the task */
  /* A collection that C code on the loop set off (no Lua code running):
   * Lua 5.4 runs finalizers with hooks off, so an on_error handler called
   * from here could never be stopped (coil_shutdown, Ctrl+C). The task is
   * set aside and reported from the loop, soon. From Lua code
   * (collectgarbage(), an allocation) the report is made at once. */
  lua_getfield(L, LUA_REGISTRYINDEX, "coil.on_error");
  handler = lua_isfunction(L, -1);
  lua_pop(L, 1);
  if (handler && !atomic_load(&rt->as.running_L) && set_aside(rt, L)) return 0;
  report_unseen(rt, L, -1);
  return 0;
}

/* Records that the failed task at idx has an error nobody saw yet. */
void coil__record_unseen(lua_State *L, int idx) {
  unseen_sentinel *s;
  idx = lua_absindex(L, idx);
  lua_getfield(L, LUA_REGISTRYINDEX, "coil.unseen");
  lua_pushvalue(L, idx);
  s = (unseen_sentinel *)lua_newuserdatauv(L, sizeof *s, 1);
  s->pending = 1;
  luaL_setmetatable(L, UNSEEN_MT);
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, -2, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Someone looked at the error of the task whose userdata is at idx: it will
 * not be reported. */
void coil__mark_seen(lua_State *L, int idx) {
  coil_task *t = (coil_task *)lua_touserdata(L, idx);
  if (t->flags & TF_ERR_SEEN) return;
  t->flags |= TF_ERR_SEEN;
  if (t->outcome != OUTCOME_FAILED) return;
  idx = lua_absindex(L, idx);
  lua_getfield(L, LUA_REGISTRYINDEX, "coil.unseen");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TUSERDATA) {
    ((unseen_sentinel *)lua_touserdata(L, -1))->pending = 0;
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, -4);
  }
  lua_pop(L, 2);
}

/* Pushes a fresh weak-keyed table of unseen errors into the registry. */
static void new_unseen_table(lua_State *L) {
  lua_newtable(L);
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "coil.unseen");
}

/* Reports every unseen error still on record (before the state closes). */
void coil__report_unseen_all(coil_runtime *rt) {
  lua_State *L = rt->L;
  report_late(rt, NULL); /* set aside by a finalizer, not reported yet */
  lua_getfield(L, LUA_REGISTRYINDEX, "coil.unseen");
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    unseen_sentinel *s = (unseen_sentinel *)lua_touserdata(L, -1);
    if (s && s->pending) {
      s->pending = 0;
      report_unseen(rt, L, -2);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  /* start afresh so that nothing is reported twice */
  new_unseen_table(L);
}

/* coil.on_error(fn | nil): who hears about unseen errors */
static int l_on_error(lua_State *L) {
  if (!lua_isnoneornil(L, 1) && lua_type(L, 1) != LUA_TFUNCTION)
    coil__arg_error(L, 1, "on_error", "a function or nil");
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "coil.on_error");
  return 0;
}

/* ---- opening ------------------------------------------------------------- */

/* Registers the metatable of an error class and puts the class, callable
 * to construct one, in the coil table on top of L's stack as coil[field]. */
static void add_error_class(lua_State *L, const char *mt, const char *field,
                            lua_CFunction tostring_fn, lua_CFunction new_fn) {
  luaL_newmetatable(L, mt);
  lua_pushstring(L, mt);
  lua_setfield(L, -2, "__name");
  lua_pushcfunction(L, tostring_fn);
  lua_setfield(L, -2, "__tostring");
  lua_newtable(L); /* the class's metatable: calling the class constructs */
  lua_pushcfunction(L, new_fn);
  lua_setfield(L, -2, "__call");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, field);
}

static const luaL_Reg error_funcs[] = {{"is_cancelled", l_is_cancelled},
                                       {"is_timeout", l_is_timeout},
                                       {"is_interrupted", l_is_interrupted},
                                       {"on_error", l_on_error},
                                       {NULL, NULL}};

/* Adds the error classes and functions to the coil table on top of L. */
void coil__error_open(lua_State *L, coil_runtime *rt) {
  luaL_newmetatable(L, UNSEEN_MT);
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, unseen_gc, 1);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  new_unseen_table(L);

  add_error_class(L, CANCELLED_MT, "Cancelled", cancelled_tostring,
                  cancelled_new);
  add_error_class(L, TIMEOUT_MT, "Timeout", timeout_tostring, timeout_new);
  add_error_class(L, INTERRUPTED_MT, "Interrupted", interrupted_tostring,
                  interrupted_new);
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, error_funcs, 1);
}
