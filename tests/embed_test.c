/*
 * The C embedding API (include/coil.h): coil as a plugin runtime inside
 * another program and its loop. Each case runs in its own process.
 */
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "coil.h"
#include "runner.h"

/* ---- helpers ----------------------------------------------------------- */

typedef struct {
  int closed;
  int status;
} closed_record;

static void on_closed(coil_runtime *rt, int status, void *ud) {
  closed_record *rec = (closed_record *)ud;
  (void)rt;
  rec->closed++;
  rec->status = status;
}

/* The config of a plugin on a host loop, reporting to rec. */
static void plugin_config(coil_config *cfg, uv_loop_t *loop,
                          closed_record *rec) {
  coil_config_init(cfg);
  cfg->loop = loop;
  cfg->grace = 1.0;
  cfg->on_closed = on_closed;
  cfg->ud = rec;
}

/* A plugin on a host loop running code (the runtime's main task). */
static coil_runtime *new_plugin(uv_loop_t *loop, closed_record *rec,
                                const char *code) {
  coil_config cfg;
  coil_runtime *rt;
  plugin_config(&cfg, loop, rec);
  CHECK_EQ(coil_new(&rt, &cfg), 0);
  if (code) CHECK_EQ(coil_spawn_string(rt, code, "=plugin"), 0);
  return rt;
}

static lua_Integer global_int(coil_runtime *rt, const char *name) {
  lua_State *L = coil_lua(rt);
  lua_Integer v;
  lua_getglobal(L, name);
  v = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- two plugins on a host loop ------------------------------------------ */

static const char counting_plugin[] =
    "local coil = require 'coil'\n"
    "ticks, cleaned = 0, 0\n"
    "coil.defer(function() coil.sleep(0.01); cleaned = 1 end)\n"
    "while true do coil.sleep(0.005); ticks = ticks + 1 end\n";

typedef struct {
  uv_timer_t timer;
  int ticks;
  coil_runtime *a, *b;
  closed_record *ra, *rb;
  lua_Integer b_ticks_at_a_close;
} host_state;

static void host_tick(uv_timer_t *timer) {
  host_state *h = (host_state *)timer->data;
  h->ticks++;
  if (h->ticks == 10) CHECK_EQ(coil_shutdown(h->a, 7), 0);
  if (h->ra->closed && !h->b_ticks_at_a_close)
    h->b_ticks_at_a_close = global_int(h->b, "ticks");
  if (h->ticks == 40) CHECK_EQ(coil_shutdown(h->b, 0), 0);
  if (h->rb->closed) uv_close((uv_handle_t *)&h->timer, NULL);
}

static void test_host_loop_two_plugins(void) {
  uv_loop_t loop;
  host_state h;
  closed_record ra = {0, -1}, rb = {0, -1};
  memset(&h, 0, sizeof h);
  CHECK_EQ(uv_loop_init(&loop), 0);
  h.ra = &ra;
  h.rb = &rb;
  h.a = new_plugin(&loop, &ra, counting_plugin);
  h.b = new_plugin(&loop, &rb, counting_plugin);
  uv_timer_init(&loop, &h.timer);
  h.timer.data = &h;
  uv_timer_start(&h.timer, host_tick, 5, 5);

  uv_run(&loop, UV_RUN_DEFAULT);

  /* A: shut down from the host's timer, its cleanup (which awaits) ran */
  CHECK_EQ(ra.closed, 1);
  CHECK_EQ(ra.status, 7);
  CHECK_EQ(global_int(h.a, "cleaned"), 1);
  /* B kept running after A was gone, and so did the host's timer */
  CHECK(h.b_ticks_at_a_close > 0);
  CHECK(global_int(h.b, "ticks") > h.b_ticks_at_a_close);
  CHECK(h.ticks >= 40);
  CHECK_EQ(rb.closed, 1);
  CHECK_EQ(rb.status, 0);
  CHECK_EQ(global_int(h.b, "cleaned"), 1);
  coil_free(h.a);
  coil_free(h.b);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* ---- coil_shutdown from another thread and from a signal handler ---------- */

static coil_runtime *shared_rt;

static void *shutdown_later(void *arg) {
  (void)arg;
  sleep_ms(50);
  coil_shutdown(shared_rt, 3);
  coil_shutdown(shared_rt, 4); /* idempotent: the first status stays */
  return NULL;
}

static void test_shutdown_from_thread(void) {
  pthread_t thread;
  coil_runtime *rt;
  CHECK_EQ(coil_new(&rt, NULL), 0);
  CHECK_EQ(coil_spawn_string(rt,
                             "local coil = require 'coil'\n"
                             "coil.defer(function() cleaned = true end)\n"
                             "coil.sleep(60)",
                             "=plugin"),
           0);
  shared_rt = rt;
  pthread_create(&thread, NULL, shutdown_later, NULL);
  CHECK_EQ(coil_run(rt), 3);
  pthread_join(thread, NULL);
  coil_free(rt);
}

static void on_usr2(int signo) {
  (void)signo;
  coil_shutdown(shared_rt, 5);
}

static void *signal_later(void *arg) {
  (void)arg;
  sleep_ms(50);
  kill(getpid(), SIGUSR2);
  return NULL;
}

static void test_shutdown_from_signal_handler(void) {
  pthread_t thread;
  struct sigaction sa;
  coil_runtime *rt;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr2;
  sigaction(SIGUSR2, &sa, NULL);
  CHECK_EQ(coil_new(&rt, NULL), 0);
  CHECK_EQ(coil_spawn_string(rt, "require('coil').sleep(60)", "=plugin"), 0);
  shared_rt = rt;
  pthread_create(&thread, NULL, signal_later, NULL);
  CHECK_EQ(coil_run(rt), 5);
  pthread_join(thread, NULL);
  coil_free(rt);
}

static void test_shutdown_before_the_loop_runs(void) {
  coil_runtime *rt;
  CHECK_EQ(coil_new(&rt, NULL), 0);
  CHECK_EQ(coil_spawn_string(rt, "require('coil').sleep(60)", "=plugin"), 0);
  CHECK_EQ(coil_shutdown(rt, 6), 0);
  CHECK_EQ(coil_run(rt), 6);
  coil_free(rt);
}

/* ---- coil_spawn_call ------------------------------------------------------- */

typedef struct {
  int calls, status, nresults;
  lua_Integer sum;
  char error[128];
} call_record;

static void on_call_done(coil_runtime *rt, int status, int nresults, void *ud) {
  call_record *rec = (call_record *)ud;
  lua_State *L = coil_lua(rt);
  int i;
  rec->calls++;
  rec->status = status;
  rec->nresults = nresults;
  if (status == 0) {
    for (i = 1; i <= nresults; i++) rec->sum += lua_tointeger(L, -i);
  } else {
    snprintf(rec->error, sizeof rec->error, "%s", luaL_tolstring(L, -1, NULL));
    lua_pop(L, 1);
  }
}

static void test_spawn_call_results_and_errors(void) {
  coil_runtime *rt;
  lua_State *L;
  call_record ok = {0, -1, -1, 0, ""}, bad = {0, -1, -1, 0, ""};
  CHECK_EQ(coil_new(&rt, NULL), 0);
  L = coil_lua(rt);
  CHECK_EQ(luaL_dostring(
               L, "local coil = require 'coil'\n"
                  "function add3(a, b, c) coil.sleep(0.01) return a, b, c end\n"
                  "function fail(msg) coil.sleep(0) error(msg, 0) end"),
           0);
  lua_getglobal(L, "add3");
  lua_pushinteger(L, 1);
  lua_pushinteger(L, 2);
  lua_pushinteger(L, 3);
  CHECK_EQ(coil_spawn_call(rt, 3, on_call_done, &ok), 0);
  lua_getglobal(L, "fail");
  lua_pushliteral(L, "plugin says no");
  CHECK_EQ(coil_spawn_call(rt, 1, on_call_done, &bad), 0);
  CHECK_EQ(lua_gettop(L), 0);
  /* a bad call fails without calling back */
  lua_pushinteger(L, 1);
  CHECK_EQ(coil_spawn_call(rt, 0, on_call_done, &bad), COIL_EINVAL);
  lua_settop(L, 0);

  CHECK_EQ(coil_run(rt), 0);
  CHECK_EQ(ok.calls, 1);
  CHECK_EQ(ok.status, 0);
  CHECK_EQ(ok.nresults, 3);
  CHECK_EQ(ok.sum, 6);
  CHECK_EQ(bad.calls, 1);
  CHECK_EQ(bad.status, COIL_ELUA);
  CHECK(strcmp(bad.error, "plugin says no") == 0);
  coil_free(rt);
}

/* ---- a plugin can't take the host down ------------------------------------------ */

static void test_memory_limit(void) {
  uv_loop_t loop;
  closed_record rec = {0, -1}, after = {0, -1};
  coil_config cfg;
  coil_runtime *rt, *next;
  CHECK_EQ(uv_loop_init(&loop), 0);
  plugin_config(&cfg, &loop, &rec);
  cfg.memory_limit = 4u << 20;
  CHECK_EQ(coil_new(&rt, &cfg), 0);
  CHECK_EQ(coil_spawn_string(rt,
                             "local coil = require 'coil'\n"
                             "coil.spawn(function()\n"
                             "  coil.defer(function() cleaned = true end)\n"
                             "  coil.sleep(60)\n"
                             "end)\n"
                             "local hog = {}\n"
                             "for i = 1, 1e9 do\n"
                             "  hog[i] = ('x'):rep(100) .. i\n"
                             "  if i % 1000 == 0 then coil.sleep(0) end\n"
                             "end",
                             "=hog"),
           0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(rec.closed, 1);
  CHECK_EQ(rec.status, 1);
  CHECK(lua_getglobal(coil_lua(rt), "cleaned") == LUA_TBOOLEAN);
  coil_free(rt);
  /* the host goes on: a fresh runtime works on the same loop */
  next = new_plugin(&loop, &after, "return 0");
  CHECK_EQ(coil_shutdown(next, 0), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(after.closed, 1);
  coil_free(next);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

static void test_plugin_error_ends_runtime(void) {
  uv_loop_t loop;
  closed_record rec = {0, -1};
  coil_runtime *rt;
  CHECK_EQ(uv_loop_init(&loop), 0);
  rt = new_plugin(&loop, &rec, "error('plugin exploded')");
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(rec.closed, 1);
  CHECK_EQ(rec.status, 1);
  coil_free(rt);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

static void test_host_deadlock(void) {
  uv_loop_t loop;
  closed_record rec = {0, -1};
  coil_runtime *rt;
  CHECK_EQ(uv_loop_init(&loop), 0);
  rt = new_plugin(&loop, &rec,
                  "local coil = require 'coil'\n"
                  "local never = coil.event()\n"
                  "coil.defer(function() cleaned = true end)\n"
                  "never:wait()");
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(rec.closed, 1);
  CHECK_EQ(rec.status, 1);
  CHECK(lua_getglobal(coil_lua(rt), "cleaned") == LUA_TBOOLEAN);
  coil_free(rt);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

static void test_stubborn_plugin_is_forced(void) {
  uv_loop_t loop;
  closed_record rec = {0, -1};
  coil_config cfg;
  coil_runtime *rt;
  CHECK_EQ(uv_loop_init(&loop), 0);
  plugin_config(&cfg, &loop, &rec);
  cfg.grace = 0.1;
  CHECK_EQ(coil_new(&rt, &cfg), 0);
  CHECK_EQ(coil_spawn_string(rt,
                             "local coil = require 'coil'\n"
                             "local x <close> = setmetatable({}, {__close = "
                             "function() closed = true end})\n"
                             "while true do pcall(coil.sleep, 60) end",
                             "=stubborn"),
           0);
  CHECK_EQ(coil_shutdown(rt, 2), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(rec.closed, 1);
  CHECK_EQ(rec.status, 2);
  CHECK(lua_getglobal(coil_lua(rt), "closed") == LUA_TBOOLEAN);
  coil_free(rt);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* Runs a host loop without blocking until *flag is set (or a bound). */
static void run_until(uv_loop_t *loop, const int *flag) {
  int i;
  for (i = 0; i < 2000 && !*flag; i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    sleep_ms(1);
  }
  CHECK(*flag);
}

/* A runtime whose tasks all ended on their own stays open for more calls;
 * on a host's loop it is a resource, like a handle, until shut down. */
static void test_idle_runtime_stays_open(void) {
  uv_loop_t loop;
  closed_record rec = {0, -1};
  call_record call = {0, -1, -1, 0, ""};
  coil_runtime *rt;
  lua_State *L;
  CHECK_EQ(uv_loop_init(&loop), 0);
  rt = new_plugin(&loop, &rec,
                  "local coil = require 'coil'\n"
                  "function twice(x) coil.sleep(0) return 2 * x end");
  for (int i = 0; i < 20; i++) uv_run(&loop, UV_RUN_NOWAIT);
  CHECK_EQ(rec.closed, 0);
  L = coil_lua(rt);
  lua_getglobal(L, "twice");
  lua_pushinteger(L, 21);
  CHECK_EQ(coil_spawn_call(rt, 1, on_call_done, &call), 0);
  run_until(&loop, &call.calls);
  CHECK_EQ(call.sum, 42);
  CHECK_EQ(rec.closed, 0);
  CHECK_EQ(coil_shutdown(rt, 0), 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* returns once the runtime is closed */
  CHECK_EQ(rec.closed, 1);
  coil_free(rt);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* ---- loading, errors, lifetime -------------------------------------------------- */

static void test_load_errors(void) {
  coil_runtime *rt;
  CHECK_EQ(coil_new(&rt, NULL), 0);
  CHECK_EQ(coil_spawn_file(rt, "/no/such/plugin.lua", 0, NULL), COIL_ELOAD);
  CHECK(strstr(coil_last_error(rt), "cannot open /no/such/plugin.lua"));
  CHECK_EQ(coil_spawn_string(rt, "x = = 1", "=broken"), COIL_ELOAD);
  CHECK(strstr(coil_last_error(rt), "broken:1:"));
  CHECK_EQ(coil_spawn_string(rt, NULL, NULL), COIL_EINVAL);
  CHECK_EQ(lua_gettop(coil_lua(rt)), 0);
  CHECK_EQ(coil_run(rt), 0);
  coil_free(rt);
}

static void test_status_and_strerror(void) {
  coil_runtime *rt, *other;
  coil_config cfg;
  CHECK_EQ(coil_new(&rt, NULL), 0);
  CHECK_EQ(coil_spawn_string(rt, "return 3", "=main"), 0);
  CHECK_EQ(coil_run(rt), 3);
  CHECK_EQ(coil_exit_signal(rt), 0);
  coil_free(rt);

  coil_config_init(&cfg);
  cfg.grace = -1;
  CHECK_EQ(coil_new(&rt, &cfg), COIL_EINVAL);
  CHECK(rt == NULL);
  coil_config_init(&cfg);
  cfg.signals = 1;
  CHECK_EQ(coil_new(&rt, &cfg), 0);
  CHECK_EQ(coil_new(&other, &cfg), COIL_EBUSY);
  coil_free(rt);
  CHECK(strcmp(coil_strerror(COIL_EBUSY), "another runtime already handles "
                                          "the process's signals") == 0);
  CHECK(strcmp(coil_strerror(0), "success") == 0);
  CHECK(strstr(coil_version_string(), "coil ") == coil_version_string());
}

static void test_free_without_running(void) {
  uv_loop_t loop;
  closed_record rec = {0, -1};
  coil_runtime *rt;
  CHECK_EQ(uv_loop_init(&loop), 0);
  rt = new_plugin(&loop, &rec,
                  "local coil = require 'coil'\n"
                  "coil.uv.new_timer():start(1000, 1000, function() end)\n"
                  "coil.sleep(60)");
  coil_free(rt); /* finishes once the host's loop runs the closes */
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(&loop), 0);

  CHECK_EQ(coil_new(&rt, NULL), 0); /* own loop, never run */
  CHECK_EQ(coil_spawn_string(rt, "require('coil').sleep(60)", "=idle"), 0);
  coil_free(rt);
}

/* ---- regressions ------------------------------------------------------------------ */

static void free_from_on_closed(coil_runtime *rt, int status, void *ud) {
  closed_record *rec = (closed_record *)ud;
  rec->closed++;
  rec->status = status;
  coil_free(rt); /* allowed: takes effect once on_closed returns */
}

static void test_free_from_on_closed(void) {
  uv_loop_t loop;
  closed_record rec = {0, -1};
  coil_config cfg;
  coil_runtime *rt;
  CHECK_EQ(uv_loop_init(&loop), 0);
  coil_config_init(&cfg);
  cfg.loop = &loop;
  cfg.on_closed = free_from_on_closed;
  cfg.ud = &rec;
  CHECK_EQ(coil_new(&rt, &cfg), 0);
  CHECK_EQ(coil_spawn_string(rt, "require('coil').sleep(60)", "=p"), 0);
  CHECK_EQ(coil_shutdown(rt, 0), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(rec.closed, 1);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* Runs chunk in a plugin held to a 4 MiB limit on a host loop until it sets
 * the global `survived`, then shuts it down: the limit never stopped it. */
static void survives_under_limit(const char *chunk, const char *name) {
  uv_loop_t loop;
  closed_record rec = {0, -1};
  coil_config cfg;
  coil_runtime *rt;
  CHECK_EQ(uv_loop_init(&loop), 0);
  plugin_config(&cfg, &loop, &rec);
  cfg.memory_limit = 4u << 20;
  CHECK_EQ(coil_new(&rt, &cfg), 0);
  CHECK_EQ(coil_spawn_string(rt, chunk, name), 0);
  for (int i = 0;
       i < 5000 && lua_getglobal(coil_lua(rt), "survived") == LUA_TNIL; i++) {
    lua_pop(coil_lua(rt), 1);
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  CHECK_EQ(lua_toboolean(coil_lua(rt), -1), 1);
  lua_pop(coil_lua(rt), 1);
  CHECK_EQ(rec.closed, 0);
  CHECK_EQ(coil_shutdown(rt, 0), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(rec.status, 0);
  coil_free(rt);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* Garbage alone never trips the limit: Lua collects and asks again. */
static void test_memory_limit_counts_live_data_only(void) {
  survives_under_limit("local coil = require 'coil'\n"
                       "local keep = {}\n"
                       "for i = 1, 2600 do keep[i] = ('k'):rep(1000) .. i end\n"
                       "for i = 1, 2e5 do local s = ('g'):rep(1000) .. i\n"
                       "  if i % 5000 == 0 then coil.sleep(0) end end\n"
                       "survived = true\n"
                       "coil.stopping():wait()",
                       "=garbage");
}

/* Coroutines of finished tasks kept for reuse hold at most a small share of
 * the limit: after a burst of tasks, live data near the limit still fits. */
static void test_memory_limit_leaves_room_after_tasks(void) {
  survives_under_limit(
      "local coil = require 'coil'\n"
      "local ts = {}\n"
      "for i = 1, 2000 do ts[i] = coil.spawn(coil.sleep, 0) end\n"
      "for i = 1, 2000 do ts[i]:await() end\n"
      "ts = nil\n"
      "local keep = {}\n"
      "for i = 1, 3000 do keep[i] = ('k'):rep(1000) .. i end\n"
      "survived = true\n"
      "coil.stopping():wait()",
      "=burst");
}

static void test_spawn_leaves_stack_clean(void) {
  coil_runtime *rt;
  int i;
  CHECK_EQ(coil_new(&rt, NULL), 0);
  for (i = 0; i < 100; i++) CHECK_EQ(coil_spawn_string(rt, "return", "=c"), 0);
  CHECK_EQ(coil_spawn_file(rt, "/dev/null", 0, NULL), 0);
  CHECK_EQ(lua_gettop(coil_lua(rt)), 0);
  CHECK_EQ(coil_run(rt), 0);
  coil_free(rt);
}

static void *shutdown_busy(void *arg) {
  (void)arg;
  sleep_ms(100);
  coil_shutdown(shared_rt, 9);
  return NULL;
}

/* A plugin that never yields is reached by coil_shutdown from a thread. */
static void test_shutdown_reaches_busy_plugin(void) {
  uv_loop_t loop;
  closed_record rec = {0, -1};
  coil_config cfg;
  pthread_t thread;
  CHECK_EQ(uv_loop_init(&loop), 0);
  plugin_config(&cfg, &loop, &rec);
  cfg.grace = 0.1;
  CHECK_EQ(coil_new(&shared_rt, &cfg), 0);
  CHECK_EQ(coil_spawn_string(shared_rt,
                             "local coil = require 'coil'\n"
                             "coil.defer(function() cleaned = true end)\n"
                             "while true do end",
                             "=busy"),
           0);
  pthread_create(&thread, NULL, shutdown_busy, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  pthread_join(thread, NULL);
  CHECK_EQ(rec.closed, 1);
  CHECK_EQ(rec.status, 9);
  CHECK(lua_getglobal(coil_lua(shared_rt), "cleaned") == LUA_TBOOLEAN);
  coil_free(shared_rt);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

static void shutdown_when_done(coil_runtime *rt, int status, int n, void *ud) {
  (void)status;
  (void)n;
  (void)ud;
  coil_shutdown(rt, 0);
}

/* A request made as the loop runs dry is acted on, not taken for a deadlock. */
static void test_pending_shutdown_is_not_a_deadlock(void) {
  coil_runtime *rt;
  CHECK_EQ(coil_new(&rt, NULL), 0);
  CHECK_EQ(coil_spawn_string(rt, "require('coil').stopping():wait()", "=main"),
           0);
  CHECK_EQ(luaL_loadstring(coil_lua(rt), "require('coil').sleep(0.01)"), 0);
  CHECK_EQ(coil_spawn_call(rt, 0, shutdown_when_done, NULL), 0);
  CHECK_EQ(coil_run(rt), 0);
  coil_free(rt);
}

static void test_cancelled_call_is_told_apart(void) {
  coil_runtime *rt;
  lua_State *L;
  call_record rec = {0, -1, -1, 0, ""};
  CHECK_EQ(coil_new(&rt, NULL), 0);
  L = coil_lua(rt);
  CHECK_EQ(luaL_loadstring(L, "require('coil').sleep(60)"), 0);
  CHECK_EQ(coil_spawn_call(rt, 0, on_call_done, &rec), 0);
  CHECK_EQ(coil_spawn_string(rt, "require('coil').shutdown(0)", "=stop"), 0);
  CHECK_EQ(coil_run(rt), 0);
  CHECK_EQ(rec.status, COIL_ECANCELED);
  coil_free(rt);
}

/* SPEC §7: uv.stop and uv.run work in a plugin as in a plain luv program,
 * and never stop or re-enter the host's loop */
static void test_plugin_uv_run_leaves_the_host_loop_alone(void) {
  uv_loop_t loop;
  closed_record rec = {0, -1};
  coil_runtime *rt;
  CHECK_EQ(uv_loop_init(&loop), 0);
  rt = new_plugin(&loop, &rec,
                  "local uv = require 'luv'\n"
                  "stop_ok = pcall(uv.stop)\n"
                  "run_ok = pcall(uv.run)\n"
                  "require('coil').shutdown(0)");
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(rec.closed, 1);
  CHECK(lua_getglobal(coil_lua(rt), "stop_ok") == LUA_TBOOLEAN);
  CHECK(lua_toboolean(coil_lua(rt), -1));
  CHECK(lua_getglobal(coil_lua(rt), "run_ok") == LUA_TBOOLEAN);
  CHECK(lua_toboolean(coil_lua(rt), -1));
  coil_free(rt);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* ---- error codes and messages (SPEC 5) ------------------------------------- */

/* Every COIL_E* is named by coil_strerror and never mistaken for another
 * libuv error: either libuv's own code for the same meaning, or outside
 * libuv's error space (uv_err_name does not know it). */
static void test_error_codes_outside_libuv(void) {
  static const struct {
    int code;
    const char *name;
  } codes[] = {
#define XX(c, v, msg) {COIL_##c, #c},
      COIL_ERRNO_MAP(XX)
#undef XX
  };
  char buf[64];
  size_t i, j;
  for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    const char *uvname = uv_err_name_r(codes[i].code, buf, sizeof buf);
    CHECK(codes[i].code < 0);
    CHECK(strcmp(coil_strerror(codes[i].code), "unknown error") != 0);
    if (strncmp(uvname, "Unknown", 7) != 0) {
      /* libuv knows it: then it is libuv's code of the same name */
      CHECK(strcmp(uvname, codes[i].name) == 0);
    } else {
      CHECK(codes[i].code < UV_ERRNO_MAX);
    }
    for (j = 0; j < i; j++) CHECK(codes[i].code != codes[j].code);
  }
  CHECK(strcmp(uv_err_name(COIL_EINVAL), "EINVAL") == 0);
  CHECK(strcmp(coil_strerror(COIL_ELOAD),
               "the code could not be loaded (missing file or syntax "
               "error)") == 0);
  CHECK(strcmp(coil_strerror(1), "unknown error") == 0);
}

typedef struct {
  char text[8192];
  int lines;
} message_log;

static void collect_message(coil_runtime *rt, const char *line, void *ud) {
  message_log *log = (message_log *)ud;
  size_t used = strlen(log->text);
  (void)rt;
  CHECK(strchr(line, '\n') == NULL); /* one line per call */
  snprintf(log->text + used, sizeof log->text - used, "%s\n", line);
  log->lines++;
}

/* Runs code in an own-loop runtime whose messages go to log; returns the
 * exit status. */
static int run_with_log(const char *code, message_log *log) {
  coil_config cfg;
  coil_runtime *rt;
  int status;
  coil_config_init(&cfg);
  cfg.grace = 0.2;
  cfg.on_message = collect_message;
  cfg.ud = log;
  CHECK_EQ(coil_new(&rt, &cfg), 0);
  CHECK_EQ(coil_spawn_string(rt, code, "=plugin"), 0);
  status = coil_run(rt);
  coil_free(rt);
  return status;
}

/* With on_message set, every line coil would write to stderr goes there
 * and nothing to stderr: reports, tracebacks, deadlocks, forcing. */
static void test_every_message_through_on_message(void) {
  static message_log log;
  char path[] = "/tmp/coil-stderr-XXXXXX";
  int fd = mkstemp(path), saved = dup(2);
  struct stat st;
  CHECK(fd >= 0 && saved >= 0);
  unlink(path);
  CHECK(dup2(fd, 2) == 2);

  /* an unseen error, a swallowed cancellation, the main task's error */
  CHECK_EQ(run_with_log("local coil = require 'coil'\n"
                        "coil.spawn(function() error('lost') end)\n"
                        "local t = coil.spawn(function()\n"
                        "  pcall(coil.sleep, 10) end)\n"
                        "coil.sleep(0.01); t:cancel(); coil.sleep(0.01)\n"
                        "require('coil.core').report('one\\ntwo')\n"
                        "error('main fails')\n",
                        &log),
           1);
  /* a deadlock, a shutdown on it, a task forced after the grace */
  CHECK_EQ(run_with_log("local coil = require 'coil'\n"
                        "coil.spawn(function()\n"
                        "  coil.defer(function() while true do\n"
                        "    pcall(coil.sleep, 10) end end)\n"
                        "  require('coil.core').park() end)\n"
                        "require('coil.core').park()\n",
                        &log),
           1);

  fflush(stderr);
  CHECK(fstat(fd, &st) == 0);
  dup2(saved, 2);
  if (st.st_size != 0)
    fprintf(stderr, "stderr got %ld bytes\n", (long)st.st_size);
  CHECK_EQ(st.st_size, 0);
  close(fd);
  close(saved);

  CHECK(strstr(log.text,
               "coil: task 'task-2' failed and nobody awaited it: ") != NULL);
  if (getenv("SHOW")) fputs(log.text, stdout), fflush(stdout);
  CHECK(strstr(log.text, "coil: task 'task-3' swallowed its cancellation") !=
        NULL);
  CHECK(strstr(log.text, "\ncoil: one\n  two\n") != NULL);
  CHECK(strstr(log.text, "\ncoil: plugin:7: main fails\n  stack traceback") !=
        NULL);
  CHECK(strstr(log.text, "\ncoil: deadlock: 2 task(s) waiting") != NULL);
  CHECK(strstr(log.text, "\ncoil: deadlock during shutdown") != NULL ||
        strstr(log.text, "closed by force") != NULL);
  CHECK(log.lines > 10);
}

/* coil_run returns a status, never an error code: a host-loop runtime is
 * not the caller's to run. */
static void test_run_returns_only_a_status(void) {
  uv_loop_t loop;
  closed_record rec = {0, 0};
  coil_runtime *rt;
  CHECK_EQ(uv_loop_init(&loop), 0);
  rt = new_plugin(&loop, &rec, NULL);
  CHECK_EQ(coil_run(rt), 1);
  CHECK_EQ(coil_run(NULL), 1);
  coil_free(rt);
  while (uv_loop_close(&loop) == UV_EBUSY) uv_run(&loop, UV_RUN_ONCE);
}

/* A runtime that ran and was shut down runs again with nothing of the last
 * run: not the stopping() event, not the hooks, not the exit status. */
static void test_runs_again_cleanly(void) {
  coil_runtime *rt;
  CHECK_EQ(coil_new(&rt, NULL), 0);
  CHECK_EQ(
      coil_spawn_string(rt,
                        "local coil = require 'coil'\n"
                        "hooks = 0\n"
                        "coil.on_shutdown(function() hooks = hooks + 1 end)\n"
                        "coil.shutdown(3); coil.sleep(10)\n",
                        "=first"),
      0);
  CHECK_EQ(coil_run(rt), 3);
  CHECK_EQ(global_int(rt, "hooks"), 1);
  /* a second run: the hook of a run that ended without a shutdown is
   * not carried into the third */
  CHECK_EQ(
      coil_spawn_string(rt,
                        "local coil = require 'coil'\n"
                        "coil.on_shutdown(function() hooks = hooks + 10 end)\n"
                        "return coil.stopping():is_set() and 9 or 0\n",
                        "=second"),
      0);
  CHECK_EQ(coil_run(rt), 0);
  CHECK_EQ(coil_run(rt), 0); /* nothing to do: a run that ends at once */
  CHECK_EQ(coil_spawn_string(rt,
                             "local coil = require 'coil'\n"
                             "assert(not coil.stopping():is_set())\n"
                             "coil.shutdown(5); coil.sleep(10)\n",
                             "=third"),
           0);
  CHECK_EQ(coil_run(rt), 5);
  CHECK_EQ(global_int(rt, "hooks"), 1);
  coil_free(rt);
}

static const test_case cases[] = {
    {"run_returns_only_a_status", test_run_returns_only_a_status},
    {"runs_again_cleanly", test_runs_again_cleanly},
    {"error_codes_outside_libuv", test_error_codes_outside_libuv},
    {"every_message_through_on_message", test_every_message_through_on_message},
    {"free_from_on_closed", test_free_from_on_closed},
    {"memory_limit_counts_live_data_only",
     test_memory_limit_counts_live_data_only},
    {"memory_limit_leaves_room_after_tasks",
     test_memory_limit_leaves_room_after_tasks},
    {"spawn_leaves_stack_clean", test_spawn_leaves_stack_clean},
    {"shutdown_reaches_busy_plugin", test_shutdown_reaches_busy_plugin},
    {"pending_shutdown_is_not_a_deadlock",
     test_pending_shutdown_is_not_a_deadlock},
    {"cancelled_call_is_told_apart", test_cancelled_call_is_told_apart},
    {"plugin_uv_run_leaves_the_host_loop_alone",
     test_plugin_uv_run_leaves_the_host_loop_alone},
    {"host_loop_two_plugins", test_host_loop_two_plugins},
    {"shutdown_from_thread", test_shutdown_from_thread},
    {"shutdown_from_signal_handler", test_shutdown_from_signal_handler},
    {"shutdown_before_the_loop_runs", test_shutdown_before_the_loop_runs},
    {"spawn_call_results_and_errors", test_spawn_call_results_and_errors},
    {"memory_limit", test_memory_limit},
    {"plugin_error_ends_runtime", test_plugin_error_ends_runtime},
    {"host_deadlock", test_host_deadlock},
    {"stubborn_plugin_is_forced", test_stubborn_plugin_is_forced},
    {"idle_runtime_stays_open", test_idle_runtime_stays_open},
    {"load_errors", test_load_errors},
    {"status_and_strerror", test_status_and_strerror},
    {"free_without_running", test_free_without_running},
    {NULL, NULL}};

int main(int argc, char **argv) { return run_tests(cases, argc, argv, 20); }
