/*
 * coil_post from several threads at once: every post runs exactly once, on
 * the loop's thread, in order per thread, including posts that race a
 * shutdown and posts made after the run ended (they run in coil_free).
 */
#include <pthread.h>
#include <stdatomic.h>

#include "coil.h"
#include "runner.h"

#define THREADS 4
#define POSTS 3000

typedef struct {
  int thread, seq;
} post_arg;

static pthread_t loop_thread;
static int next_seq[THREADS]; /* touched on the loop's thread only */
static atomic_int ran, out_of_order, wrong_thread, refused;
static coil_runtime *the_rt;
static atomic_int go;

static void on_post(coil_runtime *rt, void *ud) {
  post_arg *a = (post_arg *)ud;
  if (!pthread_equal(pthread_self(), loop_thread))
    atomic_fetch_add(&wrong_thread, 1);
  if (rt != the_rt || a->seq != next_seq[a->thread])
    atomic_fetch_add(&out_of_order, 1);
  next_seq[a->thread] = a->seq + 1;
  atomic_fetch_add(&ran, 1);
  free(a);
}

static void *poster(void *p) {
  int thread = (int)(intptr_t)p, i;
  while (!atomic_load(&go)) sched_yield();
  for (i = 0; i < POSTS; i++) {
    post_arg *a = (post_arg *)malloc(sizeof *a);
    int r;
    a->thread = thread;
    a->seq = i;
    r = coil_post(the_rt, on_post, a);
    if (r != 0) {
      free(a);
      atomic_fetch_add(&refused, 1);
    }
    if (i % 500 == 0) usleep(1000); /* spread them over the run */
  }
  return NULL;
}

static void run_with_posters(const char *script) {
  coil_config cfg;
  pthread_t threads[THREADS];
  int i;
  coil_config_init(&cfg);
  loop_thread = pthread_self();
  CHECK_EQ(coil_new(&the_rt, &cfg), 0);
  CHECK_EQ(coil_spawn_string(the_rt, script, "=post_test"), 0);
  for (i = 0; i < THREADS; i++)
    CHECK_EQ(pthread_create(&threads[i], NULL, poster, (void *)(intptr_t)i), 0);
  atomic_store(&go, 1);
  CHECK_EQ(coil_run(the_rt), 0);
  /* posts may still come: they wait for coil_free, which runs them */
  for (i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
  coil_free(the_rt);
  CHECK_EQ(atomic_load(&refused), 0);
  CHECK_EQ(atomic_load(&ran), THREADS * POSTS);
  CHECK_EQ(atomic_load(&out_of_order), 0);
  CHECK_EQ(atomic_load(&wrong_thread), 0);
  for (i = 0; i < THREADS; i++) CHECK_EQ(next_seq[i], POSTS);
}

/* The loop runs while the threads post. */
static void test_many_threads(void) {
  run_with_posters("require('coil').sleep(0.2)");
}

/* A shutdown starts while the threads post: the posts made during it run,
 * and so do the ones made after coil_run returned. */
static void test_racing_shutdown(void) {
  run_with_posters(
      "local coil = require 'coil'\n"
      "coil.spawn(function() coil.sleep(0.005) coil.shutdown(0) end)\n"
      "coil.sleep(10)");
}

/* A post may start a task; after the shutdown began it still runs, with
 * the runtime refusing new tasks once the run is over. */
static int spawn_result = 1, spawned_ran;

static int mark(lua_State *L) {
  (void)L;
  spawned_ran = 1;
  return 0;
}

static void spawn_from_post(coil_runtime *rt, void *ud) {
  lua_State *L = coil_lua(rt);
  (void)ud;
  lua_pushcfunction(L, mark);
  spawn_result = coil_spawn_call(rt, 0, NULL, NULL);
}

static void *post_spawn(void *p) {
  CHECK_EQ(coil_post((coil_runtime *)p, spawn_from_post, NULL), 0);
  return NULL;
}

static void test_spawn_from_post(void) {
  coil_runtime *rt;
  pthread_t t;
  CHECK_EQ(coil_new(&rt, NULL), 0);
  CHECK_EQ(coil_spawn_string(rt, "require('coil').sleep(0.1)", "=main"), 0);
  CHECK_EQ(pthread_create(&t, NULL, post_spawn, rt), 0);
  pthread_join(t, NULL);
  CHECK_EQ(coil_run(rt), 0);
  CHECK_EQ(spawn_result, 0);
  CHECK_EQ(spawned_ran, 1);
  /* the run is over: a post made now runs in coil_free, and may not start
   * a new run there */
  spawn_result = 1;
  CHECK_EQ(pthread_create(&t, NULL, post_spawn, rt), 0);
  pthread_join(t, NULL);
  coil_free(rt);
  CHECK_EQ(spawn_result, COIL_ESTATE);
}

static void noop(coil_runtime *rt, void *ud) {
  (void)rt;
  (void)ud;
}

static void test_bad_arguments(void) {
  coil_runtime *rt;
  CHECK_EQ(coil_post(NULL, noop, NULL), COIL_EINVAL);
  CHECK_EQ(coil_new(&rt, NULL), 0);
  CHECK_EQ(coil_post(rt, NULL, NULL), COIL_EINVAL);
  coil_free(rt);
}

int main(int argc, char **argv) {
  static const test_case cases[] = {{"many_threads", test_many_threads},
                                    {"racing_shutdown", test_racing_shutdown},
                                    {"spawn_from_post", test_spawn_from_post},
                                    {"bad_arguments", test_bad_arguments},
                                    {NULL, NULL}};
  return run_tests(cases, argc, argv, 60);
}
