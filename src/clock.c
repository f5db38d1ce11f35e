/*
 * Virtual time (SPEC §4, busted "Virtual time"), the C half of
 * lua/coil/clock.lua. While rt->vclock refers to the clock table of
 * clock.lua, coil.sleep and coil.now (timer.c) come here, and the check
 * handle runs virtual_check instead of the core's callback: it lets the
 * clock jump whenever a whole turn of the loop, its I/O poll included, made
 * no task ready and no libuv request is in flight. The real-time path pays
 * one test of rt->vclock in sleep and now, nothing else.
 */
#include "coil_internal.h"

static uv_check_cb real_check; /* the core's check callback (shutdown.c) */

static void vclock_idle(uv_idle_t *h) { (void)h; }

/* Pushes field name of the clock table. */
static void vclock_field(lua_State *L, coil_runtime *rt, const char *name) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->vclock);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

/* The check callback while virtual time is on: the jump when the last turn
 * left nothing ready and nothing became ready since (no request in flight),
 * then the core's own work; while timers are pending and nothing is ready,
 * the idle handle keeps the next poll from blocking (and the loop alive). */
static void virtual_check(uv_check_t *h) {
  coil_runtime *rt = (coil_runtime *)h->data;
  lua_State *L = rt->L;
  lua_Integer pending;
  if (!rt->ready_head && rt->vclock_quiet && rt->loop->active_reqs.count == 0) {
    vclock_field(L, rt, "jump");
    if (coil__pcall(L, 0, 0) != LUA_OK) {
      coil__report_error(L, "error in the virtual clock", -1);
      lua_pop(L, 1);
    }
  }
  rt->vclock_quiet = 0;
  real_check(h); /* runs the ready tasks (which may turn the clock off) */
  if (!rt->vclock || rt->ready_head) return;
  vclock_field(L, rt, "count");
  pending = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (pending > 0) {
    /* one more turn whose poll does not block, then the jump */
    rt->vclock_quiet = 1;
    if (rt->loop->active_reqs.count == 0) uv_idle_start(&rt->idle, vclock_idle);
  }
}

/* core.virtual_clock(clock | nil): turns virtual time on (clock.lua's
 * table) or off. */
int coil__l_virtual_clock(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  uv_check_t *check = &rt->check;
  if (rt->vclock) luaL_unref(L, LUA_REGISTRYINDEX, rt->vclock);
  rt->vclock = rt->vclock_quiet = 0;
  if (lua_istable(L, 1)) {
    lua_settop(L, 1);
    rt->vclock = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (!real_check && check->check_cb != virtual_check)
    real_check = check->check_cb;
  if (!uv_is_closing((uv_handle_t *)check)) {
    uv_check_cb want = rt->vclock ? virtual_check : real_check;
    if (check->check_cb != want) {
      uv_check_stop(check);
      uv_check_start(check, want);
    }
  }
  return 0;
}

static int vsleep_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L;
  (void)status;
  (void)ctx;
  return 0;
}

/* coil.sleep(s), s > 0, on the virtual clock: clock.sleep parks the task
 * until the clock reaches its deadline (or raises its cancellation). */
int coil__vclock_sleep(lua_State *L, coil_runtime *rt, lua_Number s) {
  vclock_field(L, rt, "sleep");
  lua_pushnumber(L, s);
  lua_callk(L, 1, 0, 0, vsleep_k);
  return 0;
}

/* coil.now() on the virtual clock: pushes its time in seconds. */
int coil__vclock_now(lua_State *L, coil_runtime *rt) {
  vclock_field(L, rt, "ms");
  lua_pushnumber(L, lua_tonumber(L, -1) / 1000.0);
  return 1;
}
