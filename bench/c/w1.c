/* W1 spawn, the C floor: N tasks; task i yields to the loop once and
 * returns i; the main task gathers them and prints the sum.
 * A task is a heap struct on a run queue that one uv_idle handle drains
 * once per loop turn, as any C scheduler on libuv would do it. */
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

typedef struct task {
  struct task *next;
  long i;
  int started;
} task;

static task *head, *tail; /* tasks to run on the next loop turn */
static uv_idle_t idle;
static long long sum;

static void on_turn(uv_idle_t *h);

static void schedule(task *t) {
  t->next = NULL;
  if (tail) tail->next = t; else head = t;
  tail = t;
  uv_idle_start(&idle, on_turn); /* no-op when already started */
}

static void on_turn(uv_idle_t *h) {
  task *t = head;
  head = tail = NULL;
  while (t) {
    task *next = t->next;
    if (!t->started) {          /* first run: yield to the loop once */
      t->started = 1;
      schedule(t);
    } else {                    /* resumed: return i to the gatherer */
      sum += t->i;
      free(t);
    }
    t = next;
  }
  if (!head) uv_idle_stop(h);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000;
  uv_loop_t *loop = uv_default_loop();
  uv_idle_init(loop, &idle);
  for (long i = 0; i < n; i++) {
    task *t = calloc(1, sizeof *t);
    if (!t) return 1;
    t->i = i;
    schedule(t);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  printf("sum %lld\n", sum);
  uv_close((uv_handle_t *)&idle, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop) != 0;
}
