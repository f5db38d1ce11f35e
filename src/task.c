/*
 * Tasks: a Lua coroutine driven by the loop.
 *
 * A task is a full userdata (struct coil_task) whose first user value is its
 * coroutine while it runs and its results once it is done; its second user
 * value is a lazily created table of rarely used extras (name, defers,
 * on_done callbacks, a pending Cancelled, a traceback). While a task is alive
 * it is anchored in the live-task table, so C may keep plain pointers to it.
 *
 * The coroutine's main function is task_entry: it calls the task's function
 * in a yieldable protected call (so `<close>` handlers and cleanup may await),
 * then runs the coil.defer functions, newest first, each protected too.
 *
 * Waking is allocation free: the values a suspended task resumes with are
 * pushed straight onto its coroutine's stack and counted in t->nargs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coil_internal.h"
#include "coroutine.h"

#define TASK_MT "coil.task"
#define CANCELLED_MT "coil.Cancelled"
#define TIMEOUT_MT "coil.Timeout"
#define UNSEEN_MT "coil.unseen_sentinel"
#define INTERRUPTED_MT "coil.Interrupted"

/* The runtime of a C function registered with it as upvalue 1 (the hot
 * paths); elsewhere coil__rt() looks it up in the registry. */
#define RT_UP(L) ((coil_runtime *)lua_touserdata(L, lua_upvalueindex(1)))

static void idle_noop(uv_idle_t *h) { (void)h; }

/* ---- small helpers ------------------------------------------------------ */

static void enqueue(coil_runtime *rt, coil_task *t) {
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

void coil__make_ready(coil_runtime *rt, coil_task *t) {
  t->wait = WAIT_NONE;
  enqueue(rt, t);
}

/* Pushes the task's userdata. */
void coil__push_task(lua_State *L, coil_task *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->rt->anchors_ref);
  lua_rawgeti(L, -1, t->anchor);
  lua_remove(L, -2);
}

/* registry[&task_mt_key]: the task metatable, found without a string key */
static const char task_mt_key = 't';

coil_task *coil__check_task(lua_State *L, int idx) {
  void *p = lua_touserdata(L, idx);
  if (p && lua_getmetatable(L, idx)) {
    int same;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &task_mt_key);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (same) return (coil_task *)p;
  }
  return (coil_task *)luaL_checkudata(L, idx, TASK_MT); /* raises */
}

/* Pushes the extras table of the task at idx, creating it if asked;
 * returns 0 (and pushes nothing) when it does not exist and create is 0.
 * (A task whose only extra is one coil.defer(fn) keeps fn itself as its user
 * value instead: the common case costs no table. It moves into the table
 * once one is needed.) */
static int push_extras(lua_State *L, int idx, int create) {
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
  return 1;
}

/* Same, for a task given by pointer (alive or not). */
static int push_extras_of(lua_State *L, coil_task *t, int create) {
  int ok;
  coil__push_task(L, t);
  ok = push_extras(L, -1, create);
  if (ok) lua_remove(L, -2);
  else lua_pop(L, 1);
  return ok;
}

/* Pushes the name of the task whose userdata is at idx (default task-<id>,
 * "main" for the main task). */
static void push_name_at(lua_State *L, int idx) {
  coil_task *t = (coil_task *)lua_touserdata(L, idx);
  if (push_extras(L, idx, 0)) {
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
  push_name_at(L, -1);
  lua_remove(L, -2);
}

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
  else
    lua_pushliteral(L, "cancelled");
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
  coil__new_cancelled(L, luaL_optstring(L, 2, NULL));
  return 1;
}

static int timeout_new(lua_State *L) {
  lua_Number s = luaL_optnumber(L, 2, 0);
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
  coil__new_interrupted(L, luaL_optstring(L, 2, "SIGINT"));
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

/* Pushes the traceback of co prefixed by msg; when t is given the header
 * names the task ("stack traceback of task 'x':"). */
void coil__traceback(lua_State *L, lua_State *co, const char *msg,
                     coil_task *t) {
  luaL_traceback(L, co, msg, co == L ? 1 : 0);
  if (t) {
    const char *header;
    coil__push_name(L, t);
    header = lua_pushfstring(L, "stack traceback of task '%s':",
                             lua_tostring(L, -1));
    luaL_gsub(L, lua_tostring(L, -3), "stack traceback:", header);
    lua_replace(L, -4);
    lua_pop(L, 2);
  }
}

/* Pushes what to print for the failed task at idx: its traceback when the
 * message handler caught one, else its error as a string. */
static void push_error_text(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (push_extras(L, idx, 0)) {
    lua_getfield(L, -1, "tb");
    lua_remove(L, -2);
    if (lua_type(L, -1) == LUA_TSTRING) return;
    lua_pop(L, 1);
  }
  lua_getiuservalue(L, idx, 1);
  luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);
}

/* ---- the coroutine's main function --------------------------------------- */

/* Message handler of a task's body: keeps the error object as it is (callers
 * compare identities) and records the traceback in the task's extras. */
static int entry_msgh(lua_State *L) {
  coil_task *t = RT_UP(L)->current;
  if (t == NULL || coil__is_cancelled(L, 1)) return 1;
  {
    const char *msg = luaL_tolstring(L, 1, NULL);
    coil__traceback(L, L, msg, t); /* err, msg, tb */
    coil__push_task(L, t);
    push_extras(L, -1, 1);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "tb");
    lua_settop(L, 1);
  }
  return 1;
}

/* Pops the newest defer of the running task and pushes its function and
 * arguments; returns how many arguments, or -1 when none is left. */
static int pop_defer(lua_State *L, coil_task *t) {
  int n, i;
  lua_Integer len;
  int type;
  coil__push_task(L, t);
  type = lua_getiuservalue(L, -1, 2); /* task, extras */
  if (type == LUA_TFUNCTION) {        /* a lone defer */
    lua_pushnil(L);
    lua_setiuservalue(L, -3, 2);
    lua_remove(L, -2);
    return 0;
  }
  lua_remove(L, -2);
  if (type != LUA_TTABLE) {
    lua_pop(L, 1);
    return -1;
  }
  if (lua_getfield(L, -1, "defers") != LUA_TTABLE) {
    lua_pop(L, 2);
    return -1;
  }
  len = luaL_len(L, -1);
  if (len == 0) {
    lua_pop(L, 2);
    return -1;
  }
  lua_rawgeti(L, -1, len); /* extras, defers, entry */
  lua_pushnil(L);
  lua_rawseti(L, -3, len);
  lua_replace(L, -3); /* entry, defers */
  lua_pop(L, 1);
  if (lua_type(L, -1) == LUA_TFUNCTION) return 0;
  /* a packed {fn, args..., n = k} */
  lua_getfield(L, -1, "n");
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n + 1, "too many arguments to a deferred function");
  for (i = 1; i <= n + 1; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -(n + 2));
  return n;
}

/* Reports an error raised by a cleanup function (Cancelled is not). */
static void report_cleanup_error(lua_State *L, coil_task *t) {
  if (!coil__is_cancelled(L, -1)) {
    coil__push_name(L, t);
    coil__report_error(
        L,
        lua_pushfstring(L, "error in a deferred function of task '%s'",
                        lua_tostring(L, -1)),
        -3);
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

enum { CTX_BODY, CTX_DEFER };

static int entry_k(lua_State *L, int status, lua_KContext ctx) {
  coil_task *t = RT_UP(L)->current;
  int ok = status == LUA_OK || status == LUA_YIELD;
  if (ctx == CTX_BODY) {
    if (ok) t->outcome = OUTCOME_OK;
    else t->outcome = coil__is_cancelled(L, -1) ? OUTCOME_CANCELLED
                                                : OUTCOME_FAILED;
    /* the defers get the reporting handler: their errors are only told */
    lua_pushcfunction(L, coil__msgh);
    lua_replace(L, 1);
  } else if (!ok) {
    report_cleanup_error(L, t);
  }
  for (;;) {
    int n = pop_defer(L, t);
    if (n < 0) break;
    /* stack: msgh, results..., fn, args */
    if (lua_pcallk(L, n, 0, 1, CTX_DEFER, entry_k) != LUA_OK)
      report_cleanup_error(L, t);
  }
  lua_remove(L, 1); /* the message handler */
  return lua_gettop(L);
}

/* Stack on entry: fn, args... */
static int task_entry(lua_State *L) {
  int nargs = lua_gettop(L) - 1;
  lua_pushvalue(L, lua_upvalueindex(2)); /* entry_msgh */
  lua_insert(L, 1);
  return entry_k(L, lua_pcallk(L, nargs, LUA_MULTRET, 1, CTX_BODY, entry_k),
                 CTX_BODY);
}

/* ---- spawning ------------------------------------------------------------ */

/* Spawns the function below nargs arguments on top of L's stack as a task;
 * pops them and pushes the task. */
coil_task *coil__spawn(lua_State *L, coil_runtime *rt, int nargs) {
  int fidx = lua_gettop(L) - nargs;
  coil_task *t;
  lua_State *co;

  t = (coil_task *)lua_newuserdatauv(L, sizeof *t, 2);
  memset(t, 0, sizeof *t);
  t->rt = rt;
  t->anchor = LUA_NOREF;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &task_mt_key);
  lua_setmetatable(L, -2);
  co = lua_newthread(L);
  lua_setiuservalue(L, -2, 1);
  lua_insert(L, fidx); /* task, fn, args */
  if (!lua_checkstack(co, nargs + 2)) luaL_error(L, "coil: too many arguments");
  lua_rawgeti(co, LUA_REGISTRYINDEX, rt->entry_ref);
  lua_xmove(L, co, nargs + 1);

  t->co = co;
  t->id = ++rt->next_id;
  t->started = uv_now(rt->loop);
  t->nargs = nargs + 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchors_ref);
  lua_pushvalue(L, -2);
  t->anchor = luaL_ref(L, -2);
  lua_pop(L, 1);
  rt->live++;

  if (rt->phase >= PHASE_CANCEL) {
    /* Shutdown has cancelled everyone: so that it converges, a task born
     * now is born cancelled and its first await raises. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->cancel_ref);
    push_extras(L, -2, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, "pending");
    lua_pop(L, 1);
    t->flags |= TF_CANCEL_PENDING | TF_SHUTDOWN_CANCELLED;
  }
  enqueue(rt, t);
  return t;
}

static int l_spawn(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (rt->phase >= PHASE_CLOSING)
    return luaL_error(L, "coil: the runtime is closing; no task can start");
  coil__spawn(L, rt, lua_gettop(L) - 1);
  return 1;
}

static int l_current(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  if (rt->current) coil__push_task(L, rt->current);
  else lua_pushnil(L);
  return 1;
}

/* ---- awaiting ------------------------------------------------------------ */

/* Raises the Cancelled that waits for the running task's next await. */
static int deliver_pending(lua_State *L, coil_task *t) {
  push_extras_of(L, t, 1);
  lua_getfield(L, -1, "pending");
  lua_pushnil(L);
  lua_setfield(L, -3, "pending");
  coil__cancel_delivered(t);
  return lua_error(L);
}

coil_task *coil__await_check(lua_State *L, const char *what) {
  coil_runtime *rt = RT_UP(L);
  coil_task *t = rt->current;
  if (t == NULL) {
    lua_pushfstring(L, "coil: %s must be called from inside a task", what);
    lua_error(L);
  }
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

int coil__suspend(lua_State *L, coil_task *t, int wait, lua_KFunction k,
                  lua_KContext ctx) {
  t->state = TASK_SUSPENDED;
  t->wait = (uint8_t)wait;
  t->nargs = 0;
  return lua_yieldk(L, 0, ctx, k);
}

/* A Cancelled is being raised in t: nothing is pending any more. */
void coil__cancel_delivered(coil_task *t) {
  t->flags &= ~(TF_THROW | TF_CANCEL_PENDING | TF_CANCEL_DEFERRED |
                TF_CANCEL_SOFT);
  if (t->cancels < UINT16_MAX) t->cancels++;
}

/* First thing every await continuation does: raise a delivered Cancelled. */
static void check_throw(lua_State *L, coil_task *t) {
  if (t->flags & TF_THROW) {
    coil__cancel_delivered(t);
    lua_error(L);
  }
}

static void mark_seen(lua_State *L, int idx);

/* Pushes the results of the done task at idx, or raises its error. */
static int push_outcome(lua_State *L, int idx, coil_task *t) {
  mark_seen(L, idx);
  lua_getiuservalue(L, idx, 1);
  if (t->outcome != OUTCOME_OK) return lua_error(L);
  if (t->nresults <= 1) {
    if (t->nresults == 0) lua_pop(L, 1);
    return t->nresults;
  } else {
    int i, n = t->nresults, tbl = lua_gettop(L);
    luaL_checkstack(L, n, "too many results");
    for (i = 1; i <= n; i++) lua_rawgeti(L, tbl, i);
    return n;
  }
}

static void link_waiter(coil_task *target, coil_task *w) {
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

static void unlink_waiter(coil_task *w) {
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

void coil__task_unlink_waits(coil_runtime *rt, coil_task *t) {
  if (t->state != TASK_SUSPENDED) return;
  if (t->wait == WAIT_SLEEP) coil__heap_remove(rt, t);
  else if (t->wait == WAIT_TASK || t->wait == WAIT_SHIELD) unlink_waiter(t);
  t->wait = WAIT_NONE;
}

static int await_k(lua_State *L, int status, lua_KContext ctx) {
  coil_runtime *rt = RT_UP(L);
  (void)status;
  (void)ctx;
  check_throw(L, rt->current);
  return push_outcome(L, 1, coil__check_task(L, 1));
}

/* Awaits the task at index 1; shield: without passing cancellation on. */
static int await_task(lua_State *L, int shield, const char *what) {
  coil_task *target = coil__check_task(L, 1);
  coil_task *t = coil__await_check(L, what);
  if (target == t) {
    lua_pushfstring(L, "coil: a task cannot %s itself", what);
    return lua_error(L);
  }
  lua_settop(L, 1);
  if (target->state == TASK_DONE) return push_outcome(L, 1, target);
  link_waiter(target, t);
  return coil__suspend(L, t, shield ? WAIT_SHIELD : WAIT_TASK, await_k, 0);
}

static int task_await(lua_State *L) { return await_task(L, 0, "await"); }
static int l_shield(lua_State *L) { return await_task(L, 1, "shield"); }

/* ---- cancellation --------------------------------------------------------- */

/* Stores err (at err_idx of L) where t will raise it: pushed onto its
 * coroutine if it is suspended, else kept for its next await. */
static void hand_over(lua_State *L, coil_task *t, int err_idx) {
  lua_pushvalue(L, err_idx);
  if (t->state == TASK_SUSPENDED) {
    lua_xmove(L, t->co, 1);
    t->nargs = 1;
    t->flags |= TF_THROW;
  } else {
    push_extras_of(L, t, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, "pending");
    lua_pop(L, 1);
  }
}

/* Replaces the cancellation waiting for delivery in t by err (at err_idx). */
static void replace_pending(lua_State *L, coil_task *t, int err_idx) {
  if (t->flags & TF_THROW) { /* on its coroutine, for the next resume */
    lua_pushvalue(L, err_idx);
    lua_xmove(L, t->co, 1);
    lua_replace(t->co, -2);
  } else {
    push_extras_of(L, t, 1);
    lua_pushvalue(L, err_idx);
    lua_setfield(L, -2, "pending");
    lua_pop(L, 1);
  }
}

/* Cancels t with the error object at err_idx of L. Edge-triggered: a
 * cancellation not yet delivered absorbs further ones, except that a real
 * one replaces a soft one (a timeout's own, which must never turn a real
 * cancellation into a Timeout). Awaiting owns: a task cancelled while it
 * awaits another cancels that one too and raises once it is done, so the
 * owner's cleanup sees the child's cleanup finished.
 * Returns 0 if t was already done. */
int coil__cancel(lua_State *L, coil_task *t, int err_idx, int soft) {
  coil_runtime *rt = t->rt;
  int result = t->state != TASK_DONE;
  err_idx = lua_absindex(L, err_idx);
  luaL_checkstack(L, 4, NULL);
  while (t && t->state != TASK_DONE) {
    coil_task *next = NULL;
    if (t->flags & TF_CANCEL_PENDING) {
      if (soft || !(t->flags & TF_CANCEL_SOFT)) break; /* absorbed */
      replace_pending(L, t, err_idx);
      t->flags &= ~TF_CANCEL_SOFT;
      if ((t->flags & TF_CANCEL_DEFERRED) && t->state == TASK_SUSPENDED) {
        t = t->awaited; /* the owned task got the soft one too */
        continue;
      }
      break;
    }
    t->flags |= TF_CANCEL_PENDING;
    if (soft) t->flags |= TF_CANCEL_SOFT;
    if (t->state != TASK_SUSPENDED) {
      hand_over(L, t, err_idx);
      break;
    }
    switch (t->wait) {
    case WAIT_SLEEP:
      coil__heap_remove(rt, t);
      break;
    case WAIT_TASK:
      hand_over(L, t, err_idx);
      t->flags |= TF_CANCEL_DEFERRED;
      next = t->awaited;
      break;
    case WAIT_SHIELD:
      unlink_waiter(t);
      break;
    default:
      break;
    }
    if (next) {
      t = next;
      continue;
    }
    hand_over(L, t, err_idx);
    coil__make_ready(rt, t);
    break;
  }
  return result;
}

static int task_cancel(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  coil__new_cancelled(L, luaL_optstring(L, 2, NULL));
  lua_pushboolean(L, coil__cancel(L, t, -1, 0));
  return 1;
}

/* ---- task methods ------------------------------------------------------------ */

static int task_done(lua_State *L) {
  lua_pushboolean(L, coil__check_task(L, 1)->state == TASK_DONE);
  return 1;
}

static int task_cancelled(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  lua_pushboolean(L, t->state == TASK_DONE && t->outcome == OUTCOME_CANCELLED);
  return 1;
}

static int task_result(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  if (t->state != TASK_DONE) {
    coil__push_name(L, t);
    lua_pushfstring(L, "coil: task '%s' is not done", lua_tostring(L, -1));
    return lua_error(L);
  }
  lua_settop(L, 1);
  return push_outcome(L, 1, t);
}

static int task_error(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  if (t->state != TASK_DONE || t->outcome == OUTCOME_OK) {
    lua_pushnil(L);
    return 1;
  }
  mark_seen(L, 1);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int task_name(lua_State *L) {
  coil__check_task(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    luaL_checkstring(L, 2);
    push_extras(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "name");
    lua_settop(L, 1);
    return 1;
  }
  push_name_at(L, 1);
  return 1;
}

/* Calls fn(task) for a done task, reporting its error. */
static void call_on_done(coil_runtime *rt, lua_State *L, int fn_idx,
                         int task_idx) {
  lua_pushvalue(L, fn_idx);
  lua_pushvalue(L, task_idx);
  if (coil__pcall(L, 1, 0) != LUA_OK) {
    if (!coil__is_cancelled(L, -1))
      coil__report_error(L, "error in an on_done callback", -1);
    lua_pop(L, 1);
  }
}

static int task_on_done(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  if (t->state == TASK_DONE) {
    mark_seen(L, 1);
    call_on_done(RT_UP(L), L, 2, 1);
    return 0;
  }
  push_extras(L, 1, 1);
  if (lua_getfield(L, -1, "on_done") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "on_done");
  }
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  return 0;
}

/* task:_remove_on_done(fn): for combinators that stop watching a task. */
static int task_remove_on_done(lua_State *L) {
  lua_Integer i, n;
  coil__check_task(L, 1);
  if (!push_extras(L, 1, 0)) return 0;
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
  static const char *const states[] = {"ready", "running", "suspended",
                                       "done"};
  push_name_at(L, 1);
  lua_pushfstring(L, "coil.task '%s' (%s)", lua_tostring(L, -1),
                  states[t->state]);
  return 1;
}

/* ---- unseen errors ------------------------------------------------------------ */

/* A task that fails with nobody listening gets a sentinel with a __gc: if the
 * task becomes garbage with its error unseen, the sentinel reports it; the
 * runtime reports the rest before it closes. The weak-keyed table
 * rt "unseen" maps task -> sentinel. */
typedef struct {
  int pending; /* 1 until reported or seen */
} unseen_sentinel;

static void report_unseen(coil_runtime *rt, lua_State *L, int task_idx) {
  task_idx = lua_absindex(L, task_idx);
  lua_getfield(L, LUA_REGISTRYINDEX, "coil.on_error");
  if (lua_isfunction(L, -1)) {
    lua_pushvalue(L, task_idx);
    lua_getiuservalue(L, task_idx, 1);
    push_error_text(L, task_idx);
    if (coil__pcall(L, 3, 0) != LUA_OK) {
      coil__report_error(L, "error in the coil.on_error handler", -1);
      lua_pop(L, 1);
    }
    return;
  }
  lua_pop(L, 1);
  push_name_at(L, task_idx);
  lua_pushfstring(L, "task '%s' failed and nobody awaited it: ",
                  lua_tostring(L, -1));
  push_error_text(L, task_idx);
  lua_concat(L, 2);
  coil__message(rt, lua_tostring(L, -1));
  lua_pop(L, 2);
}

static int unseen_gc(lua_State *L) {
  unseen_sentinel *s = (unseen_sentinel *)lua_touserdata(L, 1);
  if (s->pending) {
    s->pending = 0;
    lua_getiuservalue(L, 1, 1);
    report_unseen(RT_UP(L), L, -1);
  }
  return 0;
}

/* Someone looked at the error of the task whose userdata is at idx: it will
 * not be reported. */
static void mark_seen(lua_State *L, int idx) {
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

/* Reports every unseen error still on record (before the state closes). */
void coil__report_unseen_all(coil_runtime *rt) {
  lua_State *L = rt->L;
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
  lua_newtable(L);
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "coil.unseen");
}

/* ---- waitsets ------------------------------------------------------------------- */

/* A waitset watches the tasks of one gather/wait/race call for one waiting
 * task, with a pointer in each task and counters here: nothing allocated per
 * task, no callback per completion. A task is in at most one waitset; the
 * Lua side watches a task already in another one with on_done and
 * coil._waitset_notify. */
#define WAITSET_MT "coil.waitset"

enum { WS_ALL, WS_FIRST, WS_ERROR, WS_BAD };
static const char *const ws_modes[] = {"all", "first", "error", "bad", NULL};

struct coil_waitset {
  coil_task *owner;
  uint32_t n, ndone;
  uint32_t first_done, first_error, first_bad; /* 1-based; 0 = none yet */
  int waiting; /* mode the owner waits for, or -1 */
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

/* Unlinks the tasks still pointing at the waitset at idx. */
static void waitset_unlink(lua_State *L, int idx) {
  coil_waitset *ws = (coil_waitset *)lua_touserdata(L, idx);
  uint32_t i;
  ws->waiting = -1;
  if (ws->ndone == ws->n) return; /* every task unlinked itself when done */
  if (lua_getiuservalue(L, idx, 1) == LUA_TTABLE) {
    for (i = 1; i <= ws->n; i++) {
      coil_task *t;
      lua_rawgeti(L, -1, i);
      t = (coil_task *)lua_touserdata(L, -1);
      if (t && lua_type(L, -1) == LUA_TUSERDATA && t->ws == ws &&
          coil__check_task(L, -1) == t)
        t->ws = NULL;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  ws->waiting = -1;
}

/* coil._waitset(list, n) -> ws, shared: watches list[1..n] for the running
 * task; `shared` lists the indices of tasks already watched elsewhere (the
 * caller watches those with on_done + coil._waitset_notify), or is nil. */
static int l_waitset(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  uint32_t n = (uint32_t)luaL_checkinteger(L, 2), i, nshared = 0;
  coil_waitset *ws;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!rt->current) return luaL_error(L, "coil: wait must be called from inside a task");
  lua_settop(L, 2);
  ws = (coil_waitset *)lua_newuserdatauv(L, sizeof *ws, 1); /* 3 */
  memset(ws, 0, sizeof *ws);
  ws->owner = rt->current;
  ws->n = n;
  ws->waiting = -1;
  luaL_setmetatable(L, WAITSET_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, 3, 1);
  lua_pushnil(L); /* 4: shared */
  for (i = 1; i <= n; i++) {
    coil_task *t;
    lua_rawgeti(L, 1, i);
    t = coil__check_task(L, -1);
    if (t->state == TASK_DONE) {
      mark_seen(L, -1);
      waitset_task_done(rt, ws, i, t->outcome);
    } else if (!t->ws) {
      t->ws = ws;
      t->ws_index = i;
    } else {
      if (lua_isnil(L, 4)) {
        lua_newtable(L);
        lua_replace(L, 4);
      }
      lua_pushinteger(L, i);
      lua_rawseti(L, 4, ++nshared);
    }
    lua_pop(L, 1);
  }
  return 2;
}

/* coil._waitset_notify(ws, i): task i, watched by on_done, is done. */
static int l_waitset_notify(lua_State *L) {
  coil_waitset *ws = (coil_waitset *)luaL_checkudata(L, 1, WAITSET_MT);
  uint32_t i = (uint32_t)luaL_checkinteger(L, 2);
  coil_task *t;
  lua_getiuservalue(L, 1, 1);
  lua_rawgeti(L, -1, i);
  t = coil__check_task(L, -1);
  waitset_task_done(RT_UP(L), ws, i, t->outcome);
  return 0;
}

static int waitset_wait_k(lua_State *L, int status, lua_KContext ctx) {
  coil_waitset *ws = (coil_waitset *)lua_touserdata(L, 1);
  (void)status;
  (void)ctx;
  ws->waiting = -1;
  check_throw(L, RT_UP(L)->current);
  return 0;
}

/* coil._waitset_wait(ws, mode) ⏳: until every task is done, or for mode
 * "first" one is, "error" one failed, "bad" one failed or was cancelled. */
static int l_waitset_wait(lua_State *L) {
  coil_waitset *ws = (coil_waitset *)luaL_checkudata(L, 1, WAITSET_MT);
  int mode = luaL_checkoption(L, 2, "all", ws_modes);
  coil_task *t = coil__await_check(L, "wait");
  if (waitset_met(ws, mode)) return 0;
  lua_settop(L, 1);
  ws->owner = t;
  ws->waiting = mode;
  return coil__suspend(L, t, WAIT_PARKED, waitset_wait_k, 0);
}

/* coil._waitset_state(ws) -> ndone, first_done, first_error, first_bad
 * (indices, nil for none) */
static int l_waitset_state(lua_State *L) {
  coil_waitset *ws = (coil_waitset *)luaL_checkudata(L, 1, WAITSET_MT);
  lua_pushinteger(L, ws->ndone);
  if (ws->first_done) lua_pushinteger(L, ws->first_done); else lua_pushnil(L);
  if (ws->first_error) lua_pushinteger(L, ws->first_error); else lua_pushnil(L);
  if (ws->first_bad) lua_pushinteger(L, ws->first_bad); else lua_pushnil(L);
  return 4;
}

/* coil._waitset_close(ws): stop watching (also done by __gc). */
static int l_waitset_close(lua_State *L) {
  luaL_checkudata(L, 1, WAITSET_MT);
  waitset_unlink(L, 1);
  return 0;
}

static int waitset_gc(lua_State *L) {
  waitset_unlink(L, 1);
  return 0;
}

/* ---- finishing ---------------------------------------------------------------- */

/* The status a main chunk's first result asks for, or -1 for none. */
static int main_status(lua_State *co, int idx) {
  if (lua_isinteger(co, idx)) return (int)(lua_tointeger(co, idx) & 0xff);
  if (lua_isboolean(co, idx)) return lua_toboolean(co, idx) ? 0 : 1;
  return -1;
}

static void run_done_cb(coil_runtime *rt, coil_task *t, int ud_idx);

/* Records how t ended and tells everyone who waits. L = rt->L. */
static void task_finish(coil_runtime *rt, coil_task *t, int st, int nres) {
  lua_State *L = rt->L, *co = t->co;
  int ud, listeners;
  coil_task *w;

  if (st != LUA_OK) { /* the entry itself failed: out of memory, say */
    t->outcome = coil__is_cancelled(co, -1) ? OUTCOME_CANCELLED
                                           : OUTCOME_FAILED;
    nres = 1;
  }
  coil__push_task(L, t);
  ud = lua_gettop(L);
  t->nresults = nres;
  if (t->outcome != OUTCOME_OK) t->nresults = 1;

  if ((t->flags & TF_MAIN) && t->outcome == OUTCOME_OK && nres > 0) {
    int s = main_status(co, -nres);
    if (s >= 0) coil__request_status(rt, s);
  }

  if (t->nresults == 0) {
    lua_pushnil(L);
  } else if (t->nresults == 1) {
    lua_xmove(co, L, 1);
  } else {
    int i;
    lua_createtable(L, nres, 0);
    lua_xmove(co, L, nres);
    for (i = nres; i >= 1; i--) lua_rawseti(L, ud + 1, i);
  }
  lua_setiuservalue(L, ud, 1); /* the coroutine goes with it */
  lua_settop(co, 0);
  t->co = NULL;
  t->state = TASK_DONE;
  t->wait = WAIT_NONE;
  rt->live--;

  /* wake the tasks awaiting it, in the order they came */
  listeners = t->waiters != NULL;
  while ((w = t->waiters) != NULL) {
    unlink_waiter(w);
    coil__make_ready(rt, w);
  }
  if (t->ws) {
    listeners = 1;
    waitset_task_done(rt, t->ws, t->ws_index, t->outcome);
    t->ws = NULL;
  }

  if (push_extras(L, ud, 0)) {
    if (lua_getfield(L, -1, "on_done") == LUA_TTABLE) {
      lua_Integer i, n = luaL_len(L, -1);
      if (n > 0) listeners = 1;
      for (i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        call_on_done(rt, L, -1, ud);
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 2);
  }
  if (t->flags & TF_HAS_DONE_CB) {
    listeners = 1;
    run_done_cb(rt, t, ud);
  }

  if (t->outcome == OUTCOME_FAILED) {
    if (t->flags & TF_MAIN) {
      /* an uncaught error in the main task ends the run with status 1 */
      t->flags |= TF_ERR_SEEN;
      if (!rt->module) {
        push_error_text(L, ud);
        coil__message(rt, lua_tostring(L, -1));
        lua_pop(L, 1);
      }
      coil__request(rt, 1, 0, "error");
    } else if (listeners) {
      t->flags |= TF_ERR_SEEN;
    } else if (!(t->flags & TF_ERR_SEEN)) {
      unseen_sentinel *s;
      lua_getfield(L, LUA_REGISTRYINDEX, "coil.unseen");
      lua_pushvalue(L, ud);
      s = (unseen_sentinel *)lua_newuserdatauv(L, sizeof *s, 1);
      s->pending = 1;
      luaL_setmetatable(L, UNSEEN_MT);
      lua_pushvalue(L, ud);
      lua_setiuservalue(L, -2, 1);
      lua_rawset(L, -3);
      lua_pop(L, 1);
    }
  } else if (t->outcome == OUTCOME_OK && t->cancels > 0 &&
             !(t->flags & (TF_INTERNAL | TF_FORCED))) {
    coil__push_name(L, t);
    coil__messagef(rt,
                   "task '%s' swallowed its cancellation: it caught Cancelled "
                   "and returned normally",
                   lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  if ((t->flags & TF_MAIN) && t->outcome == OUTCOME_CANCELLED &&
      rt->phase == PHASE_RUN)
    coil__request_status(rt, 1);

  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchors_ref);
  luaL_unref(L, -1, t->anchor);
  t->anchor = LUA_NOREF;
  lua_settop(L, ud - 1);
  coil__shutdown_progress(rt);
}

/* done_cb of coil_spawn_call: extras.done_cb holds a light userdata to a
 * malloc'd {cb, ud}. */
typedef struct {
  coil_done_cb cb;
  void *ud;
} done_record;

static void run_done_cb(coil_runtime *rt, coil_task *t, int ud_idx) {
  lua_State *L = rt->L;
  done_record *rec;
  int top = lua_gettop(L), n;
  push_extras(L, ud_idx, 1);
  lua_getfield(L, -1, "done_cb");
  rec = (done_record *)lua_touserdata(L, -1);
  lua_settop(L, top);
  t->flags &= ~TF_HAS_DONE_CB;
  if (!rec) return;
  lua_getiuservalue(L, ud_idx, 1);
  if (t->outcome == OUTCOME_OK && t->nresults > 1) {
    int i;
    n = t->nresults;
    for (i = 1; i <= n; i++) lua_rawgeti(L, top + 1, i);
    lua_remove(L, top + 1);
  } else {
    n = 1;
    if (t->outcome == OUTCOME_OK && t->nresults == 0) {
      lua_pop(L, 1);
      n = 0;
    }
  }
  if (rec->cb)
    rec->cb(rt,
            t->outcome == OUTCOME_OK          ? 0
            : t->outcome == OUTCOME_CANCELLED ? COIL_ECANCELED
                                              : COIL_ELUA,
            n, rec->ud);
  lua_settop(L, top);
  free(rec);
}

/* A done callback for coil_spawn_call, allocated before the task is spawned
 * so that a failure leaves nothing half done. */
void *coil__done_record_new(coil_done_cb cb, void *ud) {
  done_record *rec = (done_record *)malloc(sizeof *rec);
  if (rec) {
    rec->cb = cb;
    rec->ud = ud;
  }
  return rec;
}

/* Attaches rec to the task on top of L's stack. */
void coil__attach_done_record(lua_State *L, void *rec) {
  coil_task *t = (coil_task *)lua_touserdata(L, -1);
  push_extras(L, -1, 1);
  lua_pushlightuserdata(L, rec);
  lua_setfield(L, -2, "done_cb");
  lua_pop(L, 1);
  t->flags |= TF_HAS_DONE_CB;
}

/* ---- the scheduler -------------------------------------------------------------- */

static void task_resume(coil_runtime *rt, coil_task *t) {
  lua_State *co = t->co;
  int nres = 0, st;
  t->state = TASK_RUNNING;
  rt->current = t;
  atomic_store(&rt->running_L, co);
  st = lua_resume(co, rt->L, t->nargs, &nres);
  atomic_store(&rt->running_L, NULL);
  rt->current = NULL;
  if (atomic_load(&rt->hook_armed)) coil__clear_hook(rt, co);
  if (st == LUA_YIELD) {
    if (t->state == TASK_RUNNING) {
      /* a bare coroutine.yield in a task: one turn of the loop */
      lua_pop(co, nres);
      t->nargs = 0;
      enqueue(rt, t);
    }
    return;
  }
  task_finish(rt, t, st, nres);
}

/* Runs the tasks that were ready when it started, in FIFO order; the ones
 * they make ready run on the next turn, after the loop polled for I/O. */
void coil__run_ready(coil_runtime *rt) {
  coil_task *last = rt->ready_tail, *t;
  if (!last) return;
  do {
    t = rt->ready_head;
    rt->ready_head = t->next_ready;
    if (!rt->ready_head) rt->ready_tail = NULL;
    t->next_ready = NULL;
    if (t->state == TASK_READY) {
      task_resume(rt, t);
      if (rt->mem_exceeded == 1) coil__check_memory(rt);
    }
  } while (t != last && rt->ready_head);
  if (!rt->ready_head) {
    uv_idle_stop(&rt->idle);
    coil__check_quiescent(rt);
  }
}

/* ---- forcing ----------------------------------------------------------------------- */

/* Closes t by force (step 5): its pending `<close>` variables run, then its
 * remaining defers, with every await failing at once. */
void coil__force(coil_runtime *rt, coil_task *t) {
  lua_State *L = rt->L, *co = t->co;
  int n;
  if (t->state == TASK_DONE) return;
  coil__task_unlink_waits(rt, t);
  t->flags |= TF_FORCED;
  t->flags &= ~(TF_THROW | TF_CANCEL_PENDING | TF_CANCEL_DEFERRED |
                TF_CANCEL_SOFT);
  rt->current = t;
  coil__closethread(co, L);
  lua_settop(co, 0);
  while ((n = pop_defer(L, t)) >= 0) {
    if (coil__pcall(L, n, 0) != LUA_OK) report_cleanup_error(L, t);
  }
  rt->current = NULL;
  t->outcome = OUTCOME_CANCELLED;
  coil__new_cancelled(co, "forced");
  task_finish(rt, t, LUA_OK, 1);
}

/* ---- coil.defer ----------------------------------------------------------------------- */

static int l_defer(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  coil_task *t = rt->current;
  int n = lua_gettop(L) - 1, i;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (!t) return luaL_error(L, "coil: defer must be called from inside a task");
  if (n == 0) {
    coil__push_task(L, t);
    if (lua_getiuservalue(L, -1, 2) == LUA_TNIL) { /* the first and only */
      lua_pushvalue(L, 1);
      lua_setiuservalue(L, -3, 2);
      return 0;
    }
    lua_pop(L, 2);
  }
  push_extras_of(L, t, 1);
  if (lua_getfield(L, -1, "defers") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "defers");
  }
  if (n == 0) {
    lua_pushvalue(L, 1);
  } else {
    lua_createtable(L, n + 1, 1);
    for (i = 1; i <= n + 1; i++) {
      lua_pushvalue(L, i);
      lua_rawseti(L, -2, i);
    }
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
  }
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  return 0;
}

/* ---- internals for the Lua half --------------------------------------------------- */

/* coil._park(): suspends the running task until coil._wake(task, ...) makes it
 * ready (returning those values) or it is cancelled (raising). The Lua code
 * that parked it is responsible for forgetting it if it raises. */
static int park_k(lua_State *L, int status, lua_KContext ctx) {
  coil_runtime *rt = RT_UP(L);
  (void)status;
  check_throw(L, rt->current);
  return lua_gettop(L) - (int)ctx;
}

static int l_park(lua_State *L) {
  coil_task *t = coil__await_check(L, "wait");
  int base = lua_gettop(L);
  return coil__suspend(L, t, WAIT_PARKED, park_k, base);
}

/* coil._wake(task, ...) -> bool: resumes a parked task with the values;
 * false if it is not parked (already woken or being cancelled). */
static int l_wake(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  coil_task *t = coil__check_task(L, 1);
  int n = lua_gettop(L) - 1;
  if (t->state != TASK_SUSPENDED || t->wait != WAIT_PARKED) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (!lua_checkstack(t->co, n + 1)) return luaL_error(L, "coil: stack overflow");
  lua_xmove(L, t->co, n);
  t->nargs = n;
  coil__make_ready(rt, t);
  lua_pushboolean(L, 1);
  return 1;
}

/* coil._uncancel(task): the caller consumed a Cancelled it asked for itself
 * (a timeout): one delivery less to warn about (asyncio's Task.uncancel). */
static int l_uncancel(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  if (t->cancels > 0) t->cancels--;
  return 0;
}

/* coil._withdraw(err) -> bool: the running task takes back its pending soft
 * cancellation err (a timeout whose work ended before it was delivered). */
static int l_withdraw(lua_State *L) {
  coil_task *t = RT_UP(L)->current;
  int mine = 0;
  if (t && (t->flags & TF_CANCEL_SOFT) && !(t->flags & TF_THROW) &&
      push_extras_of(L, t, 0)) {
    lua_getfield(L, -1, "pending");
    if (lua_rawequal(L, -1, 1)) {
      mine = 1;
      lua_pushnil(L);
      lua_setfield(L, -3, "pending");
      t->flags &= ~(TF_CANCEL_PENDING | TF_CANCEL_SOFT);
    }
  }
  lua_pushboolean(L, mine);
  return 1;
}

/* coil._cancel(task, err[, soft]) -> bool: cancel with a given error object;
 * a soft one (a timeout's) is replaced by a real one arriving before it is
 * delivered. */
static int l_cancel_with(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  int soft = lua_toboolean(L, 3);
  lua_settop(L, 2);
  lua_pushboolean(L, coil__cancel(L, t, 2, soft));
  return 1;
}

/* coil._state(task) -> "ready"|"running"|"suspended"|"done", wait kind */
static int l_state(lua_State *L) {
  static const char *const states[] = {"ready", "running", "suspended",
                                       "done"};
  static const char *const waits[] = {"", "sleep", "await", "shield", "wait"};
  coil_task *t = coil__check_task(L, 1);
  lua_pushstring(L, states[t->state]);
  lua_pushstring(L, waits[t->wait]);
  lua_pushinteger(L, (lua_Integer)t->id);
  lua_pushnumber(L, (double)t->started / 1000.0);
  return 4;
}

/* coil._traceback(task) -> string: where the task waits. */
static int l_task_traceback(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  if (t->co) luaL_traceback(L, t->co, NULL, 0);
  else lua_pushliteral(L, "");
  return 1;
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

static int l_on_error(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "coil.on_error");
  return 0;
}

/* ---- opening ------------------------------------------------------------------------- */

static const luaL_Reg task_methods[] = {
    {"await", task_await},
    {"cancel", task_cancel},
    {"done", task_done},
    {"cancelled", task_cancelled},
    {"result", task_result},
    {"error", task_error},
    {"name", task_name},
    {"on_done", task_on_done},
    {"_remove_on_done", task_remove_on_done},
    {NULL, NULL}};

static const luaL_Reg core_funcs[] = {
    {"spawn", l_spawn},
    {"current", l_current},
    {"shield", l_shield},
    {"defer", l_defer},
    {"is_cancelled", l_is_cancelled},
    {"is_timeout", l_is_timeout},
    {"is_interrupted", l_is_interrupted},
    {"tasks", l_tasks},
    {"on_error", l_on_error},
    {"_park", l_park},
    {"_wake", l_wake},
    {"_uncancel", l_uncancel},
    {"_withdraw", l_withdraw},
    {"_waitset", l_waitset},
    {"_waitset_notify", l_waitset_notify},
    {"_waitset_wait", l_waitset_wait},
    {"_waitset_state", l_waitset_state},
    {"_waitset_close", l_waitset_close},
    {"_cancel", l_cancel_with},
    {"_state", l_state},
    {"_traceback", l_task_traceback},
    {NULL, NULL}};

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

/* Adds the task functions to the coil table on top of L's stack. */
void coil__task_open(lua_State *L, coil_runtime *rt) {
  /* task metatable */
  luaL_newmetatable(L, TASK_MT);
  lua_pushliteral(L, TASK_MT);
  lua_setfield(L, -2, "__name");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &task_mt_key);
  lua_newtable(L);
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, task_methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, task_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  luaL_newmetatable(L, WAITSET_MT);
  lua_pushcfunction(L, waitset_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);

  luaL_newmetatable(L, UNSEEN_MT);
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, unseen_gc, 1);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "coil.unseen");

  /* error classes: coil.Cancelled / coil.Timeout, callable */
  add_error_class(L, CANCELLED_MT, "Cancelled", cancelled_tostring,
                  cancelled_new);
  add_error_class(L, TIMEOUT_MT, "Timeout", timeout_tostring, timeout_new);
  add_error_class(L, INTERRUPTED_MT, "Interrupted", interrupted_tostring,
                  interrupted_new);

  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, core_funcs, 1);

  /* the live-task table and the shared coroutine entry */
  lua_newtable(L);
  rt->anchors_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, rt);
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, entry_msgh, 1);
  lua_pushcclosure(L, task_entry, 2);
  rt->entry_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}
