/*
 * Lua code that runs at teardown (issue 11, item 2): a plugin's __gc at
 * lua_close stays under memory_limit, and one that never returns is stopped
 * by coil_shutdown from a watchdog thread, so the host gets its loop (or
 * coil_run) back with a status. Each case runs in its own process.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "coil.h"
#include "runner.h"

static lua_Integer progress_max;

/* progress(i): the __gc tells how far it got (a C global survives the
 * state's close) */
static int l_progress(lua_State *L) {
  lua_Integer i = luaL_checkinteger(L, 1);
  if (i > progress_max) progress_max = i;
  return 0;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static coil_runtime *new_runtime(uv_loop_t *loop, size_t limit,
                                 const char *code) {
  coil_config cfg;
  coil_runtime *rt;
  coil_config_init(&cfg);
  cfg.loop = loop;
  cfg.grace = 0.2;
  cfg.memory_limit = limit;
  CHECK_EQ(coil_new(&rt, &cfg), 0);
  lua_register(coil_lua(rt), "progress", l_progress);
  CHECK_EQ(coil_spawn_string(rt, code, "=plugin"), 0);
  return rt;
}

/* ---- a __gc that allocates without end ----------------------------------- */

static const char hog_gc[] = "HOG = setmetatable({}, {__gc = function()\n"
                             "  local t = {}\n"
                             "  for i = 1, 2e6 do\n"
                             "    t[i] = {i}\n"
                             "    if i % 1000 == 0 then progress(i) end\n"
                             "  end\n"
                             "end})\n";

/* own loop: coil_free closes the state; the finaliser hits the 4 MB limit
 * (a table of one integer costs ~90 bytes: 2e6 of them would be ~180 MB) */
static void test_gc_hog_own_loop(void) {
  coil_runtime *rt = new_runtime(NULL, 4u << 20, hog_gc);
  CHECK_EQ(coil_run(rt), 0);
  coil_free(rt);
  CHECK(progress_max > 0);
  CHECK(progress_max < 200000);
}

/* host loop: the state closes in coil_free, after on_closed */
static void test_gc_hog_host_loop(void) {
  uv_loop_t loop;
  coil_runtime *rt;
  CHECK_EQ(uv_loop_init(&loop), 0);
  rt = new_runtime(&loop, 4u << 20, hog_gc);
  CHECK_EQ(coil_shutdown(rt, 0), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  coil_free(rt);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(progress_max > 0);
  CHECK(progress_max < 200000);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* ---- a __gc that never returns -------------------------------------------- */

static const char endless_gc[] =
    "ENDLESS = setmetatable({}, {__gc = function()\n"
    "  local i = 0\n"
    "  while true do\n"
    "    i = i + 1\n"
    "    local t = {i}\n"
    "    if i % 1000 == 0 then progress(i) end\n"
    "    for _ = 1, 200 do end\n"
    "  end\n"
    "end})\n";

static coil_runtime *watched;
static atomic_int host_back;

/* A host's watchdog: once the teardown is stuck, ask coil to stop, again
 * and again, until the host has its thread back. */
static void *watchdog(void *arg) {
  (void)arg;
  while (progress_max < 1000) sleep_ms(10); /* the __gc runs */
  while (!atomic_load(&host_back)) {
    coil_shutdown(watched, 7);
    sleep_ms(50);
  }
  return NULL;
}

static void test_gc_endless_own_loop(void) {
  pthread_t thread;
  watched = new_runtime(NULL, 0, endless_gc);
  CHECK_EQ(coil_run(watched), 0);
  pthread_create(&thread, NULL, watchdog, NULL);
  coil_free(watched); /* closes the state: the __gc runs here */
  atomic_store(&host_back, 1);
  pthread_join(thread, NULL);
  CHECK(progress_max >= 1000);
}

static void test_gc_endless_host_loop(void) {
  uv_loop_t loop;
  pthread_t thread;
  CHECK_EQ(uv_loop_init(&loop), 0);
  watched = new_runtime(&loop, 0, endless_gc);
  CHECK_EQ(coil_shutdown(watched, 0), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  pthread_create(&thread, NULL, watchdog, NULL);
  coil_free(watched); /* closes the state: the __gc runs here */
  uv_run(&loop, UV_RUN_DEFAULT);
  atomic_store(&host_back, 1);
  pthread_join(thread, NULL);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* ---- the last unseen-error report ------------------------------------------ */

/* An on_error handler that never returns, in the report at teardown. */
static void test_endless_report_handler(void) {
  pthread_t thread;
  int status;
  watched = new_runtime(NULL, 0,
                        "local coil = require 'coil'\n"
                        "coil.on_error(function()\n"
                        "  local i = 0\n"
                        "  while true do i = i + 1\n"
                        "    if i % 1000 == 0 then progress(i) end end\n"
                        "end)\n"
                        "local t = coil.spawn(function() error('lost') end)\n"
                        "t = nil\n");
  pthread_create(&thread, NULL, watchdog, NULL);
  status = coil_run(watched);
  atomic_store(&host_back, 1);
  pthread_join(thread, NULL);
  coil_free(watched);
  CHECK_EQ(status, 7);
}

/* An on_error handler that allocates without end, in the last report, on a
 * runtime limited to 4 MB. */
static void test_report_handler_hog(void) {
  coil_runtime *rt =
      new_runtime(NULL, 4u << 20,
                  "local coil = require 'coil'\n"
                  "coil.on_error(function()\n"
                  "  local t = {}\n"
                  "  for i = 1, 2e6 do t[i] = {i}\n"
                  "    if i % 1000 == 0 then progress(i) end end\n"
                  "end)\n"
                  "local t = coil.spawn(function() error('lost') end)\n"
                  "t = nil\n");
  coil_run(rt);
  coil_free(rt);
  CHECK(progress_max > 0);
  CHECK(progress_max < 200000);
}

static const test_case cases[] = {
    {"report_handler_hog", test_report_handler_hog},
    {"gc_hog_own_loop", test_gc_hog_own_loop},
    {"gc_hog_host_loop", test_gc_hog_host_loop},
    {"gc_endless_own_loop", test_gc_endless_own_loop},
    {"gc_endless_host_loop", test_gc_endless_host_loop},
    {"endless_report_handler", test_endless_report_handler},
    {NULL, NULL}};

int main(int argc, char **argv) { return run_tests(cases, argc, argv, 20); }
