/*
 * Sleeping: one binary min-heap of sleeping tasks, keyed by (deadline, seq),
 * and one uv_timer armed for the earliest. No handle or allocation per sleep
 * (the heap array grows by doubling); cancelling a sleep is O(log n).
 */
#include <math.h>
#include <stdlib.h>

#include "coil_internal.h"

static int before(const coil_task *a, const coil_task *b) {
  return a->deadline < b->deadline ||
         (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_set(coil_heap *h, uint32_t i, coil_task *t) {
  h->items[i] = t;
  t->heap_index = i;
}

static void sift_up(coil_heap *h, uint32_t i) {
  coil_task *t = h->items[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (!before(t, h->items[parent])) break;
    heap_set(h, i, h->items[parent]);
    i = parent;
  }
  heap_set(h, i, t);
}

static void sift_down(coil_heap *h, uint32_t i) {
  coil_task *t = h->items[i];
  for (;;) {
    uint32_t child = 2 * i + 1;
    if (child >= h->len) break;
    if (child + 1 < h->len && before(h->items[child + 1], h->items[child]))
      child++;
    if (!before(h->items[child], t)) break;
    heap_set(h, i, h->items[child]);
    i = child;
  }
  heap_set(h, i, t);
}

static int heap_push(coil_heap *h, coil_task *t) {
  if (h->len == h->cap) {
    uint32_t cap = h->cap ? h->cap * 2 : 64;
    coil_task **items = (coil_task **)realloc(h->items, cap * sizeof *items);
    if (!items) return 0;
    h->items = items;
    h->cap = cap;
  }
  heap_set(h, h->len++, t);
  sift_up(h, h->len - 1);
  return 1;
}

static void heap_delete(coil_heap *h, uint32_t i) {
  coil_task *last = h->items[--h->len];
  if (i == h->len) return;
  heap_set(h, i, last);
  if (i > 0 && before(last, h->items[(i - 1) / 2])) sift_up(h, i);
  else sift_down(h, i);
}

void coil__heap_free(coil_runtime *rt) {
  free(rt->sleepers.items);
  rt->sleepers.items = NULL;
  rt->sleepers.len = rt->sleepers.cap = 0;
}

static void on_timer(uv_timer_t *timer);

/* Arms the timer for the earliest sleeper, or stops it when none is left
 * (a stopped timer does not keep the loop alive). */
static void rearm(coil_runtime *rt) {
  coil_heap *h = &rt->sleepers;
  if (h->len == 0) {
    if (rt->timer_due) uv_timer_stop(&rt->timer);
    rt->timer_due = 0;
    return;
  }
  if (rt->timer_due == h->items[0]->deadline) return;
  rt->timer_due = h->items[0]->deadline;
  {
    uint64_t now = uv_now(rt->loop);
    uv_timer_start(&rt->timer, on_timer,
                   rt->timer_due > now ? rt->timer_due - now : 0, 0);
  }
}

void coil__heap_remove(coil_runtime *rt, coil_task *t) {
  int was_first = t->heap_index == 0;
  heap_delete(&rt->sleepers, t->heap_index);
  if (was_first) rearm(rt);
}

static void on_timer(uv_timer_t *timer) {
  coil_runtime *rt = (coil_runtime *)timer->data;
  coil_heap *h = &rt->sleepers;
  uint64_t now = uv_now(rt->loop);
  rt->timer_due = 0;
  while (h->len && h->items[0]->deadline <= now) {
    coil_task *t = h->items[0];
    heap_delete(h, 0);
    t->nargs = 0;
    coil__make_ready(rt, t);
  }
  rearm(rt);
}

static int sleep_k(lua_State *L, int status, lua_KContext ctx) {
  coil_task *t = RT_UP(L)->current;
  (void)status;
  (void)ctx;
  if (t->flags & TF_THROW) {
    coil__cancel_delivered(t);
    return lua_error(L);
  }
  return 0;
}

/* coil.sleep(s): suspends the task for s seconds; sleep(0) yields one turn
 * of the loop (other ready tasks run and the loop polls for I/O first). */
static int l_sleep(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  coil_task *t;
  lua_Number s;
  uint64_t ms;
  int isnum;
  s = lua_tonumberx(L, 1, &isnum);
  if (!isnum || s < 0 || s != s) {
    if (!isnum)
      lua_pushfstring(L, "coil: sleep expects a number of seconds, got %s",
                      luaL_typename(L, 1));
    else
      lua_pushfstring(L,
                      "coil: sleep expects a non-negative number of seconds, "
                      "got %s",
                      lua_tostring(L, 1));
    return lua_error(L);
  }
  t = coil__await_check(L, "sleep");
  if (s == 0) {
    t->nargs = 0;
    coil__make_ready(rt, t);
    return lua_yieldk(L, 0, 0, sleep_k);
  }
  if (rt->vclock) return coil__vclock_sleep(L, rt, s); /* clock.c */
  uv_update_time(rt->loop);
  if (s >= 1e15) ms = UINT64_MAX / 2;
  else ms = (uint64_t)ceil(s * 1000.0);
  t->deadline = uv_now(rt->loop) + ms;
  t->seq = ++rt->sleep_seq;
  if (!heap_push(&rt->sleepers, t)) return luaL_error(L, "coil: out of memory");
  if (t->heap_index == 0) rearm(rt);
  return coil__suspend(L, t, WAIT_SLEEP, sleep_k, 0);
}

/* coil.now(): the loop's monotonic clock in seconds, brought up to date
 * first (libuv caches it once per loop turn: code that blocked the loop
 * would otherwise see time stand still). */
static int l_now(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  if (rt->vclock) return coil__vclock_now(L, rt); /* clock.c */
  uv_update_time(rt->loop);
  lua_pushnumber(L, (lua_Number)uv_now(rt->loop) / 1000.0);
  return 1;
}

static const luaL_Reg timer_funcs[] = {{"sleep", l_sleep},
                                       {"now", l_now},
                                       {"virtual_clock", coil__l_virtual_clock},
                                       {NULL, NULL}};

void coil__timer_open(lua_State *L, coil_runtime *rt) {
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, timer_funcs, 1);
}
