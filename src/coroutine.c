/*
 * Transparent coroutines (SPEC §7): coil's own coroutine.resume and
 * coroutine.wrap, so that an await inside a user coroutine suspends the
 * whole task, and coroutine.running/isyieldable/yield/close that make each
 * task look like a main thread of its own.
 *
 * How an await passes through (the idea of cqueues' auxlib): the await
 * yields the inner coroutine with the task marked suspended (or ready, for
 * sleep(0)), which a user yield never does. The resume that ran it sees that
 * mark and yields its own coroutine outward in turn, up to the task's, which
 * the scheduler parks. When the task wakes, each resume on the way passes
 * the wake values back in, so the await's continuation runs where it
 * stopped. A task that never resumes a coroutine never enters this file.
 */
#include "coil_internal.h"

#include <lualib.h>

/* The coroutines our resumes are running, innermost last, that were resumed
 * from a place that can pass an await outward. Resumes nest strictly within
 * one thread, and Lua allows fewer than 200 nested C calls, so a small
 * per-thread stack does (no table write per resume). */
#define MAX_INNER 256
static _Thread_local lua_State *inner_stack[MAX_INNER];
static _Thread_local int inner_depth;
/* registry[&parked_key]: thread -> task, while the task waits inside it */
static char parked_key;
/* registry[&innermost_key]: task -> the coroutine where it waits (dumps) */
static char innermost_key;
/* registry[&guard_mt_key]: metatable of a resume's guard */
static char guard_mt_key;

/* registry[key][thread co] = value on top of L (popped). */
static void set_thread(lua_State *L, const void *key, lua_State *co) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, key); /* v, t */
  lua_pushthread(co);
  lua_xmove(co, L, 1);   /* v, t, co */
  lua_rotate(L, -3, -1); /* t, co, v */
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Pushes registry[key][thread co]; returns its type. */
static int get_thread(lua_State *L, const void *key, lua_State *co) {
  int type;
  lua_rawgetp(L, LUA_REGISTRYINDEX, key);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  type = lua_rawget(L, -2);
  lua_remove(L, -2);
  return type;
}

int coil__inner_awaits(lua_State *L) {
  return inner_depth > 0 && inner_stack[inner_depth - 1] == L;
}

static int co_yield (lua_State *L);

/* Whether the suspended co stopped in one of coil's own functions (all of
 * them have the runtime as upvalue 1) rather than in a user's yield: then it
 * is a task's own coroutine, which only the scheduler may resume. */
static int waits_in_coil(lua_State *L, lua_State *co) {
  lua_Debug ar;
  lua_CFunction f;
  int mine = 0;
  if (lua_status(co) != LUA_YIELD || !lua_getstack(co, 0, &ar)) return 0;
  lua_getinfo(co, "f", &ar);
  f = lua_tocfunction(co, -1);
  if (f != NULL && f != co_yield &&lua_getupvalue(co, -1, 1) != NULL) {
    mine = lua_touserdata(co, -1) == (void *)coil__rt(L);
    lua_pop(co, 1);
  }
  lua_pop(co, 1);
  return mine;
}

/* Raises when co is parked in an await, or is a task's own coroutine: only
 * its task may go on with it. Both stopped in coil's code; a coroutine that
 * yielded as a user's does not need the table look-up. */
static void check_not_parked(lua_State *L, lua_State *co, const char *what) {
  if (!waits_in_coil(L, co)) return;
  if (get_thread(L, &parked_key, co) != LUA_TNIL) {
    coil_task *t = (coil_task *)lua_touserdata(L, -1);
    coil__push_name(L, t);
    luaL_error(L,
               "coil: cannot %s a coroutine that is waiting inside task "
               "'%s'",
               what, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  luaL_error(L,
             "coil: cannot %s a task's own coroutine (task:cancel() stops a "
             "task)",
             what);
}

/* The task waits no more inside co. */
static void unpark(lua_State *L, lua_State *co, coil_task *t) {
  lua_pushnil(L);
  set_thread(L, &parked_key, co);
  if (t && t->anchor != LUA_NOREF) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &innermost_key);
    coil__push_task(L, t);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
}

/* A suspended busy-task hook armed in co while it ran goes on in L. */
static void move_hook(coil_runtime *rt, lua_State *co, lua_State *L) {
  lua_Hook hook = lua_gethook(co);
  if (!atomic_load(&rt->as.hook_armed) || hook == NULL) return;
  lua_sethook(L, hook, lua_gethookmask(co), lua_gethookcount(co));
  lua_sethook(co, NULL, 0, 0);
}

enum { K_RESUME, K_WRAP };

/* Results of a finished (returned, yielded or failed) resume of co, as
 * coroutine.resume or a wrap function gives them. */
static int finish(lua_State *L, lua_State *co, int status, int nres, int wrap) {
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      goto failed;
    }
    if (!wrap) lua_pushboolean(L, 1);
    lua_xmove(co, L, nres);
    return nres + (wrap ? 0 : 1);
  }
  lua_xmove(co, L, 1); /* the error */
failed:
  if (!wrap) {
    /* a coroutine that coil's cancellation unwound has its <close>
     * variables run now, as a wrap's has: the stock resume leaves that to a
     * coroutine.close that code written before coil never calls */
    if (coil__is_cancelled(L, -1) && lua_status(co) != LUA_OK &&
        coil__closethread(co, L) != LUA_OK)
      lua_pop(co, 1);
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  /* as the stock wrap: close a failed coroutine, say where it was called */
  status = lua_status(co);
  if (status != LUA_OK && status != LUA_YIELD) {
    status = coil__closethread(co, L);
    lua_xmove(co, L, 1);
  }
  if (status != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int drive_k(lua_State *L, int status, lua_KContext ctx);

/* Stack: 1 = the coroutine, 2 = its guard (nil until an await passed
 * through), then the values to pass in. Resumes it; when it stops in an
 * await, yields outward (the task suspends) and resumes it again with the
 * values the task wakes with. */
static int drive(lua_State *L, int wrap) {
  coil_runtime *rt = RT_UP(L);
  lua_State *co = lua_tothread(L, 1);
  coil_task *t = rt->current;
  int narg = lua_gettop(L) - 2, status, nres, forward = 0;

  if (!lua_checkstack(co, narg)) {
    return luaL_error(L, "too many arguments to resume");
  }
  lua_xmove(L, co, narg);
  if (t && inner_depth < MAX_INNER && lua_isyieldable(L) &&
      (L == t->co || coil__inner_awaits(L))) {
    forward = 1;
    inner_stack[inner_depth++] = co;
  }
  if (atomic_load(&rt->as.running_L) == L) {
    atomic_store(&rt->as.running_L, co);
    status = lua_resume(co, L, narg, &nres);
    atomic_store(&rt->as.running_L, L);
    move_hook(rt, co, L);
  } else {
    status = lua_resume(co, L, narg, &nres);
  }
  if (!forward) return finish(L, co, status, nres, wrap);
  inner_depth--;
  if (status != LUA_YIELD || rt->current != t || t->state == TASK_RUNNING)
    return finish(L, co, status, nres, wrap);

  /* an await inside co: the task waits in co */
  lua_pop(co, nres);
  coil__push_task(L, t);
  set_thread(L, &parked_key, co);
  if (t->anchor != LUA_NOREF) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &innermost_key);
    coil__push_task(L, t);
    if (lua_rawget(L, -2) == LUA_TNIL) { /* the first to pass it on */
      coil__push_task(L, t);
      lua_pushthread(co);
      lua_xmove(co, L, 1);
      lua_rawset(L, -4);
    }
    lua_pop(L, 2);
  }
  if (lua_isnil(L, 2)) {
    /* should this frame unwind while co waits (the task closed by force),
     * co is closed too, so its own <close> variables run */
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &guard_mt_key);
    lua_setmetatable(L, -2);
    lua_replace(L, 2);
    lua_toclose(L, 2);
  }
  lua_settop(L, 2);
  return lua_yieldk(L, 0, wrap, drive_k);
}

/* The task woke: the values it woke with go on into the coroutine. */
static int drive_k(lua_State *L, int status, lua_KContext ctx) {
  coil_runtime *rt = RT_UP(L);
  (void)status;
  unpark(L, lua_tothread(L, 1), rt->current);
  return drive(L, (int)ctx);
}

/* __close of a guard: closes its coroutine if the task still waits in it. */
static int guard_close(lua_State *L) {
  lua_State *co;
  lua_rawgeti(L, 1, 1);
  co = lua_tothread(L, -1);
  if (co && get_thread(L, &parked_key, co) != LUA_TNIL) {
    coil_task *t = (coil_task *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    unpark(L, co, t);
    if (coil__closethread(co, L) != LUA_OK) lua_pop(co, 1);
  }
  return 0;
}

static int co_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  check_not_parked(L, co, "resume");
  lua_pushnil(L);
  lua_insert(L, 2);
  return drive(L, K_RESUME);
}

static int co_wrapped(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  check_not_parked(L, lua_tothread(L, 1), "resume");
  lua_pushnil(L);
  lua_insert(L, 2);
  return drive(L, K_WRAP);
}

static int co_wrap(lua_State *L) {
  lua_State *co;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, lua_upvalueindex(1)); /* rt */
  co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, co_wrapped, 2);
  return 1;
}

/* The running task's own coroutine counts as a main thread. */
static int is_task_main(coil_runtime *rt, lua_State *co) {
  return rt->current != NULL && rt->current->co == co;
}

static int co_yield (lua_State *L) {
  if (is_task_main(RT_UP(L), L))
    return luaL_error(L, "attempt to yield from outside a coroutine");
  return lua_yield(L, lua_gettop(L));
}

static int co_running(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  int ismain = lua_pushthread(L), task_main = is_task_main(rt, L);
  if (task_main) rt->current->flags |= TF_CO_SEEN; /* never reused */
  lua_pushboolean(L, ismain || task_main);
  return 2;
}

static int co_isyieldable(lua_State *L) {
  lua_State *co = L;
  if (!lua_isnone(L, 1)) {
    co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
  }
  lua_pushboolean(L, lua_isyieldable(co) && !is_task_main(RT_UP(L), co));
  return 1;
}

/* coroutine.close as the stock one, refusing a coroutine a task waits in. */
static int co_close(lua_State *L) {
  static const char *const names[] = {"running", "normal"};
  lua_State *co = lua_tothread(L, 1);
  int status;
  luaL_argexpected(L, co, 1, "coroutine");
  check_not_parked(L, co, "close");
  status = lua_status(co);
  if (co == L || status == LUA_OK) {
    lua_Debug ar;
    if (co == L) return luaL_error(L, "cannot close a %s coroutine", names[0]);
    if (lua_getstack(co, 0, &ar))
      return luaL_error(L, "cannot close a %s coroutine", names[1]);
  }
  status = coil__closethread(co, L);
  if (status == LUA_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_xmove(co, L, 1);
  return 2;
}

void coil__task_traceback(lua_State *L, coil_task *t, const char *msg) {
  lua_State *inner;
  luaL_Buffer b;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &innermost_key);
  coil__push_task(L, t);
  lua_rawget(L, -2);
  inner = lua_tothread(L, -1);
  lua_pop(L, 2);
  if (!inner) {
    luaL_traceback(L, t->co, msg, 0);
    return;
  }
  luaL_buffinit(L, &b);
  luaL_traceback(L, inner, msg, 0);
  luaL_addvalue(&b);
  luaL_traceback(L, t->co, "", 0);
  /* "\nstack traceback:\n\t..." -> "\n\t...": one traceback, inner first */
  luaL_gsub(L, lua_tostring(L, -1), "\nstack traceback:", "");
  lua_remove(L, -2);
  luaL_addvalue(&b);
  luaL_pushresult(&b);
}

/* core.traceback(task) -> string: where the task waits. */
static int traceback(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  if (t->co) coil__task_traceback(L, t, NULL);
  else lua_pushliteral(L, "");
  return 1;
}

/* Pushes a weak-keyed table into registry[key]. */
static void new_weak(lua_State *L, const void *key) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

void coil__coroutine_open(lua_State *L, coil_runtime *rt) {
  static const luaL_Reg funcs[] = {{"resume", co_resume},
                                   {"wrap", co_wrap},
                                   {"yield", co_yield },
                                   {"running", co_running},
                                   {"isyieldable", co_isyieldable},
                                   {"close", co_close},
                                   {NULL, NULL}};
  new_weak(L, &parked_key);
  new_weak(L, &innermost_key);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, guard_close);
  lua_setfield(L, -2, "__close");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &guard_mt_key);

  /* the coil table is on top: its _traceback looks into coroutines */
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, traceback, 1);
  lua_setfield(L, -2, "traceback");

  /* the global coroutine library, for every piece of code in this state */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, LUA_COLIBNAME) == LUA_TTABLE) {
    lua_pushlightuserdata(L, rt);
    luaL_setfuncs(L, funcs, 1);
  }
  lua_pop(L, 2);
}
