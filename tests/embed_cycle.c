/*
 * create -> run -> shutdown -> free, repeated in one process: run under
 * valgrind by CTest to show that nothing leaks across runtimes.
 */
#include <stdio.h>
#include <stdlib.h>

#include "coil.h"

static const char plugin[] =
    "local coil = require 'coil'\n"
    "local t = coil.uv.new_timer()\n"
    "t:start(1, 1, function() end)\n"
    "for i = 1, 5 do\n"
    "  coil.spawn(function() coil.defer(function() coil.sleep(0) end) "
    "coil.sleep(60) end)\n"
    "end\n"
    "coil.spawn(function() error('unseen, on purpose') end)\n"
    "coil.sleep(0.001)\n"
    "coil.shutdown(0)\n"
    "coil.sleep(60)\n";

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 100, i;
  for (i = 0; i < n; i++) {
    coil_config cfg;
    coil_runtime *rt;
    int status;
    coil_config_init(&cfg);
    cfg.quiet = 1;
    if (coil_new(&rt, &cfg) != 0) return 1;
    if (coil_spawn_string(rt, plugin, "=cycle") != 0) return 1;
    status = coil_run(rt);
    coil_free(rt);
    if (status != 0) {
      fprintf(stderr, "cycle %d: status %d\n", i, status);
      return 1;
    }
  }
  printf("%d cycles\n", n);
  return 0;
}
