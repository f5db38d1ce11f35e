/*
 * The scheduler's lower half: the ready queue and the one await-point API
 * every waiting call uses. A waiting call checks it may wait
 * (coil__await_check), records what it waits for and suspends
 * (coil__suspend); its continuation starts with coil__check_throw. Whoever
 * ends the wait pushes the resume values onto the task's coroutine and calls
 * coil__make_ready. Waking never allocates. (spawn.c resumes ready tasks.)
 */
#include "coil_internal.h"

static void idle_noop(uv_idle_t *h) { (void)h; }

/* Puts t at the end of the ready queue; the idle handle keeps the poll from
 * blocking while something is ready. */
void coil__make_ready(coil_runtime *rt, coil_task *t) {
  t->wait = WAIT_NONE;
  t->state = TASK_READY;
  t->next_ready = NULL;
  if (rt->ready_tail) {
    rt->ready_tail->next_ready = t;
  } else {
    rt->ready_head = t;
    uv_idle_start(&rt->idle, idle_noop);
  }
  rt->ready_tail = t;
}

/* The running task, or raises "coil: <what> must be called from inside a
 * task" (the one copy of that check; Lua reaches it as core.in_task). */
coil_task *coil__inside_task(lua_State *L, const char *what) {
  coil_task *t = RT_UP(L)->current;
  if (t == NULL) {
    lua_pushfstring(L, "coil: %s must be called from inside a task", what);
    lua_error(L);
  }
  return t;
}

/* Raises the Cancelled that waits for the running task's next await. */
static int deliver_pending(lua_State *L, coil_task *t) {
  coil__push_extras_of(L, t, 1);
  lua_getfield(L, -1, "pending");
  lua_pushnil(L);
  lua_setfield(L, -3, "pending");
  coil__cancel_delivered(t);
  return lua_error(L);
}

/* Checks that the running Lua code may wait here (what names the call in
 * errors) and delivers a pending cancellation; returns the running task. */
coil_task *coil__await_check(lua_State *L, const char *what) {
  coil_task *t = coil__inside_task(L, what);
  if (t->flags & TF_FORCED) {
    coil__push_name(L, t);
    lua_pushfstring(L, "coil: task '%s' was closed by force; %s cannot wait",
                    lua_tostring(L, -1), what);
    lua_error(L);
  }
  if (t->co != L && !coil__inner_awaits(L)) { /* src/coroutine.c */
    lua_pushfstring(L,
                    "coil: %s cannot wait here (in a coroutine resumed "
                    "where the task cannot wait)",
                    what);
    lua_error(L);
  }
  if (!lua_isyieldable(L)) {
    lua_pushfstring(L,
                    "coil: %s cannot wait here (inside a metamethod or a C "
                    "function that cannot yield)",
                    what);
    lua_error(L);
  }
  if (t->flags & TF_CANCEL_PENDING) deliver_pending(L, t);
  return t;
}

/* Suspends the running task t, waiting for wait; k continues it. */
int coil__suspend(lua_State *L, coil_task *t, int wait, lua_KFunction k,
                  lua_KContext ctx) {
  t->state = TASK_SUSPENDED;
  t->wait = (uint8_t)wait;
  t->nargs = 0;
  return lua_yieldk(L, 0, ctx, k);
}

/* A Cancelled is being raised in t: nothing is pending any more. */
void coil__cancel_delivered(coil_task *t) {
  t->flags &=
      ~(TF_THROW | TF_CANCEL_PENDING | TF_CANCEL_DEFERRED | TF_CANCEL_SOFT);
  if (t->cancels < UINT16_MAX) t->cancels++;
}

/* First thing every await continuation does: raise a delivered Cancelled. */
void coil__check_throw(lua_State *L, coil_task *t) {
  if (t->flags & TF_THROW) {
    coil__cancel_delivered(t);
    lua_error(L);
  }
}

/* ---- waiting for another task ------------------------------------------ */

void coil__link_waiter(coil_task *target, coil_task *w) {
  coil_task *head = target->waiters;
  w->awaited = target;
  if (!head) {
    target->waiters = w->wnext = w->wprev = w;
  } else {
    coil_task *tail = head->wprev;
    tail->wnext = w;
    w->wprev = tail;
    w->wnext = head;
    head->wprev = w;
  }
}

void coil__unlink_waiter(coil_task *w) {
  coil_task *target = w->awaited;
  if (!target) return;
  if (w->wnext == w) {
    target->waiters = NULL;
  } else {
    w->wprev->wnext = w->wnext;
    w->wnext->wprev = w->wprev;
    if (target->waiters == w) target->waiters = w->wnext;
  }
  w->wnext = w->wprev = NULL;
  w->awaited = NULL;
}

/* ---- parking, for the Lua half ------------------------------------------- */

/* core.park(): suspends the running task until core.wake(task, ...) makes it
 * ready (returning those values) or it is cancelled (raising). The Lua code
 * that parked it is responsible for forgetting it if it raises. */
static int park_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  coil__check_throw(L, RT_UP(L)->current);
  return lua_gettop(L) - (int)ctx;
}

static int l_park(lua_State *L) {
  coil_task *t = coil__await_check(L, "wait");
  int base = lua_gettop(L);
  return coil__suspend(L, t, WAIT_PARKED, park_k, base);
}

/* core.wake(task, ...) -> bool: resumes a parked task with the values;
 * false if it is not parked (already woken or being cancelled). */
static int l_wake(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  coil_task *t = coil__check_task(L, 1);
  int n = lua_gettop(L) - 1;
  if (t->state != TASK_SUSPENDED || t->wait != WAIT_PARKED) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (!lua_checkstack(t->co, n + 1))
    return luaL_error(L, "coil: stack overflow");
  lua_xmove(L, t->co, n);
  t->nargs = n;
  coil__make_ready(rt, t);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.in_task(what[, level]) -> the running task, or raises "coil: <what>
 * must be called from inside a task" at level (default 2: the caller's
 * caller, as error(msg, 2) in the function that checks). */
static int l_in_task(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  const char *what;
  int level;
  if (rt->current) { /* the arguments only shape the error */
    coil__push_task(L, rt->current);
    return 1;
  }
  what = luaL_checkstring(L, 1);
  level = (int)luaL_optinteger(L, 2, 2);
  luaL_where(L, level);
  lua_pushfstring(L, "coil: %s must be called from inside a task", what);
  lua_concat(L, 2);
  return lua_error(L);
}

static const luaL_Reg scheduler_funcs[] = {
    {"park", l_park}, {"wake", l_wake}, {"in_task", l_in_task}, {NULL, NULL}};

void coil__scheduler_open(lua_State *L, coil_runtime *rt) {
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, scheduler_funcs, 1);
}
