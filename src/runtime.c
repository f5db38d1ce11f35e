/*
 * The runtime: a Lua state, a loop (its own or the host's), the handles coil
 * drives it with, and the public C API of include/coil.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "coil_internal.h"

static const char rt_key = 'r'; /* registry[&rt_key] = light userdata rt */

void coil__register_runtime(lua_State *L, coil_runtime *rt) {
  lua_pushlightuserdata(L, rt);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &rt_key);
}

coil_runtime *coil__rt(lua_State *L) {
  coil_runtime *rt;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &rt_key);
  rt = (coil_runtime *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return rt;
}

/* ---- messages ----------------------------------------------------------- */

/* Writes "coil: " and text to stderr; every further line is indented, so a
 * message is always told apart from the script's own output. */
void coil__message(coil_runtime *rt, const char *text) {
  const char *p = text, *nl;
  (void)rt;
  fputs("coil: ", stderr);
  if (strncmp(p, "coil: ", 6) == 0) p += 6;
  while ((nl = strchr(p, '\n')) != NULL) {
    fwrite(p, 1, (size_t)(nl - p + 1), stderr);
    fputs("  ", stderr);
    p = nl + 1;
  }
  fputs(p, stderr);
  fputc('\n', stderr);
  fflush(stderr);
}

void coil__messagef(coil_runtime *rt, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  coil__message(rt, buf);
}

/* Reports the error at idx (a traceback string from coil__msgh, usually) as
 * "coil: what: error". */
void coil__report_error(lua_State *L, const char *what, int idx) {
  coil_runtime *rt = NULL;
  const char *err;
  idx = lua_absindex(L, idx);
  err = luaL_tolstring(L, idx, NULL);
  if (what) {
    lua_pushfstring(L, "%s: %s", what, err);
    coil__message(rt, lua_tostring(L, -1));
    lua_pop(L, 1);
  } else {
    coil__message(rt, err);
  }
  lua_pop(L, 1);
}

/* The message handler of coil's one protected-call path (lua.c's msghandler):
 * Cancelled passes through untouched; anything else becomes a string with
 * the traceback of where it was raised, naming the task. */
int coil__msgh(lua_State *L) {
  const char *msg;
  coil_runtime *rt;
  if (lua_type(L, 1) == LUA_TTABLE && coil__is_cancelled(L, 1)) return 1;
  msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
  }
  rt = coil__rt(L);
  coil__traceback(L, L, msg,
                  rt && rt->current && rt->current->co == L ? rt->current
                                                           : NULL);
  return 1;
}

/* lua_pcall through coil__msgh; on error the message (with traceback) or the
 * Cancelled object is on top. */
int coil__pcall(lua_State *L, int nargs, int nresults) {
  int base = lua_gettop(L) - nargs, st;
  lua_pushcfunction(L, coil__msgh);
  lua_insert(L, base);
  st = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  return st;
}

/* ---- memory ------------------------------------------------------------------ */

/* The allocator keeps count so that a plugin can be held to memory_limit.
 * The limit is enforced only while the runtime's Lua code runs (where a
 * failure is an ordinary, catchable "not enough memory" error), never in
 * coil's own bookkeeping between resumes, which could not recover. Once hit,
 * the runtime is shut down (coil__check_memory) with a quarter more room so
 * that cleanup can run. */
static void *coil_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  coil_runtime *rt = (coil_runtime *)ud;
  if (ptr == NULL) osize = 0;
  if (nsize == 0) {
    free(ptr);
    rt->mem_used -= osize;
    return NULL;
  }
  if (nsize > osize && (rt->mem_limit || rt->teardown_stop) &&
      (atomic_load_explicit(&rt->running_L, memory_order_relaxed) != NULL ||
       atomic_load_explicit(&rt->teardown, memory_order_relaxed))) {
    size_t limit = rt->mem_limit;
    /* the host asked to stop a teardown that does not end (a __gc that
     * never returns: hooks do not run in finalizers, so this is how) */
    if (atomic_load_explicit(&rt->teardown_stop, memory_order_relaxed) &&
        atomic_load_explicit(&rt->teardown, memory_order_relaxed))
      return NULL;
    if (!limit) goto grant;
    if (rt->mem_exceeded) limit += limit / 4;
    if (rt->mem_used + (nsize - osize) > limit) {
      /* Lua collects garbage and asks again with the same arguments: only a
       * second refusal of the same request means the limit is really hit */
      if (rt->refused_ptr == ptr && rt->refused_size == nsize) {
        if (!rt->mem_exceeded) rt->mem_exceeded = 1;
      } else {
        rt->refused_ptr = ptr;
        rt->refused_size = nsize;
      }
      return NULL;
    }
  }
grant:
  rt->refused_size = 0;
  ptr = realloc(ptr, nsize);
  if (ptr) rt->mem_used += nsize - osize;
  return ptr;
}

/* After Lua code ran: a runtime that hit its memory limit is shut down. */
void coil__check_memory(coil_runtime *rt) {
  if (rt->mem_exceeded != 1) return;
  rt->mem_exceeded = 2;
  coil__messagef(rt, "memory limit of %zu bytes exceeded; shutting down",
                 rt->mem_limit);
  coil__request(rt, 1, 0, "memory limit");
}

static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "coil: unprotected error: %s\n", msg ? msg : "?");
  fflush(stderr);
  abort();
}

/* ---- loop handles --------------------------------------------------------------- */

static void on_check(uv_check_t *h) {
  coil_runtime *rt = (coil_runtime *)h->data;
  coil__run_ready(rt);
}

static void on_async(uv_async_t *h) { coil__on_async((coil_runtime *)h->data); }

/* Opens coil's own handles on rt->loop (again, after a shutdown closed them,
 * for coil.run in a module) and resets the per-run state. */
void coil__open_handles(coil_runtime *rt) {
  uv_idle_init(rt->loop, &rt->idle);
  uv_check_init(rt->loop, &rt->check);
  uv_timer_init(rt->loop, &rt->timer);
  uv_timer_init(rt->loop, &rt->grace_timer);
  uv_async_init(rt->loop, &rt->async, on_async);
  rt->idle.data = rt->check.data = rt->timer.data = rt->grace_timer.data =
      rt->async.data = rt;
  uv_check_start(&rt->check, on_check);
  uv_unref((uv_handle_t *)&rt->check);
  /* On its own loop the runtime ends when nothing is left; on a host's loop
   * it is a resource, like an open handle, until it is shut down. */
  if (rt->owns_loop || rt->module) uv_unref((uv_handle_t *)&rt->async);
  uv_unref((uv_handle_t *)&rt->grace_timer);
  rt->timer_due = 0;
  rt->handles_closing = 0;
  rt->closing_count = 0;
  rt->closed_notified = 0;
  rt->phase = PHASE_RUN;
  atomic_store(&rt->wake_ok, 1);
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
  rt->ud = cfg->ud;
  rt->signals = cfg->signals;
  rt->owns_state = 1;
  rt->exit_status = 0;

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

  rt->L = lua_newstate(coil_alloc, rt);
  if (!rt->L) {
    if (rt->owns_loop) uv_loop_close(rt->loop);
    free(rt);
    return COIL_ENOMEM;
  }
  lua_atpanic(rt->L, panic);
  coil__register_runtime(rt->L, rt);

  coil__open_handles(rt);

  lua_pushcfunction(rt->L, open_lua);
  lua_pushlightuserdata(rt->L, rt);
  if (lua_pcall(rt->L, 1, 0, 0) != LUA_OK) {
    set_error(rt, lua_tostring(rt->L, -1));
    fprintf(stderr, "coil: cannot initialise: %s\n", rt->last_error);
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
int coil_exit_signal(coil_runtime *rt) { return rt->exit_signal; }

static int spawn_function(coil_runtime *rt, int nargs, int main) {
  lua_State *L = rt->L;
  coil_task *t;
  if (rt->phase >= PHASE_CLOSING) {
    lua_pop(L, nargs + 1);
    return COIL_ESTATE;
  }
  t = coil__spawn(L, rt, nargs);
  if (main && !rt->main_task) {
    t->flags |= TF_MAIN;
    rt->main_task = t;
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

int coil_spawn_file(coil_runtime *rt, const char *path, int argc,
                    char **argv) {
  lua_State *L = rt->L;
  int r, i;
  if (path && strcmp(path, "-") == 0) path = NULL;
  r = load_checked(rt, luaL_loadfile(L, path));
  if (r) return r;
  if (!lua_checkstack(L, argc + 2)) {
    lua_pop(L, 1);
    return COIL_ENOMEM;
  }
  if (!rt->main_task) {
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
  r = spawn_function(rt, nargs, 1);
  if (r == 0) lua_pop(L, 1);
  return r;
}

/* Set (by the loop's thread) while the last unseen-error report runs: an
 * interrupt or coil_shutdown that came meanwhile stops its Lua code. (At
 * lua_close itself Lua runs no hooks in __gc: there coil_alloc refuses
 * memory instead.) */
static void teardown_hook(lua_State *L, lua_Debug *ar) {
  coil_runtime *rt = coil__rt(L);
  (void)ar;
  if (rt && (atomic_load(&rt->teardown_stop) ||
             atomic_load(&rt->sig_handled) < atomic_load(&rt->sig_count)))
    luaL_error(L, "coil: the teardown was interrupted");
}

/* The last report, protected: under the limit even coil's own bookkeeping
 * in it may run out of memory. */
static int report_unseen_protected(lua_State *L) {
  coil__report_unseen_all(coil__rt(L));
  return 0;
}

/* Closes the Lua state and, in own-loop mode, the loop. */
void coil__after_loop(coil_runtime *rt) {
  if (!rt->lua_closed && rt->L) {
    int signo;
    /* Lua code runs here still: under the memory limit (coil_alloc), and
     * the report's handlers stoppable by an interrupt or coil_shutdown */
    atomic_store(&rt->teardown, 1);
    lua_sethook(rt->L, teardown_hook, LUA_MASKCOUNT, 1000);
    lua_pushcfunction(rt->L, report_unseen_protected);
    if (lua_pcall(rt->L, 0, 0, 0) != LUA_OK) lua_pop(rt->L, 1);
    lua_sethook(rt->L, NULL, 0, 0);
    lua_close(rt->L);
    rt->L = NULL;
    rt->lua_closed = 1;
    atomic_store(&rt->teardown, 0);
    if (atomic_load(&rt->teardown_stop)) {
      if (!rt->exit_set) {
        rt->exit_set = 1;
        rt->exit_status = atomic_load(&rt->shutdown_request_status);
      }
      if (!rt->quiet)
        coil__message(rt, "coil_shutdown cut the teardown short: Lua code "
                          "still running then (a __gc, an on_error "
                          "handler) was stopped");
    }
    /* an interrupt that came while the loop no longer acted on signals
     * (handles closing, __gc at lua_close) still ends the run by it; a
     * later one goes on when the runtime lets the signals go */
    signo = coil__signals_unhandled(rt);
    if (signo && !rt->exit_signal) {
      rt->exit_signal = signo;
      rt->exit_status = 128 + signo;
    }
  }
  coil__heap_free(rt);
  fflush(stdout);
  fflush(stderr);
}

int coil_run(coil_runtime *rt) {
  if (!rt || !rt->owns_loop || rt->phase == PHASE_CLOSED) return COIL_EINVAL;
  for (;;) {
    coil__luv_running(rt, 1);
    uv_run(rt->loop, UV_RUN_DEFAULT);
    coil__luv_running(rt, 0);
    if (rt->abandoned) break;
    /* uv.stop() from a script returns early: not an end, go on */
    if (uv_loop_alive(rt->loop)) continue;
    if (rt->phase >= PHASE_CLOSING) break;
    if (rt->live == 0) {
      /* nothing left: close what remains (unreferenced handles) */
      rt->phase = PHASE_CLOSING;
      coil__close_handles(rt);
      continue;
    }
    coil__deadlock(rt);
  }
  if (!uv_is_closing((uv_handle_t *)&rt->grace_timer)) {
    uv_close((uv_handle_t *)&rt->grace_timer, NULL);
    if (!rt->abandoned) uv_run(rt->loop, UV_RUN_NOWAIT);
  }
  rt->phase = PHASE_CLOSED;
  coil__after_loop(rt);
  if (rt->owns_loop) {
    /* after giving up on a stuck request the loop cannot close: the
     * process is about to exit, and that request with it */
    int r = rt->abandoned ? 0 : uv_loop_close(rt->loop);
    if (r != 0) {
      fprintf(stderr, "coil: internal error: the loop did not close (%s)\n",
              uv_strerror(r));
    }
    rt->owns_loop = 2; /* closed, or abandoned */
  }
  return rt->exit_status;
}

int coil_shutdown(coil_runtime *rt, int status) {
  int expected = 0;
  if (!rt) return COIL_EINVAL;
  if (atomic_load(&rt->teardown)) {
    /* the run is over and Lua code at teardown does not end: stop it */
    if (atomic_compare_exchange_strong(&rt->shutdown_claimed, &expected, 1))
      atomic_store(&rt->shutdown_request_status, status);
    atomic_store(&rt->teardown_stop, 1);
    return 0;
  }
  /* the first request's status wins, whichever thread gets there first */
  if (atomic_compare_exchange_strong(&rt->shutdown_claimed, &expected, 1)) {
    atomic_store(&rt->shutdown_request_status, status);
    atomic_store(&rt->shutdown_requested, 1);
    /* Lua code that never yields is reached too (after 50 ms) */
    coil__interrupt_running(rt);
  }
  if (atomic_load(&rt->wake_ok)) uv_async_send(&rt->async);
  return 0;
}

void coil_free(coil_runtime *rt) {
  if (!rt) return;
  if (rt->in_on_closed) {
    rt->free_pending = 1; /* done once on_closed returns */
    return;
  }
  if (rt->phase < PHASE_CLOSING) {
    /* a host freeing a runtime it did not shut down: no grace, no hooks */
    coil__force_all(rt, NULL);
    coil__close_handles(rt);
  }
  if (rt->phase != PHASE_CLOSED) {
    if (rt->owns_loop != 1) {
      /* the host's loop finishes the closes; the last one frees */
      rt->free_pending = 1;
      return;
    }
    while (rt->phase != PHASE_CLOSED) uv_run(rt->loop, UV_RUN_ONCE);
  }
  coil__after_loop(rt);
  if (rt->owns_loop == 1) {
    /* the grace timer bounded the teardown: it goes last */
    if (!uv_is_closing((uv_handle_t *)&rt->grace_timer))
      uv_close((uv_handle_t *)&rt->grace_timer, NULL);
    while (uv_loop_close(rt->loop) == UV_EBUSY) uv_run(rt->loop, UV_RUN_ONCE);
  }
  /* signals are watched until the very end (an interrupt that arrives now
   * goes on to the process's own disposition) */
  coil__signals_uninstall(rt);
  free(rt);
}

const char *coil_strerror(int code) {
  switch (code) {
  case 0:
    return "success";
#define XX(c, msg)                                                            \
  case COIL_##c:                                                              \
    return msg;
    COIL_ERRNO_MAP(XX)
#undef XX
  default:
    return "unknown error";
  }
}

/* Flushes f unless another thread, or the code this signal handler
 * interrupted in another thread, holds its lock: dying must not wait. */
static void flush_if_free(FILE *f) {
  if (ftrylockfile(f) != 0) return;
  fflush_unlocked(f);
  funlockfile(f);
}

void coil_die_by_signal(int signo) {
  sigset_t set;
  struct sigaction sa;
  /* also called from the interrupt handler (the third interrupt) */
  flush_if_free(stdout);
  flush_if_free(stderr);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  sigaction(signo, &sa, NULL);
  sigemptyset(&set);
  sigaddset(&set, signo);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  raise(signo);
  /* still alive: PID 1 in a container ignores default actions */
  _exit(128 + signo);
}

const char *coil_version_string(void) {
  static char buf[128];
  if (!buf[0])
    snprintf(buf, sizeof buf, "coil %s, %s, libuv %s, luv %s",
             COIL_VERSION_STRING, LUA_RELEASE, uv_version_string(),
             COIL_LUV_VERSION);
  return buf;
}
