/*
 * The public C API of include/coil.h: a runtime is a Lua state and a loop
 * (its own or the host's); everything here goes through the layers below
 * (spawn.c to start tasks, shutdown.c to drive and end a run).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "coil_internal.h"

static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  coil__messagef(coil__rt(L), "unprotected error: %s", msg ? msg : "?");
  abort();
}

/* ---- public API -------------------------------------------------------------------- */

void coil_config_init(coil_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->grace = 5.0;
}

static void set_error(coil_runtime *rt, const char *msg) {
  snprintf(rt->last_error, sizeof rt->last_error, "%s", msg ? msg : "");
}

const char *coil_last_error(coil_runtime *rt) { return rt->last_error; }

static int open_lua(lua_State *L) {
  coil_runtime *rt = (coil_runtime *)lua_touserdata(L, 1);
  luaL_openlibs(L);
  coil__open(L, rt);
  return 0;
}

int coil_new(coil_runtime **out, const coil_config *cfg) {
  coil_runtime *rt;
  coil_config defaults;
  int r;
  *out = NULL;
  if (!cfg) {
    coil_config_init(&defaults);
    cfg = &defaults;
  }
  if (cfg->grace < 0) return COIL_EINVAL;
  rt = (coil_runtime *)calloc(1, sizeof *rt);
  if (!rt) return COIL_ENOMEM;
  rt->grace = cfg->grace;
  rt->quiet = cfg->quiet;
  rt->mem_limit = cfg->memory_limit;
  rt->on_closed = cfg->on_closed;
  rt->on_message = cfg->on_message;
  rt->ud = cfg->ud;
  rt->signals = cfg->signals;
  rt->owns_state = 1;

  if (cfg->loop) {
    rt->loop = cfg->loop;
  } else {
    if (uv_loop_init(&rt->own_loop) != 0) {
      free(rt);
      return COIL_ELOOP;
    }
    rt->loop = &rt->own_loop;
    rt->owns_loop = 1;
  }

  rt->L = lua_newstate(coil__alloc, rt);
  if (!rt->L) {
    if (rt->owns_loop) uv_loop_close(rt->loop);
    coil__pool_free(&rt->pool);
    free(rt);
    return COIL_ENOMEM;
  }
  lua_atpanic(rt->L, panic);
  coil__register_runtime(rt->L, rt);
  coil__install_last_finalizer(rt->L, rt); /* first: finalized last */

  coil__open_handles(rt);

  lua_pushcfunction(rt->L, open_lua);
  lua_pushlightuserdata(rt->L, rt);
  if (lua_pcall(rt->L, 1, 0, 0) != LUA_OK) {
    set_error(rt, lua_tostring(rt->L, -1));
    coil__messagef(rt, "cannot initialise: %s", rt->last_error);
    coil_free(rt);
    return COIL_ENOMEM;
  }
  if (rt->signals) {
    r = coil__signals_install(rt);
    if (r < 0) {
      rt->signals = 0;
      coil_free(rt);
      return r;
    }
  }
  *out = rt;
  return 0;
}

lua_State *coil_lua(coil_runtime *rt) { return rt->L; }
uv_loop_t *coil_loop(coil_runtime *rt) { return rt->loop; }
int coil_exit_signal(coil_runtime *rt) { return rt->run.exit_signal; }

/* Own-loop mode: a runtime whose last run is over starts a new one when it
 * is given work or run again: its handles reopened, nothing of the last
 * run kept (coil__run_reset). */
static void new_run_if_over(coil_runtime *rt) {
  if (rt->owns_loop != 1 || rt->run.phase != PHASE_CLOSED) return;
  if (rt->posts.closing) return; /* coil_free runs the last posts: no new run */
  coil__open_handles(rt);
  coil__run_reset(rt);
  if (rt->signals) coil__signals_install(rt); /* SIGUSR1's handle again */
}

static int spawn_function(coil_runtime *rt, int nargs, int main) {
  lua_State *L = rt->L;
  coil_task *t;
  if (rt->run.phase >= PHASE_CLOSING) {
    lua_pop(L, nargs + 1);
    return COIL_ESTATE;
  }
  t = coil__spawn(L, rt, nargs);
  if (main && !rt->run.main_task) {
    t->flags |= TF_MAIN;
    rt->run.main_task = t;
  }
  return 0;
}

/* Loads the chunk given to the function; pushes it, or sets last_error. */
static int load_checked(coil_runtime *rt, int status) {
  if (status != LUA_OK) {
    set_error(rt, lua_tostring(rt->L, -1));
    lua_pop(rt->L, 1);
    return COIL_ELOAD;
  }
  return 0;
}

int coil_spawn_file(coil_runtime *rt, const char *path, int argc, char **argv) {
  lua_State *L = rt->L;
  int r, i;
  if (path && strcmp(path, "-") == 0) path = NULL;
  new_run_if_over(rt);
  r = load_checked(rt, luaL_loadfile(L, path));
  if (r) return r;
  if (!lua_checkstack(L, argc + 2)) {
    lua_pop(L, 1);
    return COIL_ENOMEM;
  }
  if (!rt->run.main_task) {
    /* the global arg, as lua.c sets it for a script */
    lua_createtable(L, argc, 1);
    for (i = 0; i < argc; i++) {
      lua_pushstring(L, argv[i]);
      lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, "arg");
  }
  for (i = 1; i < argc; i++) lua_pushstring(L, argv[i]);
  r = spawn_function(rt, argc > 0 ? argc - 1 : 0, 1);
  if (r == 0) lua_pop(L, 1);
  return r;
}

int coil_spawn_string(coil_runtime *rt, const char *chunk, const char *name) {
  int r;
  if (!chunk) return COIL_EINVAL;
  new_run_if_over(rt);
  r = load_checked(rt, luaL_loadbuffer(rt->L, chunk, strlen(chunk),
                                       name ? name : "=(string)"));
  if (r) return r;
  r = spawn_function(rt, 0, 1);
  if (r == 0) lua_pop(rt->L, 1);
  return r;
}

int coil_spawn_call(coil_runtime *rt, int nargs, coil_done_cb done_cb,
                    void *ud) {
  lua_State *L = rt->L;
  void *rec = NULL;
  int r;
  if (nargs < 0 || lua_gettop(L) < nargs + 1 ||
      lua_type(L, -(nargs + 1)) != LUA_TFUNCTION)
    return COIL_EINVAL;
  new_run_if_over(rt);
  if (done_cb && !(rec = coil__done_record_new(done_cb, ud))) {
    lua_pop(L, nargs + 1);
    return COIL_ENOMEM;
  }
  r = spawn_function(rt, nargs, 0);
  if (r) {
    free(rec);
    return r;
  }
  if (rec) coil__attach_done_record(L, rec);
  lua_pop(L, 1);
  return 0;
}

int coil_spawn_main(coil_runtime *rt, int nargs) {
  lua_State *L = rt->L;
  int r;
  if (nargs < 0 || lua_gettop(L) < nargs + 1 ||
      lua_type(L, -(nargs + 1)) != LUA_TFUNCTION)
    return COIL_EINVAL;
  new_run_if_over(rt);
  r = spawn_function(rt, nargs, 1);
  if (r == 0) lua_pop(L, 1);
  return r;
}

int coil_run(coil_runtime *rt) {
  if (!rt) return 1;
  if (rt->owns_loop != 1) {
    coil__message(rt, rt->owns_loop ? "coil_run: the runtime gave up on its "
                                      "loop (a request never finished)"
                                    : "coil_run: the runtime is on the "
                                      "host's loop; the host runs it");
    return 1;
  }
  new_run_if_over(rt);
  coil__drive(rt, 1);
  coil__final_report(rt);
  /* after giving up on a stuck request the loop cannot close: the process
   * is about to exit, and that request with it */
  if (rt->run.abandoned) rt->owns_loop = 2;
  fflush(stdout);
  fflush(stderr);
  return rt->run.exit_status;
}

int coil_shutdown(coil_runtime *rt, int status) {
  if (!rt) return COIL_EINVAL;
  coil__request_async(rt, status);
  return 0;
}

void coil_free(coil_runtime *rt) {
  if (!rt) return;
  if (rt->in_on_closed) {
    rt->free_pending = 1; /* done once on_closed returns */
    return;
  }
  coil__shutdown_now(rt);
  if (rt->run.phase != PHASE_CLOSED) {
    if (rt->owns_loop != 1) {
      /* the host's loop finishes the closes; the last one frees */
      rt->free_pending = 1;
      return;
    }
    while (rt->run.phase != PHASE_CLOSED) uv_run(rt->loop, UV_RUN_ONCE);
  }
  coil__teardown(rt);
}

const char *coil_strerror(int code) {
  switch (code) {
  case 0:
    return "success";
#define XX(c, v, msg)                                                          \
  case COIL_##c:                                                               \
    return msg;
    COIL_ERRNO_MAP(XX)
#undef XX
  default:
    return "unknown error";
  }
}

const char *coil_version_string(void) {
  static char buf[128];
  if (!buf[0])
    snprintf(buf, sizeof buf, "coil %s, %s, libuv %s, luv %s",
             COIL_VERSION_STRING, LUA_RELEASE, uv_version_string(),
             COIL_LUV_VERSION);
  return buf;
}
