/*
 * coil_post: work handed to a runtime from any thread. Posts wait in a FIFO
 * under a mutex and run on the loop's thread, from the runtime's async
 * wake-up, in the order they were posted; those still queued when the
 * runtime is torn down run then, before the Lua state closes, so every
 * post runs exactly once and its ud can always be freed by its fn.
 *
 * One mutex for every runtime (statically initialised: no set-up or
 * teardown per runtime, and posts are rare next to the loop's own work).
 * It also orders a post's wake-up against the teardown: once a runtime's
 * posts are closed, nobody sends to its async handle any more.
 */
#include <pthread.h>
#include <stdlib.h>

#include "coil_internal.h"

struct coil_post_item {
  coil_post_cb fn;
  void *ud;
  struct coil_post_item *next;
};

static pthread_mutex_t posts_lock = PTHREAD_MUTEX_INITIALIZER;

int coil_post(coil_runtime *rt, coil_post_cb fn, void *ud) {
  struct coil_post_item *item;
  if (!rt || !fn) return COIL_EINVAL;
  item = (struct coil_post_item *)malloc(sizeof *item);
  if (!item) return COIL_ENOMEM;
  item->fn = fn;
  item->ud = ud;
  item->next = NULL;
  pthread_mutex_lock(&posts_lock);
  if (rt->posts.closed) {
    pthread_mutex_unlock(&posts_lock);
    free(item);
    return COIL_ESTATE;
  }
  if (rt->posts.tail) rt->posts.tail->next = item;
  else rt->posts.head = item;
  rt->posts.tail = item;
  /* under the lock: the teardown cannot close the loop meanwhile; a send to
   * an async handle that is closing is harmless (the teardown runs what
   * it leaves queued) */
  if (atomic_load(&rt->as.wake_ok)) uv_async_send(&rt->async);
  pthread_mutex_unlock(&posts_lock);
  return 0;
}

/* Runs the posts queued so far, in order, on the loop's thread. Posts made
 * while they run wait for the next wake-up (a post that posts again cannot
 * starve the loop). */
void coil__posts_run(coil_runtime *rt) {
  struct coil_post_item *item;
  pthread_mutex_lock(&posts_lock);
  item = rt->posts.head;
  rt->posts.head = rt->posts.tail = NULL;
  pthread_mutex_unlock(&posts_lock);
  while (item) {
    struct coil_post_item *next = item->next;
    item->fn(rt, item->ud);
    free(item);
    item = next;
  }
}

/* The async handle is open again (a new run): wake up for what waits. */
void coil__posts_kick(coil_runtime *rt) {
  pthread_mutex_lock(&posts_lock);
  if (rt->posts.head && atomic_load(&rt->as.wake_ok)) uv_async_send(&rt->async);
  pthread_mutex_unlock(&posts_lock);
}

/* Teardown: refuses new posts and runs those left (until none is left:
 * a post's fn may post again). */
void coil__posts_close(coil_runtime *rt) {
  rt->posts.closing = 1;
  for (;;) {
    pthread_mutex_lock(&posts_lock);
    if (!rt->posts.head) {
      rt->posts.closed = 1;
      pthread_mutex_unlock(&posts_lock);
      return;
    }
    pthread_mutex_unlock(&posts_lock);
    coil__posts_run(rt);
  }
}
