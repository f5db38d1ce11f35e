/*
 * A tiny host built by spec/rockspec_spec.lua against an installed coil
 * with nothing but `pkg-config --cflags --libs coil`: it proves that the
 * installed coil.pc, header and library are enough to embed coil.
 */
#include <stdio.h>

#include <coil.h>

int main(void) {
  coil_runtime *rt;
  int status;
  if (coil_new(&rt, NULL) != 0) return 2;
  if (coil_spawn_string(rt,
                        "local coil = require 'coil'; coil.sleep(0.01); "
                        "print('pc consumer: coil ' .. coil.version)",
                        "=pc_consumer") != 0) {
    fprintf(stderr, "pc_consumer: %s\n", coil_last_error(rt));
    coil_free(rt);
    return 3;
  }
  status = coil_run(rt);
  coil_free(rt);
  return status;
}
