/*
 * The shutdown (SPEC §3) and the drive of a run. Every layer below may
 * record a request (coil__request, rt->run's *_wanted fields); only
 * coil__shutdown_step moves rt->run.phase, the way libuv's uv_run shows
 * every phase of a loop turn in one function:
 *
 *   RUN ──request──> DRAIN ──cancel_wanted──> CANCEL ──live == 0──> CLOSING
 *                     (stopping(), hooks)      (grace, force)   (handles) ──> CLOSED
 *
 * The step runs after every drain of the ready queue (on_check), after a
 * wake-up (on_async), after a luv callback, from the grace timer and from
 * coil_free; coil__drive is the one loop that drives a run, for coil_run
 * and coil.run alike. This file also owns coil's own handles.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <luv/lhandle.h>
#include <luv/luv.h>

#include "coil_internal.h"

/* ---- coil's own handles --------------------------------------------------- */

/* The one list of coil's own handles, in closing order (libuv runs close
 * callbacks newest first, so the last ones here are closed last). */
static int own_handles(coil_runtime *rt, uv_handle_t **out) {
  int n = 0;
  out[n++] = (uv_handle_t *)&rt->async;
  out[n++] = (uv_handle_t *)&rt->idle;
  out[n++] = (uv_handle_t *)&rt->check;
  out[n++] = (uv_handle_t *)&rt->timer;
  out[n++] = (uv_handle_t *)&rt->grace_timer;
  if (rt->usr1_started) out[n++] = (uv_handle_t *)&rt->usr1;
  if (rt->watchdog_started) out[n++] = (uv_handle_t *)&rt->watchdog;
  return n;
}

static void on_check(uv_check_t *h);
static void on_async(uv_async_t *h);

/* Opens coil's own handles on rt->loop (again, after a shutdown closed them,
 * for coil.run in a module). */
void coil__open_handles(coil_runtime *rt) {
  uv_idle_init(rt->loop, &rt->idle);
  uv_check_init(rt->loop, &rt->check);
  uv_timer_init(rt->loop, &rt->timer);
  uv_timer_init(rt->loop, &rt->grace_timer);
  uv_async_init(rt->loop, &rt->async, on_async);
  rt->idle.data = rt->check.data = rt->timer.data = rt->grace_timer.data =
      rt->async.data = rt;
  uv_check_start(&rt->check, on_check);
  uv_unref((uv_handle_t *)&rt->check);
  /* On its own loop the runtime ends when nothing is left; on a host's loop
   * it is a resource, like an open handle, until it is shut down. */
  if (rt->owns_loop || rt->module) uv_unref((uv_handle_t *)&rt->async);
  uv_unref((uv_handle_t *)&rt->grace_timer);
  rt->timer_due = 0;
  atomic_store(&rt->as.wake_ok, 1);
  coil__posts_kick(rt);
}

/* The module's Lua state is closing: close whichever of coil's handles are
 * still open, each with cb; returns how many. */
int coil__close_module_handles(coil_runtime *rt, uv_close_cb cb) {
  uv_handle_t *own[7];
  int i, n = own_handles(rt, own), closing = 0;
  atomic_store(&rt->as.wake_ok, 0);
  for (i = 0; i < n; i++) {
    /* after a shutdown only the signal handle outlived the run */
    if ((rt->run.phase == PHASE_CLOSED && own[i] != (uv_handle_t *)&rt->usr1) ||
        uv_is_closing(own[i]))
      continue;
    closing++;
    uv_close(own[i], cb);
  }
  return closing;
}

/* ---- one run ---------------------------------------------------------------- */

/* Clears everything of the last run, C and Lua side (the stopping() event,
 * the on_shutdown hooks), so that nothing leaks into the next one. */
void coil__run_reset(coil_runtime *rt) {
  int i;
  if (rt->run.cancel_ref > 0)
    luaL_unref(rt->L, LUA_REGISTRYINDEX, rt->run.cancel_ref);
  memset(&rt->run, 0, sizeof rt->run); /* phase RUN */
  atomic_store(&rt->teardown_stop, 0);
  atomic_store(&rt->as.shutdown_claimed, 0);
  atomic_store(&rt->as.shutdown_requested, 0);
  atomic_store(&rt->as.count, 0);
  atomic_store(&rt->as.first, 0);
  atomic_store(&rt->as.handled, 0);
  for (i = 0; i < 32; i++) atomic_store(&rt->as.pending[i], 0);
  if (rt->L) {
    int hooks = lua_getfield(rt->L, LUA_REGISTRYINDEX, "coil.hooks");
    lua_pop(rt->L, 1);
    if (hooks == LUA_TTABLE) coil__call_hook(rt, "new_run", 0, 0);
  }
}

/* luv refuses a nested uv.run while its context says the loop runs. */
void coil__luv_running(coil_runtime *rt, int running) {
  if (rt->L) luv_context(rt->L)->mode = running ? UV_RUN_DEFAULT : -1;
}

/* ---- the steps ---------------------------------------------------------------- */

static void on_grace(uv_timer_t *timer) {
  coil_runtime *rt = (coil_runtime *)timer->data;
  if (!rt->run.force_wanted) {
    rt->run.force_wanted = 1;
    rt->run.force_reason = "grace";
  }
  coil__shutdown_step(rt);
}

static void ensure_cancel_object(coil_runtime *rt, const char *reason) {
  if (rt->run.cancel_ref == 0) {
    coil__new_cancelled(rt->L, reason);
    rt->run.cancel_ref = luaL_ref(rt->L, LUA_REGISTRYINDEX);
  }
}

/* Entering step 2 (coil__request announced it): arm the grace, spawn the
 * driver task that sets stopping() and runs the on_shutdown hooks (they
 * may await). */
static void begin_drain(coil_runtime *rt) {
  lua_State *L = rt->L;
  coil_run_state *run = &rt->run;
  const char *reason = run->request_reason ? run->request_reason : "shutdown";
  coil_task *driver;
  uv_update_time(rt->loop);
  run->shutdown_started = uv_now(rt->loop);
  luaL_checkstack(L, 4, NULL);
  ensure_cancel_object(rt, reason);
  if (rt->grace >= 0) {
    /* the loop's cached time may be stale (a long drain, a busy task
     * interrupted by the hook): the grace counts from now */
    uv_update_time(rt->loop);
    uv_timer_start(&rt->grace_timer, on_grace,
                   (uint64_t)(rt->grace * 1000.0 + 0.5), 0);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "coil.hooks");
  lua_getfield(L, -1, "drive");
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    run->cancel_wanted = 1;
    return;
  }
  driver = coil__spawn(L, rt, 0);
  driver->flags |= TF_INTERNAL;
  lua_pop(L, 1);
}

/* Step 3: cancel every live task but the one calling (the driver). The
 * sleepers go first, in the order they would wake, straight from the timer;
 * the live-task table is walked only if that left someone out (tasks that
 * wait for something else, or that step 3 already reached). */
static void cancel_every_task(coil_runtime *rt) {
  lua_State *L = rt->L;
  int top = lua_gettop(L);
  size_t n, i, reached = rt->current ? 1 : 0;
  coil_task **sleepers = coil__sleepers(rt, &n);
  int slot;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->run.cancel_ref);
  for (i = 0; i < n; i++) {
    coil_task *t = sleepers[i];
    if (!(t->flags & TF_SHUTDOWN_CANCELLED)) {
      t->flags |= TF_SHUTDOWN_CANCELLED;
      coil__cancel(L, t, top + 1, 0);
      reached++;
    }
  }
  free(sleepers);
  if (reached == rt->live) { /* each one is a different live task */
    lua_settop(L, top);
    return;
  }
  /* the live-task table is the dense list 1..rt->anchored (spawn.c); no
   * task ends meanwhile, and one a finalizer spawns is born reached */
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchors_ref);
  for (slot = 1; slot <= rt->anchored; slot++) {
    coil_task *t;
    lua_rawgeti(L, top + 2, slot);
    t = (coil_task *)lua_touserdata(L, -1); /* anchored: stays valid */
    lua_pop(L, 1);
    if (t && t != rt->current && !(t->flags & TF_SHUTDOWN_CANCELLED)) {
      t->flags |= TF_SHUTDOWN_CANCELLED;
      coil__cancel(L, t, top + 1, 0);
    }
  }
  lua_settop(L, top);
}

/* Drops the ready queue at once (forced tasks do not run again). */
static void drop_ready(coil_runtime *rt) {
  coil_task *t;
  while ((t = rt->ready_head) != NULL) {
    rt->ready_head = t->next_ready;
    t->next_ready = NULL;
  }
  rt->ready_tail = NULL;
}

/* Step 5: closes every live task by force, naming each with where it was
 * stuck (unless why is NULL: a host freeing a runtime). */
static void force_all(coil_runtime *rt, const char *why) {
  lua_State *L = rt->L;
  coil_task *t;
  int round;
  if (rt->run.forced || !L) return;
  rt->run.forced = 1;
  uv_timer_stop(&rt->grace_timer);
  drop_ready(rt);
  uv_idle_stop(&rt->idle);
  /* cleanup of forced tasks may spawn more; they are born cancelled and
   * forced in the next round */
  for (round = 0; round < 8 && rt->live > 0; round++) {
    size_t n, i;
    coil_task **all = coil__live_tasks(rt, &n);
    double secs =
        (double)(uv_now(rt->loop) - rt->run.shutdown_started) / 1000.0;
    for (i = 0; i < n; i++) {
      t = all[i];
      if (t->state == TASK_DONE) continue;
      if (why && round == 0 && !(t->flags & TF_INTERNAL)) {
        char secsbuf[32];
        snprintf(secsbuf, sizeof secsbuf, "%.1f", secs);
        coil__push_name(L, t);
        lua_pushfstring(L,
                        "task '%s' ignored cancellation for %s s; closed by "
                        "force at:",
                        lua_tostring(L, -1), secsbuf);
        if (t->co) coil__task_traceback(L, t, lua_tostring(L, -1));
        else lua_pushvalue(L, -1);
        coil__message(rt, lua_tostring(L, -1));
        lua_pop(L, 3);
      }
      coil__force(rt, t);
    }
    free(all);
    drop_ready(rt); /* tasks spawned meanwhile */
  }
}

static void on_linger(uv_timer_t *timer) {
  coil_runtime *rt = (coil_runtime *)timer->data;
  if (!rt->quiet)
    coil__message(rt, "a request still in flight did not finish; not "
                      "waiting for it any longer");
  rt->run.abandoned = 1;
  uv_stop(rt->loop);
}

static void on_own_closed(uv_handle_t *h) {
  coil_runtime *rt = (coil_runtime *)h->data;
  if (--rt->run.closing_count > 0) return;
  coil__shutdown_step(rt);
}

/* Step 6: closes coil's own handles and then, through the Lua half, every
 * handle the script opened (libuv runs close callbacks newest first, so
 * coil's own come last and on_closed sees everything closed). */
static void close_handles(coil_runtime *rt) {
  uv_handle_t *own[7];
  int i, n = own_handles(rt, own);
  rt->run.handles_closing = 1;
  atomic_store(&rt->as.wake_ok, 0);
  for (i = 0; i < n; i++) {
    if (own[i] == (uv_handle_t *)&rt->grace_timer &&
        (rt->owns_loop || rt->module)) {
      /* The grace timer now bounds the wait for what the loop still runs:
       * a request stuck in a threadpool (a read from a FIFO, say) must not
       * keep a shutting-down process alive. The drive closes it last. */
      uv_update_time(rt->loop);
      uv_timer_start(&rt->grace_timer, on_linger,
                     (uint64_t)((rt->grace > 1 ? rt->grace : 1) * 1000.0), 0);
      continue;
    }
    if (uv_is_closing(own[i])) continue;
    rt->run.closing_count++;
    uv_close(own[i], on_own_closed);
  }
  if (rt->usr1_started) coil__signals_keep_usr1(rt);
  rt->usr1_started = 0;
  rt->watchdog_started = 0;
  if (rt->L) coil__call_hook(rt, "close_handles", 0, 0);
}

/* The run is over: tell the host (on_closed), which may free the runtime
 * from the callback; that is done here, after it returned. */
static void notify_closed(coil_runtime *rt) {
  if (!rt->run.closed_notified) {
    rt->run.closed_notified = 1;
    if (rt->on_closed && !rt->free_pending) {
      rt->in_on_closed = 1;
      rt->on_closed(rt, rt->run.exit_status, rt->ud);
      rt->in_on_closed = 0;
    }
  }
  if (rt->free_pending) coil__teardown(rt);
}

/* Stops the last report's Lua code (on_error handlers) once an interrupt
 * or coil_shutdown came during the teardown. Set by the loop's own thread. */
static void teardown_hook(lua_State *L, lua_Debug *ar) {
  coil_runtime *rt = coil__rt(L);
  (void)ar;
  if (rt && (atomic_load(&rt->teardown_stop) ||
             atomic_load(&rt->as.handled) < atomic_load(&rt->as.count)))
    luaL_error(L, "coil: the teardown was interrupted");
}

static int report_unseen_protected(lua_State *L) {
  coil__report_unseen_all(coil__rt(L));
  return 0;
}

/* The last report of errors nobody saw, once the run is over: Lua code
 * (on_error) that stays under memory_limit (coil__alloc sees
 * rt->teardown), stoppable by an interrupt or coil_shutdown, and protected,
 * since under the limit coil's own bookkeeping in it may fail too. */
void coil__final_report(coil_runtime *rt) {
  lua_State *L = rt->L;
  if (!L) return;
  atomic_store(&rt->teardown, 1);
  lua_sethook(L, teardown_hook, LUA_MASKCOUNT, 1000);
  lua_pushcfunction(L, report_unseen_protected);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) lua_pop(L, 1);
  lua_sethook(L, NULL, 0, 0);
  atomic_store(&rt->teardown, 0);
  /* the host had to stop it: its status, unless the run had one */
  if (atomic_load(&rt->teardown_stop) && !rt->run.exit_set) {
    rt->run.exit_set = 1;
    rt->run.exit_status = atomic_load(&rt->as.shutdown_request_status);
  }
}

/* Frees a runtime whose run is over (coil_free, or a free that had to wait
 * for the closes): what is left to report, the Lua state, the own loop.
 * Signals are watched until the very end. */
typedef struct {
  coil_runtime *rt;
  uv_handle_t *linger; /* the settling's own timer */
  int closing;
  /* From the last finalizer, every handle found was made during lua_close:
   * its userdata has no __gc (Lua registers none then), so the settling
   * frees it. Those a finalizer closed itself are freed once closed. */
  int orphans;
  uv_handle_t *closed_by_lua[64];
  int n_closed_by_lua;
} foreign_walk;

/* luv's memory for a handle (luv/lhandle.h): both parts are malloc'd */
static void free_luv_handle(uv_handle_t *h) {
  luv_handle_t *data = (luv_handle_t *)h->data;
  if (data) {
    if (data->extra_gc) data->extra_gc(data->extra);
    free(data);
  }
  free(h);
}

static void close_foreign(uv_handle_t *h, void *arg) {
  foreign_walk *w = (foreign_walk *)arg;
  uv_handle_t *own[8];
  int i, n = own_handles(w->rt, own);
  if (h == w->linger) return;
  for (i = 0; i < n; i++)
    if (own[i] == h) return;
  /* a handle whose close has finished is no longer on the loop's list */
  w->closing++;
  if (!uv_is_closing(h)) {
    uv_close(h, w->orphans ? free_luv_handle : NULL);
    return;
  }
  if (!w->orphans) return;
  for (i = 0; i < w->n_closed_by_lua; i++)
    if (w->closed_by_lua[i] == h) return;
  /* more than fit are left to leak, not freed twice */
  if (w->n_closed_by_lua < 64) w->closed_by_lua[w->n_closed_by_lua++] = h;
}

/* Before the Lua state closes on coil's own loop, and again from its last
 * finalizer, no luv handle may be open or closing and no request in
 * flight: luv's __gc closes an open handle with a callback that uses the
 * (then closed) state and frees a closing one that libuv still holds, and a
 * request's callback would run in a freed state. Every handle not coil's
 * own is closed, and the loop turns until libuv is done with them and with
 * the requests (the last report's on_error, or a finalizer, may have
 * started some), at most the grace: a request stuck in the threadpool is
 * then given up, as at step 6. */
static void settle_foreign(coil_runtime *rt, int orphans) {
  uv_loop_t *loop = rt->loop;
  uv_timer_t linger;
  foreign_walk w;
  int i, timing = 0, rounds = 0;
  w.rt = rt;
  w.linger = (uv_handle_t *)&linger;
  w.orphans = orphans;
  w.n_closed_by_lua = 0;
  while (!rt->run.abandoned && ++rounds < 100000) {
    w.closing = 0;
    uv_walk(loop, close_foreign, &w);
    if (!w.closing && loop->active_reqs.count == 0) break;
    if (loop->active_reqs.count > 0 && !timing) {
      uv_timer_init(loop, &linger);
      linger.data = rt;
      uv_update_time(loop);
      uv_timer_start(&linger, on_linger,
                     (uint64_t)((rt->grace > 1 ? rt->grace : 1) * 1000.0), 0);
      timing = 1;
    }
    uv_run(loop, w.closing ? UV_RUN_NOWAIT : UV_RUN_ONCE);
  }
  if (timing) {
    uv_close((uv_handle_t *)&linger, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
  }
  /* their closes ran luv's callback, which does not free */
  if (!rt->run.abandoned)
    for (i = 0; i < w.n_closed_by_lua; i++) free_luv_handle(w.closed_by_lua[i]);
}

/* Runtimes of this process that gave up on a request still in flight. */
static atomic_int abandoned_runs;

int coil_abandoned_requests(void) { return atomic_load(&abandoned_runs); }

/* The finalizer lua_close runs last (its object is the state's first with
 * one): what the other finalizers started on the loop ends while every
 * object still exists. */
static int last_finalizer(lua_State *L) {
  coil_runtime *rt = (coil_runtime *)lua_touserdata(L, lua_upvalueindex(1));
  if (rt->owns_loop == 1) settle_foreign(rt, 1);
  return 0;
}

void coil__install_last_finalizer(lua_State *L, coil_runtime *rt) {
  static const char key = 0;
  lua_newuserdatauv(L, 0, 0);
  lua_createtable(L, 0, 1);
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, last_finalizer, 1);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key);
}

void coil__teardown(coil_runtime *rt) {
  coil__posts_close(rt); /* before the Lua state goes: fn may use it */
  if (rt->owns_loop == 2) coil__threads_abandon(rt); /* exit cannot join them */
  if (!rt->lua_closed && rt->L) {
    coil__final_report(rt);
    if (rt->owns_loop == 1) settle_foreign(rt, 0);
    /* __gc at lua_close runs without hooks (Lua 5.4): memory_limit holds,
     * and once a watchdog calls coil_shutdown no more memory at all */
    atomic_store(&rt->teardown, 1);
    lua_close(rt->L);
    rt->L = NULL;
    rt->lua_closed = 1;
    atomic_store(&rt->teardown, 0);
    if (atomic_load(&rt->teardown_stop) && !rt->quiet)
      coil__message(rt, "coil_shutdown cut the teardown short: Lua code "
                        "still running then (a __gc, an on_error handler) "
                        "was stopped");
  }
  coil__heap_free(rt);
  /* a request given up on may still write into its (Lua) memory */
  if (rt->lua_closed && !rt->run.abandoned) coil__pool_free(&rt->pool);
  fflush(stdout);
  fflush(stderr);
  if (rt->run.abandoned) {
    /* the loop cannot close with a request still in flight; the process
     * is about to exit (coil_abandoned_requests), and that request with it */
    if (rt->owns_loop == 1) {
      rt->owns_loop = 2;
      coil__threads_abandon(rt); /* a finalizer's, then */
    }
    atomic_fetch_add(&abandoned_runs, 1);
  }
  if (rt->owns_loop == 1) {
    /* the grace timer bounded the teardown: it goes last */
    if (!uv_is_closing((uv_handle_t *)&rt->grace_timer))
      uv_close((uv_handle_t *)&rt->grace_timer, NULL);
    while (uv_loop_close(rt->loop) == UV_EBUSY) uv_run(rt->loop, UV_RUN_ONCE);
  }
  coil__signals_uninstall(rt);
  free(rt);
}

/* Advances the §3 sequence as far as what was requested and the state of
 * the tasks allow. The only writer of rt->run.phase. Re-entrant calls (Lua
 * code run by a step asking for more) return; the outer call goes on. */
/* The common case, after every drain of the ready queue: the run goes on
 * and nothing was asked of the step (tested before calling it, where it
 * runs on every loop turn). */
static inline int nothing_asked(const coil_run_state *run) {
  return run->phase == PHASE_RUN && !run->requested && !run->force_wanted &&
         !run->close_wanted;
}

void coil__shutdown_step(coil_runtime *rt) {
  coil_run_state *run = &rt->run;
  if (nothing_asked(run)) return;
  if (run->stepping) return;
  run->stepping = 1;
  for (;;) {
    int from = run->phase;
    switch (run->phase) {
    case PHASE_RUN:
      if (run->force_wanted && !run->requested) {
        /* a host freeing a running runtime: no hooks, no grace */
        ensure_cancel_object(rt, "shutdown");
        run->phase = PHASE_CANCEL;
      } else if (run->requested) {
        run->phase = PHASE_DRAIN;
        begin_drain(rt);
      } else if (run->close_wanted) {
        run->phase = PHASE_CLOSING; /* nothing left: close what remains */
        close_handles(rt);
      }
      break;
    case PHASE_DRAIN:
      if (run->force_wanted) {
        run->phase = PHASE_CANCEL; /* forcing does the cancelling */
      } else if (run->cancel_wanted) {
        run->phase = PHASE_CANCEL;
        cancel_every_task(rt);
      }
      break;
    case PHASE_CANCEL:
      if (run->force_wanted) force_all(rt, run->force_reason);
      if (rt->live == 0 || run->close_wanted) {
        run->phase = PHASE_CLOSING;
        close_handles(rt);
      }
      break;
    case PHASE_CLOSING:
      if (run->abandoned) {
        run->phase = PHASE_CLOSED; /* the process is about to exit */
      } else if (run->closing_count == 0) {
        run->phase = PHASE_CLOSED;
        run->stepping = 0;
        notify_closed(rt); /* may free rt */
        return;
      }
      break;
    default:
      break;
    }
    if (run->phase == from) break;
  }
  run->stepping = 0;
}

/* A host freeing a runtime it did not shut down: no grace, no hooks. */
void coil__shutdown_now(coil_runtime *rt) {
  if (rt->run.phase >= PHASE_CLOSING) return;
  if (!rt->run.force_wanted) {
    rt->run.force_wanted = 1;
    rt->run.force_reason = NULL;
  }
  rt->run.close_wanted = 1;
  coil__shutdown_step(rt);
}

/* ---- deadlock ------------------------------------------------------------ */

/* The loop ran dry while tasks are alive. Acts: waits for a signal (keeps
 * the loop alive), or reports and cancels them, or, when cleanup itself is
 * stuck, forces it. */
static void deadlock(coil_runtime *rt) {
  lua_State *L = rt->L;
  size_t n, i;
  coil_task **all;
  /* a request that came while the loop ran dry (its wake-up handle does not
   * keep an own loop alive) is acted on, not mistaken for a deadlock */
  if (atomic_load(&rt->as.shutdown_requested) ||
      atomic_load(&rt->as.handled) < atomic_load(&rt->as.count) ||
      coil__signals_pending(rt)) {
    on_async(&rt->async);
    return;
  }
  if (rt->run.phase == PHASE_RUN && rt->signals && !rt->run.async_reffed &&
      rt->owns_loop &&
      coil__call_hook(rt, "waiting_for_signal", 0, 1) == LUA_OK) {
    int waiting = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (waiting) {
      uv_ref((uv_handle_t *)&rt->async);
      rt->run.async_reffed = 1;
      return;
    }
  }
  if (rt->run.phase >= PHASE_DRAIN) {
    if (!rt->quiet)
      coil__messagef(rt,
                     "deadlock during shutdown: %zu task(s) waiting with "
                     "nothing to wake them",
                     rt->live);
    if (!rt->run.force_wanted) {
      rt->run.force_wanted = 1;
      rt->run.force_reason = "deadlock";
    }
    coil__shutdown_step(rt);
    if (rt->live == 0) return;
    rt->run.close_wanted = 1;
    coil__shutdown_step(rt);
    return;
  }
  all = coil__live_tasks(rt, &n);
  rt->run.deadlocked = 1;
  lua_pushfstring(L, "deadlock: %d task(s) waiting with nothing to wake them",
                  (int)rt->live);
  for (i = 0; i < n; i++) {
    coil_task *t = all[i];
    coil__push_name(L, t);
    lua_pushfstring(L, "\ntask '%s' waits in %s at:", lua_tostring(L, -1),
                    coil__wait_names[t->wait]);
    lua_remove(L, -2);
    if (t->co) {
      coil__task_traceback(L, t, NULL); /* src/coroutine.c */
      lua_pushliteral(L, "\n  ");
      luaL_gsub(L, lua_tostring(L, -2), "\n", "\n  ");
      lua_remove(L, -3);
      lua_concat(L, 3);
    }
    lua_concat(L, 2);
  }
  coil__message(rt, lua_tostring(L, -1));
  lua_pop(L, 1);
  free(all);
  coil__request(rt, 1, 0, "deadlock");
  coil__shutdown_step(rt);
}

/* Host-loop mode has no uv_run of its own to run dry: after each drain, a
 * runtime with tasks alive but none ready or sleeping, no request in flight
 * on the loop and none of its luv handles active is deadlocked. */
static void check_quiescent(coil_runtime *rt) {
  int busy = 1;
  if (rt->owns_loop || rt->module || rt->live == 0 || rt->ready_head ||
      rt->sleepers.len > 0 || rt->run.phase >= PHASE_CLOSING ||
      rt->loop->active_reqs.count > 0)
    return;
  if (coil__call_hook(rt, "busy", 0, 1) == LUA_OK) {
    busy = lua_toboolean(rt->L, -1);
    lua_pop(rt->L, 1);
  }
  if (busy) return;
  if (rt->run.phase == PHASE_RUN &&
      coil__call_hook(rt, "waiting_for_signal", 0, 1) == LUA_OK) {
    int waiting = lua_toboolean(rt->L, -1);
    lua_pop(rt->L, 1);
    if (waiting) return; /* for coil_shutdown from the host */
  }
  deadlock(rt);
}

/* ---- the loop's entry points ------------------------------------------------ */

/* After each poll: run the ready tasks, then act on what they asked for. */
static void on_check(uv_check_t *h) {
  coil_runtime *rt = (coil_runtime *)h->data;
  int emptied = coil__run_ready(rt);
  if (!nothing_asked(&rt->run)) coil__shutdown_step(rt);
  if (emptied && rt->L) check_quiescent(rt);
}

/* A wake-up from coil_shutdown (any thread) or a signal handler. */
static void on_async(uv_async_t *h) {
  coil_runtime *rt = (coil_runtime *)h->data;
  if (rt->run.async_reffed && rt->owns_loop) {
    uv_unref((uv_handle_t *)&rt->async);
    rt->run.async_reffed = 0;
  }
  if (atomic_exchange(&rt->as.shutdown_requested, 0)) {
    int status = atomic_load(&rt->as.shutdown_request_status);
    if (rt->run.phase == PHASE_RUN) coil__request(rt, status, 0, "shutdown");
  }
  coil__signals_poll(rt);
  coil__posts_run(rt);
  coil__shutdown_step(rt);
}

/* The one loop that drives a run (coil_run, coil.run): until every task is
 * done (close_when_done: and every handle closed), telling a deadlock from
 * a wait for a signal when the loop runs dry. */
void coil__drive(coil_runtime *rt, int close_when_done) {
  for (;;) {
    coil__luv_running(rt, 1);
    uv_run(rt->loop, UV_RUN_DEFAULT);
    coil__luv_running(rt, 0);
    if (rt->run.abandoned) break;
    if (uv_loop_alive(rt->loop)) continue; /* uv.stop() from a script */
    if (rt->run.phase >= PHASE_CLOSING) break;
    if (rt->live == 0) {
      if (!close_when_done) break;
      rt->run.close_wanted = 1; /* close what remains (unreferenced) */
      coil__shutdown_step(rt);
      continue;
    }
    deadlock(rt);
  }
  if (rt->run.phase >= PHASE_CLOSING &&
      !uv_is_closing((uv_handle_t *)&rt->grace_timer)) {
    /* the linger timer goes last; a next coil.run reopens everything */
    uv_close((uv_handle_t *)&rt->grace_timer, NULL);
    if (!rt->run.abandoned) uv_run(rt->loop, UV_RUN_NOWAIT);
  }
  coil__shutdown_step(rt);
}

/* ---- Lua functions -------------------------------------------------------------- */

/* The status argument of coil.shutdown / os.exit. */
static int status_arg(lua_State *L, int idx) {
  int status;
  if (lua_isnoneornil(L, idx)) return 0;
  status = coil__status_of(L, idx);
  if (status < 0) {
    lua_pushfstring(L,
                    "coil: exit status must be an integer or a boolean, "
                    "got %s",
                    luaL_typename(L, idx));
    lua_error(L);
  }
  return status;
}

/* coil.shutdown([status]): start the sequence; returns at once. */
static int l_shutdown(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  coil__request(rt, status_arg(L, 1), 0, "shutdown");
  coil__shutdown_step(rt);
  return 0;
}

/* os.exit(status) inside coil: graceful. The caller unwinds (its cleanup
 * runs) by a Cancelled that step 3 does not repeat. */
static int l_exit(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  int status = status_arg(L, 1);
  coil__request(rt, status, 0, "exit");
  coil__shutdown_step(rt);
  if (rt->current) {
    rt->current->flags |= TF_SHUTDOWN_CANCELLED;
    rt->current->cancels++;
    if (rt->current->flags & TF_MAIN) rt->current->flags |= TF_ERR_SEEN;
  }
  coil__new_cancelled(L, "exit");
  return lua_error(L);
}

/* core.cancel_all(): the driver is done with step 2. */
static int l_cancel_all(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  rt->run.cancel_wanted = 1;
  coil__shutdown_step(rt);
  return 0;
}

/* core.report(text): a coil message (stderr, or the host's on_message). */
static int l_report(lua_State *L) {
  coil__message(RT_UP(L), luaL_checkstring(L, 1));
  return 0;
}

/* core.phase() -> "run" | "drain" | "cancel" | "closing" | "closed" */
static int l_phase(lua_State *L) {
  static const char *const names[] = {"run", "drain", "cancel", "closing",
                                      "closed"};
  lua_pushstring(L, names[RT_UP(L)->run.phase]);
  return 1;
}

static const luaL_Reg shutdown_funcs[] = {
    {"shutdown", l_shutdown}, {"exit", l_exit},   {"cancel_all", l_cancel_all},
    {"report", l_report},     {"phase", l_phase}, {NULL, NULL}};

void coil__shutdown_open(lua_State *L, coil_runtime *rt) {
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, shutdown_funcs, 1);
}
