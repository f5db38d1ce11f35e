/* W2 switch, the C floor: one task yields to the loop M times, one
 * uv_idle turn per yield (each turn polls for I/O with a zero timeout). */
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

static long count, m;

static void on_turn(uv_idle_t *h) {
  if (++count == m) uv_idle_stop(h);
}

int main(int argc, char **argv) {
  m = argc > 1 ? atol(argv[1]) : 1000000;
  uv_loop_t *loop = uv_default_loop();
  uv_idle_t idle;
  uv_idle_init(loop, &idle);
  uv_idle_start(&idle, on_turn);
  uv_run(loop, UV_RUN_DEFAULT);
  printf("count %ld\n", count);
  uv_close((uv_handle_t *)&idle, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop) != 0;
}
