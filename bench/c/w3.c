/* W3 timers, the C floor: N timers, timer i fires after (i mod 1000) ms;
 * wait for them all and print how many fired. */
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

static long count;

static void on_close(uv_handle_t *h) { free(h); }

static void on_timer(uv_timer_t *t) {
  count++;
  uv_close((uv_handle_t *)t, on_close);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000;
  uv_loop_t *loop = uv_default_loop();
  for (long i = 0; i < n; i++) {
    uv_timer_t *t = malloc(sizeof *t);
    if (!t) return 1;
    uv_timer_init(loop, t);
    uv_timer_start(t, on_timer, (uint64_t)(i % 1000), 0);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  printf("count %ld\n", count);
  return uv_loop_close(loop) != 0;
}
