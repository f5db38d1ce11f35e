/*
 * Memory: the allocator keeps count so that a plugin can be held to
 * memory_limit. The limit is enforced only while the runtime's Lua code
 * runs (where a failure is an ordinary, catchable "not enough memory"
 * error), the teardown's included (rt->teardown: the last report, __gc at
 * lua_close), never in coil's own bookkeeping between resumes, which could
 * not recover. Once hit, the runtime is shut down with a quarter more room so
 * that cleanup can run.
 */
#include <stdlib.h>

#include "coil_internal.h"

void *coil__alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  coil_runtime *rt = (coil_runtime *)ud;
  if (ptr == NULL) osize = 0;
  if (nsize == 0) {
    coil__pool_realloc(&rt->pool, ptr, osize, 0);
    rt->mem_used -= osize;
    return NULL;
  }
  if (nsize > osize &&
      (rt->mem_limit ||
       atomic_load_explicit(&rt->teardown_stop, memory_order_relaxed)) &&
      (atomic_load_explicit(&rt->as.running_L, memory_order_relaxed) != NULL ||
       atomic_load_explicit(&rt->teardown, memory_order_relaxed))) {
    size_t limit = rt->mem_limit;
    /* the host asked to stop a teardown that does not end (a __gc that
     * never returns: Lua runs no hooks in finalizers, so this is how) */
    if (atomic_load_explicit(&rt->teardown_stop, memory_order_relaxed) &&
        atomic_load_explicit(&rt->teardown, memory_order_relaxed))
      return NULL;
    if (!limit) goto grant;
    if (rt->run.mem_exceeded) limit += limit / 4;
    if (rt->mem_used + (nsize - osize) > limit) {
      /* Lua collects garbage and asks again with the same arguments: only a
       * second refusal of the same request means the limit is really hit */
      if (rt->refused_ptr == ptr && rt->refused_size == nsize) {
        if (!rt->run.mem_exceeded) rt->run.mem_exceeded = 1;
      } else {
        rt->refused_ptr = ptr;
        rt->refused_size = nsize;
      }
      return NULL;
    }
  }
grant:
  rt->refused_size = 0;
  ptr = coil__pool_realloc(&rt->pool, ptr, osize, nsize);
  if (ptr) rt->mem_used += nsize - osize;
  return ptr;
}

/* After Lua code ran: a runtime that hit its memory limit is shut down. */
void coil__check_memory(coil_runtime *rt) {
  if (rt->run.mem_exceeded != 1) return;
  rt->run.mem_exceeded = 2;
  coil__messagef(rt, "memory limit of %zu bytes exceeded; shutting down",
                 rt->mem_limit);
  coil__request(rt, 1, 0, "memory limit");
}
