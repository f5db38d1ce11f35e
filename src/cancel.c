/*
 * Cancellation. coil__cancel is edge-triggered: a cancellation not yet
 * delivered absorbs further ones, except that a real one replaces a soft one
 * (a timeout's own, which must never turn a real cancellation into a
 * Timeout). A suspended task is detached from what it waits for and woken
 * with the error (TF_THROW); a ready or running one gets it at its next
 * await (extras.pending). Forcing a task is the shutdown's (spawn.c).
 */
#include "coil_internal.h"

/* Detaches a suspended t from what it waits for (the timer heap, another
 * task's waiter list); a parked task is the Lua half's to detach. */
void coil__task_unlink_waits(coil_runtime *rt, coil_task *t) {
  if (t->state != TASK_SUSPENDED) return;
  if (t->wait == WAIT_SLEEP) coil__heap_remove(rt, t);
  else if (t->wait == WAIT_TASK || t->wait == WAIT_SHIELD)
    coil__unlink_waiter(t);
  t->wait = WAIT_NONE;
}

/* Stores err (at err_idx of L) where t will raise it: pushed onto its
 * coroutine if it is suspended, else kept for its next await. */
static void hand_over(lua_State *L, coil_task *t, int err_idx) {
  lua_pushvalue(L, err_idx);
  if (t->state == TASK_SUSPENDED) {
    lua_xmove(L, t->co, 1);
    t->nargs = 1;
    t->flags |= TF_THROW;
  } else {
    coil__push_extras_of(L, t, 1);
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
    coil__push_extras_of(L, t, 1);
    lua_pushvalue(L, err_idx);
    lua_setfield(L, -2, "pending");
    lua_pop(L, 1);
  }
}

/* Cancels t with the error object at err_idx of L (see the top of the file).
 * Awaiting owns: a task cancelled while it awaits another cancels that one
 * too and raises once it is done, so the owner's cleanup sees the child's
 * cleanup finished. Returns 0 if t was already done. */
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
      coil__unlink_waiter(t);
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

/* task:cancel([reason]) -> bool */
int coil__task_cancel(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  if (!lua_isnoneornil(L, 2) && !lua_isstring(L, 2))
    coil__arg_error(L, 2, "task:cancel", "a reason (a string) or nothing");
  coil__new_cancelled(L, lua_tostring(L, 2));
  lua_pushboolean(L, coil__cancel(L, t, -1, 0));
  return 1;
}

/* core.uncancel(task): the caller consumed a Cancelled it asked for itself
 * (a timeout): one delivery less to warn about (asyncio's Task.uncancel). */
static int l_uncancel(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  if (t->cancels > 0) t->cancels--;
  return 0;
}

/* core.cancels(task) -> n: the Cancelled delivered to it, less
 * core.uncancel (asyncio's Task.cancelling): a scope that consumed its own
 * tells from it that its work swallowed another one. */
static int l_cancels(lua_State *L) {
  lua_pushinteger(L, coil__check_task(L, 1)->cancels);
  return 1;
}

/* core.withdraw(err) -> bool: the running task takes back its pending soft
 * cancellation err (a timeout whose work ended before it was delivered). */
static int l_withdraw(lua_State *L) {
  coil_task *t = RT_UP(L)->current;
  int mine = 0;
  if (t && (t->flags & TF_CANCEL_SOFT) && !(t->flags & TF_THROW) &&
      coil__push_extras_of(L, t, 0)) {
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

/* core.cancel(task, err[, soft]) -> bool: cancel with a given error object;
 * a soft one (a timeout's) is replaced by a real one arriving before it is
 * delivered. */
static int l_cancel_with(lua_State *L) {
  coil_task *t = coil__check_task(L, 1);
  int soft = lua_toboolean(L, 3);
  lua_settop(L, 2);
  lua_pushboolean(L, coil__cancel(L, t, 2, soft));
  return 1;
}

static const luaL_Reg cancel_funcs[] = {{"uncancel", l_uncancel},
                                        {"cancels", l_cancels},
                                        {"withdraw", l_withdraw},
                                        {"cancel", l_cancel_with},
                                        {NULL, NULL}};

static const luaL_Reg cancel_methods[] = {{"cancel", coil__task_cancel},
                                          {NULL, NULL}};

void coil__cancel_open(lua_State *L, coil_runtime *rt) {
  coil__task_methods(L, rt, cancel_methods);
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, cancel_funcs, 1);
}
