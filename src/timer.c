/*
 * Sleeping: the sleepers that share a deadline millisecond form one bucket,
 * a FIFO ring of tasks (linked through wnext/wprev, free while a task
 * sleeps); the buckets form a binary min-heap by deadline, behind one
 * uv_timer armed for the earliest; a hash table of chains finds the bucket
 * of a deadline. The order is (deadline, time of the call), as a heap of
 * tasks keyed by (deadline, sequence number) would give, but a sleep, a
 * wake-up and a cancel cost O(1) per task: only a new or emptied bucket
 * touches the heap. No handle or allocation per sleep (buckets are reused
 * and the arrays grow by doubling).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "coil_internal.h"

struct coil_sleep_bucket {
  uint64_t deadline;        /* loop time in ms */
  coil_task *head;          /* the first sleeper; head->wprev is the last */
  coil_sleep_bucket *hnext; /* hash chain; the next spare once emptied */
  uint32_t heap_index;
};

/* ---- the heap of buckets ------------------------------------------------ */

static void heap_set(coil_heap *h, uint32_t i, coil_sleep_bucket *b) {
  h->items[i] = b;
  b->heap_index = i;
}

static void sift_up(coil_heap *h, uint32_t i) {
  coil_sleep_bucket *b = h->items[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (h->items[parent]->deadline <= b->deadline) break;
    heap_set(h, i, h->items[parent]);
    i = parent;
  }
  heap_set(h, i, b);
}

static void sift_down(coil_heap *h, uint32_t i) {
  coil_sleep_bucket *b = h->items[i];
  for (;;) {
    uint32_t child = 2 * i + 1;
    if (child >= h->len) break;
    if (child + 1 < h->len &&
        h->items[child + 1]->deadline < h->items[child]->deadline)
      child++;
    if (h->items[child]->deadline >= b->deadline) break;
    heap_set(h, i, h->items[child]);
    i = child;
  }
  heap_set(h, i, b);
}

static void heap_delete(coil_heap *h, uint32_t i) {
  coil_sleep_bucket *last = h->items[--h->len];
  if (i == h->len) return;
  heap_set(h, i, last);
  if (i > 0 && last->deadline < h->items[(i - 1) / 2]->deadline) sift_up(h, i);
  else sift_down(h, i);
}

/* ---- finding a deadline's bucket ---------------------------------------- */

static uint32_t chain_of(const coil_heap *h, uint64_t deadline) {
  /* Fibonacci hashing: consecutive milliseconds spread over the table */
  return (uint32_t)((deadline * UINT64_C(0x9E3779B97F4A7C15)) >>
                    (64 - h->table_bits));
}

/* Doubles the table once it holds as many buckets as chains; a failed
 * allocation keeps the old table (longer chains, still correct). */
static void table_grow(coil_heap *h) {
  uint32_t old_n = h->table ? (uint32_t)1 << h->table_bits : 0;
  uint32_t bits = h->table ? h->table_bits + 1 : 6, i;
  coil_sleep_bucket **old = h->table;
  coil_sleep_bucket **table =
      (coil_sleep_bucket **)calloc((size_t)1 << bits, sizeof *table);
  if (!table) return;
  h->table = table;
  h->table_bits = bits;
  for (i = 0; i < old_n; i++) {
    coil_sleep_bucket *b = old[i], *next;
    for (; b; b = next) {
      uint32_t c = chain_of(h, b->deadline);
      next = b->hnext;
      b->hnext = table[c];
      table[c] = b;
    }
  }
  free(old);
}

/* The bucket of deadline, made (and put in the heap) if there is none yet;
 * NULL when out of memory. */
static coil_sleep_bucket *bucket_for(coil_heap *h, uint64_t deadline) {
  coil_sleep_bucket *b;
  uint32_t c;
  if (h->table) {
    for (b = h->table[chain_of(h, deadline)]; b; b = b->hnext)
      if (b->deadline == deadline) return b;
  }
  if (h->len == h->cap) {
    uint32_t cap = h->cap ? h->cap * 2 : 64;
    coil_sleep_bucket **items =
        (coil_sleep_bucket **)realloc(h->items, cap * sizeof *items);
    if (!items) return NULL;
    h->items = items;
    h->cap = cap;
  }
  if (!h->table || h->len >= (uint32_t)1 << h->table_bits) table_grow(h);
  if (!h->table) return NULL;
  if ((b = h->spare) != NULL) h->spare = b->hnext;
  else if ((b = (coil_sleep_bucket *)malloc(sizeof *b)) == NULL) return NULL;
  b->deadline = deadline;
  b->head = NULL;
  c = chain_of(h, deadline);
  b->hnext = h->table[c];
  h->table[c] = b;
  heap_set(h, h->len++, b);
  sift_up(h, h->len - 1);
  return b;
}

/* Takes the emptied bucket b out of the heap and the table, for reuse. */
static void bucket_drop(coil_heap *h, coil_sleep_bucket *b) {
  coil_sleep_bucket **p = &h->table[chain_of(h, b->deadline)];
  while (*p != b) p = &(*p)->hnext;
  *p = b->hnext;
  heap_delete(h, b->heap_index);
  b->hnext = h->spare;
  h->spare = b;
}

static void ring_append(coil_sleep_bucket *b, coil_task *t) {
  coil_task *head = b->head;
  t->bucket = b;
  if (!head) {
    b->head = t->wnext = t->wprev = t;
  } else {
    coil_task *tail = head->wprev;
    tail->wnext = t;
    t->wprev = tail;
    t->wnext = head;
    head->wprev = t;
  }
}

/* Unlinks t from its bucket's ring; returns 1 if that emptied the ring. */
static int ring_remove(coil_sleep_bucket *b, coil_task *t) {
  int emptied = 0;
  if (t->wnext == t) {
    b->head = NULL;
    emptied = 1;
  } else {
    t->wprev->wnext = t->wnext;
    t->wnext->wprev = t->wprev;
    if (b->head == t) b->head = t->wnext;
  }
  t->wnext = t->wprev = NULL;
  t->bucket = NULL;
  return emptied;
}

void coil__heap_free(coil_runtime *rt) {
  coil_heap *h = &rt->sleepers;
  uint32_t i;
  for (i = 0; i < h->len; i++) free(h->items[i]);
  while (h->spare) {
    coil_sleep_bucket *b = h->spare;
    h->spare = b->hnext;
    free(b);
  }
  free(h->items);
  free(h->table);
  h->items = h->table = NULL;
  h->len = h->cap = h->table_bits = 0;
}

static int earlier(const void *a, const void *b) {
  const coil_sleep_bucket *x = *(coil_sleep_bucket *const *)a;
  const coil_sleep_bucket *y = *(coil_sleep_bucket *const *)b;
  return x->deadline < y->deadline ? -1 : x->deadline > y->deadline;
}

/* The sleeping tasks in the order they would wake, in a malloc'd array
 * (NULL if none or out of memory); *count says how many. Lets the shutdown
 * cancel every sleeper without looking each one up. */
coil_task **coil__sleepers(coil_runtime *rt, size_t *count) {
  coil_heap *h = &rt->sleepers;
  coil_sleep_bucket **order;
  coil_task **all = NULL;
  size_t n = 0, cap = 0;
  uint32_t i;
  *count = 0;
  if (h->len == 0) return NULL;
  order = (coil_sleep_bucket **)malloc(h->len * sizeof *order);
  if (!order) return NULL;
  memcpy(order, h->items, h->len * sizeof *order);
  qsort(order, h->len, sizeof *order, earlier);
  for (i = 0; i < h->len; i++) {
    coil_task *t = order[i]->head, *last = t->wprev;
    for (;;) {
      if (n == cap) {
        coil_task **more;
        cap = cap ? cap * 2 : 1024;
        more = (coil_task **)realloc(all, cap * sizeof *all);
        if (!more) {
          free(all);
          free(order);
          return NULL;
        }
        all = more;
      }
      all[n++] = t;
      if (t == last) break;
      t = t->wnext;
    }
  }
  free(order);
  *count = n;
  return all;
}

/* ---- the timer ------------------------------------------------------------ */

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

/* Takes the sleeping t out (cancel.c: it is cancelled or closed). */
void coil__heap_remove(coil_runtime *rt, coil_task *t) {
  coil_sleep_bucket *b = t->bucket;
  if (ring_remove(b, t)) {
    int was_first = b->heap_index == 0;
    bucket_drop(&rt->sleepers, b);
    if (was_first) rearm(rt);
  }
}

/* Wakes every bucket that is due, each in the order its tasks slept. */
static void on_timer(uv_timer_t *timer) {
  coil_runtime *rt = (coil_runtime *)timer->data;
  coil_heap *h = &rt->sleepers;
  uint64_t now = uv_now(rt->loop);
  rt->timer_due = 0;
  while (h->len && h->items[0]->deadline <= now) {
    coil_sleep_bucket *b = h->items[0];
    coil_task *t = b->head, *last = t->wprev;
    for (;;) {
      coil_task *next = t->wnext;
      t->wnext = t->wprev = NULL;
      t->bucket = NULL;
      t->nargs = 0;
      coil__make_ready(rt, t);
      if (t == last) break;
      t = next;
    }
    b->head = NULL;
    bucket_drop(h, b);
  }
  rearm(rt);
}

/* The continuation of a sleep; ctx is the sleeping task (a coroutine
 * belongs to one task), which spares looking up the runtime. */
static int sleep_k(lua_State *L, int status, lua_KContext ctx) {
  coil_task *t = (coil_task *)ctx;
  (void)status;
  if (t->flags & TF_THROW) {
    coil__cancel_delivered(t);
    return lua_error(L);
  }
  return 0;
}

/* coil.sleep(s): suspends the task for s seconds; sleep(0) yields one turn
 * of the loop (other ready tasks run and the loop polls for I/O first). */
static int l_sleep(lua_State *L) {
  coil_runtime *rt;
  coil_task *t;
  coil_sleep_bucket *b;
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
  rt = t->rt;
  if (s == 0) {
    t->nargs = 0;
    coil__make_ready(rt, t);
    return lua_yieldk(L, 0, (lua_KContext)t, sleep_k);
  }
  if (rt->vclock) return coil__vclock_sleep(L, rt, s); /* clock.c */
  uv_update_time(rt->loop);
  if (s >= 1e15) ms = UINT64_MAX / 2;
  else ms = (uint64_t)ceil(s * 1000.0);
  b = bucket_for(&rt->sleepers, uv_now(rt->loop) + ms);
  if (!b) return luaL_error(L, "coil: out of memory");
  if (!b->head && b->heap_index == 0) rearm(rt);
  ring_append(b, t);
  return coil__suspend(L, t, WAIT_SLEEP, sleep_k, (lua_KContext)t);
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
