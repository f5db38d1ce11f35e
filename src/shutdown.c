/*
 * The shutdown sequence (SPEC §3): announce, drain (stopping + on_shutdown
 * hooks, run by a driver task written in Lua), cancel every task, let cleanup
 * run within the grace, force what is left, close every handle, tear down.
 *
 * Requests may come from anywhere: a task, a luv callback, the scheduler, a
 * signal (through the async handle), another thread (coil_shutdown). They
 * only record and schedule; the steps themselves run from loop callbacks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coil_internal.h"

#define RT_UP(L) ((coil_runtime *)lua_touserdata(L, lua_upvalueindex(1)))

void coil__request_status(coil_runtime *rt, int status) {
  if (!rt->exit_set) {
    rt->exit_set = 1;
    rt->exit_status = status;
  }
}

static void on_grace(uv_timer_t *timer) {
  coil__force_all((coil_runtime *)timer->data, "grace");
}

/* Starts the sequence; the first request's status (or signal) is kept. */
void coil__request(coil_runtime *rt, int status, int signo,
                   const char *reason) {
  lua_State *L = rt->L;
  coil_task *driver;
  if (!rt->exit_set) {
    rt->exit_set = 1;
    rt->exit_status = status;
    rt->exit_signal = signo;
  }
  if (rt->phase != PHASE_RUN) return;
  rt->phase = PHASE_DRAIN;
  uv_update_time(rt->loop);
  rt->shutdown_started = uv_now(rt->loop);
  if (signo && !rt->quiet)
    coil__messagef(rt, "%s received, cancelling %zu task(s) (%s again to force)",
                   reason, rt->live,
                   signo == SIGINT ? "Ctrl+C" : reason);

  luaL_checkstack(L, 4, NULL);
  coil__new_cancelled(L, reason);
  rt->cancel_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  if (rt->grace >= 0) {
    /* the loop's cached time may be stale (a long drain, a busy task
     * interrupted by the hook): the grace counts from now */
    uv_update_time(rt->loop);
    uv_timer_start(&rt->grace_timer, on_grace,
                   (uint64_t)(rt->grace * 1000.0 + 0.5), 0);
    rt->grace_started = 1;
  }

  /* step 2 runs as a task: the hooks may await */
  lua_getfield(L, LUA_REGISTRYINDEX, "coil.hooks");
  lua_getfield(L, -1, "drive");
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    coil__cancel_all_now(rt);
    return;
  }
  driver = coil__spawn(L, rt, 0);
  driver->flags |= TF_INTERNAL;
  lua_pop(L, 1);
}

/* Step 3: cancel every live task but the one calling (the driver). */
void coil__cancel_all_now(coil_runtime *rt) {
  lua_State *L = rt->L;
  int top = lua_gettop(L);
  if (rt->phase >= PHASE_CANCEL) return;
  rt->phase = PHASE_CANCEL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->cancel_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchors_ref);
  lua_pushnil(L);
  while (lua_next(L, top + 2)) {
    if (lua_type(L, -1) == LUA_TUSERDATA) {
      coil_task *t = (coil_task *)lua_touserdata(L, -1);
      if (t != rt->current && !(t->flags & TF_SHUTDOWN_CANCELLED)) {
        t->flags |= TF_SHUTDOWN_CANCELLED;
        coil__cancel(L, t, top + 1, 0);
      }
    }
    lua_pop(L, 1);
  }
  lua_settop(L, top);
  coil__shutdown_progress(rt);
}

static int l_cancel_all(lua_State *L) {
  coil__cancel_all_now(RT_UP(L));
  return 0;
}

void coil__shutdown_progress(coil_runtime *rt) {
  if (rt->phase == PHASE_CANCEL && rt->live == 0) {
    rt->phase = PHASE_CLOSING;
    coil__close_handles(rt);
  }
}

/* Step 5: closes every live task by force, naming each with where it was
 * stuck (unless why is NULL: a host freeing a runtime). */
void coil__force_all(coil_runtime *rt, const char *why) {
  lua_State *L = rt->L;
  coil_task *t;
  int round;
  if (rt->forced || !L) return;
  rt->forced = 1;
  if (rt->phase < PHASE_CANCEL) {
    if (rt->cancel_ref == 0) {
      coil__new_cancelled(L, "shutdown");
      rt->cancel_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (rt->phase < PHASE_CANCEL) rt->phase = PHASE_CANCEL;
  }
  uv_timer_stop(&rt->grace_timer);
  /* forced tasks leave the ready queue all at once */
  while ((t = rt->ready_head) != NULL) {
    rt->ready_head = t->next_ready;
    t->next_ready = NULL;
  }
  rt->ready_tail = NULL;
  uv_idle_stop(&rt->idle);
  /* cleanup of forced tasks may spawn more; they are born cancelled and
   * forced in the next round */
  for (round = 0; round < 8 && rt->live > 0; round++) {
    size_t n, i;
    coil_task **all = coil__live_tasks(rt, &n);
    double secs = (double)(uv_now(rt->loop) - rt->shutdown_started) / 1000.0;
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
        if (t->co) luaL_traceback(L, t->co, lua_tostring(L, -1), 0);
        else lua_pushvalue(L, -1);
        coil__message(rt, lua_tostring(L, -1));
        lua_pop(L, 3);
      }
      coil__force(rt, t);
    }
    free(all);
    /* tasks spawned meanwhile sit in the ready queue: drop it again */
    while ((t = rt->ready_head) != NULL) {
      rt->ready_head = t->next_ready;
      t->next_ready = NULL;
    }
    rt->ready_tail = NULL;
  }
  coil__shutdown_progress(rt);
}

/* ---- closing handles ---------------------------------------------------- */

static void on_linger(uv_timer_t *timer) {
  coil_runtime *rt = (coil_runtime *)timer->data;
  if (!rt->quiet)
    coil__message(rt, "a request still in flight did not finish; not "
                      "waiting for it any longer");
  rt->abandoned = 1;
  uv_stop(rt->loop);
}

static void on_own_closed(uv_handle_t *h) {
  coil_runtime *rt = (coil_runtime *)h->data;
  if (--rt->closing_count > 0) return;
  rt->phase = PHASE_CLOSED;
  if (!rt->closed_notified) {
    rt->closed_notified = 1;
    if (rt->on_closed && !rt->free_pending) {
      /* the host may coil_free(rt) from on_closed: that is deferred to
       * here, after the callback returned */
      rt->in_on_closed = 1;
      rt->on_closed(rt, rt->exit_status, rt->ud);
      rt->in_on_closed = 0;
    }
  }
  if (rt->free_pending) {
    rt->free_pending = 0;
    coil_free(rt);
  }
}

static void close_own(coil_runtime *rt, uv_handle_t *h) {
  if (uv_is_closing(h)) return;
  rt->closing_count++;
  uv_close(h, on_own_closed);
}

/* Step 6: closes coil's own handles and then, through luv, every handle the
 * script opened (libuv runs close callbacks newest first, so coil's own
 * come last and on_closed sees everything closed). */
void coil__close_handles(coil_runtime *rt) {
  if (rt->handles_closing) return;
  rt->handles_closing = 1;
  if (rt->phase < PHASE_CLOSING) rt->phase = PHASE_CLOSING;
  atomic_store(&rt->wake_ok, 0);
  close_own(rt, (uv_handle_t *)&rt->async);
  close_own(rt, (uv_handle_t *)&rt->idle);
  close_own(rt, (uv_handle_t *)&rt->check);
  close_own(rt, (uv_handle_t *)&rt->timer);
  if (rt->owns_loop || rt->module) {
    /* The grace timer now bounds the wait for what the loop still runs: a
     * request stuck in a threadpool (a read from a FIFO, say) must not keep
     * a shutting-down process alive. coil_run closes it last. */
    uv_update_time(rt->loop);
    uv_timer_start(&rt->grace_timer, on_linger,
                   (uint64_t)((rt->grace > 1 ? rt->grace : 1) * 1000.0), 0);
  } else {
    close_own(rt, (uv_handle_t *)&rt->grace_timer);
  }
  coil__service_close(rt);
  if (rt->usr1_started) {
    close_own(rt, (uv_handle_t *)&rt->usr1);
    rt->usr1_started = 0;
  }
  if (rt->L) coil__call_hook(rt, "close_handles", 0, 0);
}

/* ---- deadlock ------------------------------------------------------------ */

/* The loop ran dry while tasks are alive. Returns 1 after acting: waiting
 * for a signal (keep the loop alive), or report and cancel them, or, when
 * cleanup itself is stuck, force it. */
int coil__deadlock(coil_runtime *rt) {
  lua_State *L = rt->L;
  size_t n, i;
  coil_task **all;
  /* a request that came while the loop ran dry (its wake-up handle does not
   * keep an own loop alive) is acted on, not mistaken for a deadlock */
  if (atomic_load(&rt->shutdown_requested) ||
      atomic_load(&rt->sig_handled) < atomic_load(&rt->sig_count) ||
      coil__signals_pending(rt)) {
    coil__on_async(rt);
    return 1;
  }
  if (rt->phase == PHASE_RUN && rt->signals && !rt->async_reffed &&
      rt->owns_loop &&
      coil__call_hook(rt, "waiting_for_signal", 0, 1) == LUA_OK) {
    int waiting = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (waiting) {
      uv_ref((uv_handle_t *)&rt->async);
      rt->async_reffed = 1;
      return 1;
    }
  }
  if (rt->phase >= PHASE_CANCEL || rt->phase == PHASE_DRAIN) {
    if (!rt->quiet)
      coil__messagef(rt,
                     "deadlock during shutdown: %zu task(s) waiting with "
                     "nothing to wake them",
                     rt->live);
    coil__force_all(rt, "deadlock");
    if (rt->live == 0) return 1;
    coil__close_handles(rt);
    return 1;
  }
  all = coil__live_tasks(rt, &n);
  rt->deadlocked = 1;
  lua_pushfstring(L, "deadlock: %d task(s) waiting with nothing to wake them",
                  (int)rt->live);
  for (i = 0; i < n; i++) {
    coil_task *t = all[i];
    static const char *const waits[] = {"", "sleep", "await", "shield",
                                        "wait"};
    coil__push_name(L, t);
    lua_pushfstring(L, "\ntask '%s' waits in %s at:", lua_tostring(L, -1),
                    waits[t->wait]);
    lua_remove(L, -2);
    if (t->co) {
      luaL_traceback(L, t->co, NULL, 0);
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
  return 1;
}

/* ---- wake-ups from other threads and signals -------------------------------- */

/* Host-loop mode has no uv_run of its own to run dry: after each drain, a
 * runtime with tasks alive but none ready or sleeping, no request in flight
 * on the loop and none of its luv handles active is deadlocked. */
void coil__check_quiescent(coil_runtime *rt) {
  int busy = 1;
  if (rt->owns_loop || rt->module || rt->live == 0 || rt->ready_head ||
      rt->sleepers.len > 0 || rt->phase >= PHASE_CLOSING ||
      rt->loop->active_reqs.count > 0)
    return;
  if (coil__call_hook(rt, "busy", 0, 1) == LUA_OK) {
    busy = lua_toboolean(rt->L, -1);
    lua_pop(rt->L, 1);
  }
  if (busy) return;
  if (rt->phase == PHASE_RUN &&
      coil__call_hook(rt, "waiting_for_signal", 0, 1) == LUA_OK) {
    int waiting = lua_toboolean(rt->L, -1);
    lua_pop(rt->L, 1);
    if (waiting) return; /* for coil_shutdown from the host */
  }
  coil__deadlock(rt);
}

void coil__on_async(coil_runtime *rt) {
  if (rt->async_reffed && rt->owns_loop) {
    uv_unref((uv_handle_t *)&rt->async);
    rt->async_reffed = 0;
  }
  if (atomic_exchange(&rt->shutdown_requested, 0)) {
    int status = atomic_load(&rt->shutdown_request_status);
    if (rt->phase == PHASE_RUN) coil__request(rt, status, 0, "shutdown");
  }
  coil__signals_poll(rt);
}

/* ---- Lua functions -------------------------------------------------------------- */

static int status_of(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (lua_isboolean(L, idx)) return lua_toboolean(L, idx) ? 0 : 1;
  if (!lua_isinteger(L, idx)) {
    lua_pushfstring(L, "coil: exit status must be an integer or a boolean, "
                       "got %s",
                    luaL_typename(L, idx));
    lua_error(L);
  }
  return (int)(lua_tointeger(L, idx) & 0xff);
}

/* coil.shutdown([status]): start the sequence; returns at once. */
static int l_shutdown(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  coil__request(rt, status_of(L, 1), 0, "shutdown");
  return 0;
}

/* os.exit(status) inside coil: graceful. The caller unwinds (its cleanup
 * runs) by a Cancelled that step 3 does not repeat. */
static int l_exit(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  int status = status_of(L, 1);
  coil__request(rt, status, 0, "exit");
  if (rt->current) {
    rt->current->flags |= TF_SHUTDOWN_CANCELLED;
    rt->current->cancels++;
    if (rt->current->flags & TF_MAIN) rt->current->flags |= TF_ERR_SEEN;
  }
  coil__new_cancelled(L, "exit");
  return lua_error(L);
}

/* coil._report(text): a coil message on stderr. */
static int l_report(lua_State *L) {
  coil__message(RT_UP(L), luaL_checkstring(L, 1));
  return 0;
}

/* coil._phase() -> "run" | "drain" | "cancel" | "closing" | "closed" */
static int l_phase(lua_State *L) {
  static const char *const names[] = {"run", "drain", "cancel", "closing",
                                      "closed"};
  lua_pushstring(L, names[RT_UP(L)->phase]);
  return 1;
}

static const luaL_Reg shutdown_funcs[] = {{"shutdown", l_shutdown},
                                          {"_exit", l_exit},
                                          {"_cancel_all", l_cancel_all},
                                          {"_report", l_report},
                                          {"_phase", l_phase},
                                          {NULL, NULL}};

void coil__shutdown_open(lua_State *L, coil_runtime *rt) {
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, shutdown_funcs, 1);
}
