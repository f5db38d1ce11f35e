/* W6 churn, the C floor: N short tasks started over time, at most 1000
 * alive at once; each yields to the loop once (one uv_idle turn) and
 * returns. A task is a heap struct on the run queue of one uv_idle handle;
 * when one ends, the next is started in its slot. */
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#define WINDOW 1000

typedef struct task {
  struct task *next;
  long i;
  int started;
} task;

static task *head, *tail; /* tasks to run on the next loop turn */
static uv_idle_t idle;
static long n, next_i, done;
static long long sum;

static void schedule(task *t) {
  t->next = NULL;
  if (tail) tail->next = t; else head = t;
  tail = t;
}

static int start_one(void) {
  task *t;
  if (next_i >= n) return 0;
  t = calloc(1, sizeof *t);
  if (!t) abort();
  t->i = next_i++;
  schedule(t);
  return 1;
}

static void on_turn(uv_idle_t *h) {
  task *t = head;
  head = tail = NULL;
  while (t) {
    task *next = t->next;
    if (!t->started) { /* first run: yield to the loop once */
      t->started = 1;
      schedule(t);
    } else { /* resumed: finish, and start another in the free slot */
      sum += t->i;
      done++;
      free(t);
      start_one();
    }
    t = next;
  }
  if (!head) uv_idle_stop(h);
}

int main(int argc, char **argv) {
  uv_loop_t *loop = uv_default_loop();
  n = argc > 1 ? atol(argv[1]) : 1000000;
  uv_idle_init(loop, &idle);
  for (int k = 0; k < WINDOW && start_one(); k++) {}
  uv_idle_start(&idle, on_turn);
  uv_run(loop, UV_RUN_DEFAULT);
  printf("churned %ld sum %lld\n", done, sum);
  uv_close((uv_handle_t *)&idle, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop) != 0;
}
