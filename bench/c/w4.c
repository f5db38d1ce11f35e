/* W4 shutdown, the C floor: N tasks sleep 3600 s. On SIGINT every task
 * is cancelled; its cleanup yields to the loop once (one uv_idle turn),
 * then counts itself. Prints READY once all are asleep and
 * `cleaned N` before it exits. */
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

typedef struct task {
  uv_timer_t timer; /* the 3600 s sleep */
  struct task *next;
} task;

static task *head, *tail; /* tasks whose cleanup runs on the next turn */
static uv_idle_t idle;
static uv_signal_t sigint;
static task **tasks;
static long n, cleaned;

static void on_close(uv_handle_t *h) { free(h); } /* timer is first */

static void on_turn(uv_idle_t *h) {
  for (task *t = head, *next; t; t = next) {
    next = t->next;
    cleaned++;
    uv_close((uv_handle_t *)&t->timer, on_close);
  }
  head = tail = NULL;
  uv_close((uv_handle_t *)h, NULL);
}

static void on_sigint(uv_signal_t *s, int signum) {
  (void)signum;
  uv_close((uv_handle_t *)s, NULL);
  for (long i = 0; i < n; i++) { /* cancel: stop the sleep, queue cleanup */
    task *t = tasks[i];
    uv_timer_stop(&t->timer);
    t->next = NULL;
    if (tail) tail->next = t; else head = t;
    tail = t;
  }
  uv_idle_start(&idle, on_turn);
}

static void on_timer(uv_timer_t *t) { (void)t; } /* never: 3600 s */

int main(int argc, char **argv) {
  n = argc > 1 ? atol(argv[1]) : 100000;
  uv_loop_t *loop = uv_default_loop();
  tasks = malloc((size_t)n * sizeof *tasks);
  if (!tasks) return 1;
  for (long i = 0; i < n; i++) {
    task *t = malloc(sizeof *t);
    if (!t) return 1;
    uv_timer_init(loop, &t->timer);
    uv_timer_start(&t->timer, on_timer, 3600 * 1000, 0);
    tasks[i] = t;
  }
  uv_idle_init(loop, &idle);
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigint, on_sigint, SIGINT);
  printf("READY\n");
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  printf("cleaned %ld\n", cleaned);
  free(tasks);
  return uv_loop_close(loop) != 0;
}
