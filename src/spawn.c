/*
 * A task's life: spawn, the coroutine's main function, resume and the drain
 * of the ready queue, finish (wake whoever waits), defers, await/result, and
 * closing by force.
 *
 * The coroutine's main function is task_entry: it calls the task's function
 * in a yieldable protected call (so `<close>` handlers and cleanup may
 * await), then runs the coil.defer functions, newest first, each protected.
 * Finishing only records: a failed main task records a shutdown request,
 * which the step function (shutdown.c) acts on after the drain.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "coil_internal.h"

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
    coil__push_extras(L, -1, 1);
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
  if (!(t->flags & TF_DEFERS)) return -1; /* most tasks: no lookup */
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

/* Reports an error raised by a cleanup function (Cancelled is not: a
 * Cancelled that left through a deferred function, os.exit's in one say,
 * was not swallowed by the task). */
static void report_cleanup_error(lua_State *L, coil_task *t) {
  if (coil__is_cancelled(L, -1)) {
    if (t->cancels > 0) t->cancels--;
  } else {
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
    else
      t->outcome =
          coil__is_cancelled(L, -1) ? OUTCOME_CANCELLED : OUTCOME_FAILED;
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

/* The live-task table is a dense list, anchors[1..rt->anchored]: a task
 * ending moves the last one into its slot. (Cheaper than luaL_ref/unref;
 * nothing ends a task while coil__live_tasks or the shutdown's step 3 walk
 * the table.) anchor() anchors the task on top of L's stack. */
static void anchor(lua_State *L, coil_runtime *rt, coil_task *t) {
  int slot = rt->anchored + 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchors_ref);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, slot); /* may raise (memory): nothing recorded yet */
  lua_pop(L, 1);
  t->anchor = slot;
  rt->anchored = slot;
}

static void unanchor(lua_State *L, coil_runtime *rt, coil_task *t) {
  int last = rt->anchored;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchors_ref);
  if (t->anchor != last) {
    lua_rawgeti(L, -1, last);
    ((coil_task *)lua_touserdata(L, -1))->anchor = t->anchor;
    lua_rawseti(L, -2, t->anchor);
  }
  lua_pushnil(L);
  lua_rawseti(L, -2, last);
  lua_pop(L, 1);
  rt->anchored = last - 1;
  t->anchor = LUA_NOREF;
}

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
  lua_pushvalue(rt->keep, 2); /* the task metatable */
  lua_xmove(rt->keep, L, 1);
  lua_setmetatable(L, -2);
  if (rt->co_pool_n > 0) { /* a finished task's coroutine (pool_can_keep) */
    lua_xmove(rt->keep, L, 1);
    co = lua_tothread(L, -1);
    rt->co_pool_n--;
  } else {
    co = lua_newthread(L);
  }
  lua_setiuservalue(L, -2, 1);
  lua_insert(L, fidx); /* task, fn, args */
  if (!lua_checkstack(co, nargs + 2)) luaL_error(L, "coil: too many arguments");
  lua_rawgeti(co, LUA_REGISTRYINDEX, rt->entry_ref);
  lua_xmove(L, co, nargs + 1);

  t->co = co;
  t->id = ++rt->next_id;
  t->started = uv_now(rt->loop);
  t->nargs = nargs + 1;
  anchor(L, rt, t);
  rt->live++;

  if (rt->run.phase >= PHASE_CANCEL) {
    /* Shutdown has cancelled everyone: so that it converges, a task born
     * now is born cancelled and its first await raises. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->run.cancel_ref);
    coil__push_extras(L, -2, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, "pending");
    lua_pop(L, 1);
    t->flags |= TF_CANCEL_PENDING | TF_SHUTDOWN_CANCELLED;
  }
  coil__make_ready(rt, t);
  return t;
}

static int l_spawn(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  /* a callable object runs like a function (lua_pcallk calls __call), as
   * call_later, gather and race already accept it */
  if (lua_type(L, 1) != LUA_TFUNCTION) {
    if (luaL_getmetafield(L, 1, "__call") == LUA_TNIL)
      coil__arg_error(L, 1, "spawn", "a function");
    else lua_pop(L, 1);
  }
  if (rt->run.phase >= PHASE_CLOSING)
    return luaL_error(L, "coil: the runtime is closing; no task can start");
  coil__spawn(L, rt, lua_gettop(L) - 1);
  return 1;
}

/* ---- awaiting a task ------------------------------------------------------ */

/* Pushes the results of the done task at idx, or raises its error. */
static int push_outcome(lua_State *L, int idx, coil_task *t) {
  coil__mark_seen(L, idx);
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

static int await_k(lua_State *L, int status, lua_KContext ctx) {
  coil_runtime *rt = RT_UP(L);
  (void)status;
  (void)ctx;
  coil__check_throw(L, rt->current);
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
  coil__link_waiter(target, t);
  return coil__suspend(L, t, shield ? WAIT_SHIELD : WAIT_TASK, await_k, 0);
}

static int task_await(lua_State *L) { return await_task(L, 0, "await"); }
static int l_shield(lua_State *L) { return await_task(L, 1, "shield"); }

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
  coil__mark_seen(L, 1);
  lua_getiuservalue(L, 1, 1);
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
  coil__check_function(L, 2, "task:on_done");
  lua_settop(L, 2);
  if (t->state == TASK_DONE) {
    coil__mark_seen(L, 1);
    call_on_done(RT_UP(L), L, 2, 1);
    return 0;
  }
  coil__push_extras(L, 1, 1);
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

/* The exit status a value asks for (an integer, or true = 0 and false =
 * 1), or -1 for none. The one place a value becomes an exit status. */
int coil__status_of(lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) return (int)(lua_tointeger(L, idx) & 0xff);
  if (lua_isboolean(L, idx)) return lua_toboolean(L, idx) ? 0 : 1;
  return -1;
}

static void run_done_cb(coil_runtime *rt, coil_task *t, int ud_idx);

/* How many finished coroutines wait for a new task: enough for a server's
 * burst of short tasks, little memory (about 1 KiB each) when idle. Under
 * a memory limit, at most one per 64 KiB of it: kept coroutines are memory
 * the collector cannot take back. */
#define CO_POOL_MAX 1024
#define CO_POOL_LIMIT_SHARE 65536

/* Whether to keep the coroutine of a task that just ended, its stack
 * emptied, for the next spawn: when nothing can tell it was reused
 * (docs/internals.md): its main function returned (no error left it half
 * unwound, no `<close>` is pending), no Lua code ever got it as a value
 * (coroutine.running() sets TF_CO_SEEN; coil made the state, so no saved
 * stock coroutine.running exists), and no debug hook is set on it. */
static int pool_can_keep(coil_runtime *rt, coil_task *t, lua_State *co,
                         int st) {
  /* lua_checkstack makes room for it and the free slot coil__push_task
   * uses; it may collect garbage (out of memory): co must still be the
   * task's user value then */
  return st == LUA_OK && rt->co_pool_n < CO_POOL_MAX && rt->owns_state &&
         !(rt->mem_limit &&
           (size_t)rt->co_pool_n >= rt->mem_limit / CO_POOL_LIMIT_SHARE) &&
         !(t->flags & (TF_CO_SEEN | TF_FORCED)) && lua_gethook(co) == NULL &&
         lua_status(co) == LUA_OK && lua_checkstack(rt->keep, 2);
}

/* Once co's stack is empty (nothing in between may allocate). */
static void pool_keep(coil_runtime *rt, lua_State *co) {
  lua_pushthread(co);
  lua_xmove(co, rt->keep, 1);
  rt->co_pool_n++;
}

/* Records how t ended and tells everyone who waits. L = rt->L. */
static void task_finish(coil_runtime *rt, coil_task *t, int st, int nres) {
  lua_State *L = rt->L, *co = t->co;
  int ud, listeners, keep;
  coil_task *w;

  if (st != LUA_OK) { /* the entry itself failed: out of memory, say */
    t->outcome =
        coil__is_cancelled(co, -1) ? OUTCOME_CANCELLED : OUTCOME_FAILED;
    nres = 1;
  }
  coil__push_task(L, t);
  ud = lua_gettop(L);
  t->nresults = nres;
  if (t->outcome != OUTCOME_OK) t->nresults = 1;

  if ((t->flags & TF_MAIN) && t->outcome == OUTCOME_OK && nres > 0) {
    int s = coil__status_of(co, -nres);
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
  keep = pool_can_keep(rt, t, co, st);
  lua_setiuservalue(L, ud, 1); /* the coroutine goes with it */
  lua_settop(co, 0);
  if (keep) pool_keep(rt, co);
  t->co = NULL;
  t->state = TASK_DONE;
  t->wait = WAIT_NONE;
  rt->live--;

  /* wake the tasks awaiting it, in the order they came */
  listeners = t->waiters != NULL;
  while ((w = t->waiters) != NULL) {
    coil__unlink_waiter(w);
    coil__make_ready(rt, w);
  }
  if (t->ws) {
    listeners = 1;
    coil__waitset_linked_done(rt, t);
  }

  if ((t->flags & TF_EXTRAS) && coil__push_extras(L, ud, 0)) {
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
        coil__push_error_text(L, ud);
        coil__message(rt, lua_tostring(L, -1));
        lua_pop(L, 1);
      }
      coil__request(rt, 1, 0, "error");
    } else if (listeners) {
      t->flags |= TF_ERR_SEEN;
    } else if (!(t->flags & TF_ERR_SEEN)) {
      coil__record_unseen(L, ud);
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
      rt->run.phase == PHASE_RUN)
    coil__request_status(rt, 1);

  unanchor(L, rt, t);
  lua_settop(L, ud - 1);
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
  coil__push_extras(L, ud_idx, 1);
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
  coil__push_extras(L, -1, 1);
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
  atomic_store(&rt->as.running_L, co);
  errno = 0; /* the interrupt hook reads EINTR as "a C call was cut short" */
  st = lua_resume(co, rt->L, t->nargs, &nres);
  atomic_store(&rt->as.running_L, NULL);
  rt->current = NULL;
  if (atomic_load(&rt->as.hook_armed)) coil__clear_hook(rt, co);
  if (st == LUA_YIELD) {
    if (t->state == TASK_RUNNING) {
      /* a bare coroutine.yield in a task: one turn of the loop */
      lua_pop(co, nres);
      t->nargs = 0;
      coil__make_ready(rt, t);
    }
    return;
  }
  task_finish(rt, t, st, nres);
}

/* Runs the tasks that were ready when it started, in FIFO order; the ones
 * they make ready run on the next turn, after the loop polled for I/O.
 * Returns 1 when it ran something and nothing is ready any more. */
int coil__run_ready(coil_runtime *rt) {
  coil_task *last = rt->ready_tail, *t;
  if (!last) return 0;
  do {
    t = rt->ready_head;
    rt->ready_head = t->next_ready;
    if (!rt->ready_head) rt->ready_tail = NULL;
    t->next_ready = NULL;
    if (t->state == TASK_READY) {
      task_resume(rt, t);
      if (rt->run.mem_exceeded == 1) coil__check_memory(rt);
    }
  } while (t != last && rt->ready_head);
  if (rt->ready_head) return 0;
  uv_idle_stop(&rt->idle);
  return 1;
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
  t->flags &=
      ~(TF_THROW | TF_CANCEL_PENDING | TF_CANCEL_DEFERRED | TF_CANCEL_SOFT);
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
  coil__check_function(L, 1, "defer");
  if (!t) t = coil__inside_task(L, "defer");
  t->flags |= TF_DEFERS;
  if (n == 0) {
    coil__push_task(L, t);
    if (lua_getiuservalue(L, -1, 2) == LUA_TNIL) { /* the first and only */
      lua_pushvalue(L, 1);
      lua_setiuservalue(L, -3, 2);
      return 0;
    }
    lua_pop(L, 2);
  }
  coil__push_extras_of(L, t, 1);
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

/* ---- opening ------------------------------------------------------------- */

static const luaL_Reg spawn_methods[] = {{"await", task_await},
                                         {"result", task_result},
                                         {"error", task_error},
                                         {"on_done", task_on_done},
                                         {NULL, NULL}};

static const luaL_Reg spawn_funcs[] = {
    {"spawn", l_spawn}, {"shield", l_shield}, {"defer", l_defer}, {NULL, NULL}};

/* Adds spawn, await and the rest to the coil table on top of L's stack, and
 * makes the shared coroutine entry. */
void coil__spawn_open(lua_State *L, coil_runtime *rt) {
  coil__task_methods(L, rt, spawn_methods);
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, spawn_funcs, 1);
  lua_pushlightuserdata(L, rt);
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, entry_msgh, 1);
  lua_pushcclosure(L, task_entry, 2);
  rt->entry_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}
