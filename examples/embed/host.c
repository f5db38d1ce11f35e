/*
 * A small plugin host built on coil's C API (docs/embedding.md).
 *
 * Every *.lua file in a folder is a plugin: a coil runtime of its own, with
 * its own Lua state and memory limit, on this program's one libuv loop. A
 * host timer sends every plugin an event by calling its global function
 * on_event(name, data) as a task, and collects the replies. A plugin whose
 * file changes (or appears) is reloaded. Ctrl+C or SIGTERM shuts every
 * plugin down, waits for each to finish, closes the host's own handles and
 * exits by that signal. A plugin that fails, deadlocks or exceeds its memory
 * limit ends alone: the host logs its status and goes on.
 *
 * Threading: everything below runs on the main thread, the one that runs
 * the loop. The uv_signal_t callbacks are ordinary loop callbacks, not
 * signal handlers, so they may call any coil function. (coil_shutdown alone
 * may also be called from another thread or from a real signal handler.)
 *
 * Usage: host [folder]    (default: plugins)
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "coil.h"

#define MAX_PLUGINS 16
#define MEMORY_LIMIT (4u << 20) /* bytes of Lua memory per plugin */
#define GRACE 2.0               /* seconds a plugin's cleanup gets */
#define EVENT_EVERY_MS 300

/* A plugin slot. The slots are static, so a slot can be the ud of coil's
 * callbacks. The host owns rt from coil_new until it calls coil_free. */
typedef struct {
  char name[64];       /* the file name without ".lua" */
  char path[PATH_MAX];
  coil_runtime *rt;    /* NULL: not running (never loaded, failed, ended) */
  int stopping;        /* coil_shutdown sent; on_closed still to come */
  int closed;          /* on_closed came; coil_free is due (see reap) */
  int reload;          /* start it again once it has closed */
  int changed;         /* its file changed: reload once the folder settles */
} plugin;

/* One round of events. Each call's ud points into its round; the done
 * callback fires exactly once for every call that coil_spawn_call accepted
 * (even when the plugin is shut down first), so the last reply frees it. */
typedef struct round round;
typedef struct {
  round *rd;
  plugin *p;
} call;
struct round {
  int tick, pending;
  call calls[MAX_PLUGINS];
  char text[1024];     /* the collected replies */
};

static uv_loop_t loop;
static uv_timer_t event_timer;  /* sends a round of events */
static uv_timer_t reap_timer;   /* frees closed runtimes, outside coil */
static uv_signal_t sigint_watcher, sigterm_watcher;
static uv_fs_event_t dir_watcher; /* notes which plugin files changed */
static uv_timer_t settle_timer; /* reloads them once the writes stopped */
static const char *dir;
static plugin plugins[MAX_PLUGINS];
static int nplugins, ticks, quit_signal, host_closed;

static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("host: ", stdout);
  vprintf(fmt, ap);
  putchar('\n');
  va_end(ap);
}

/* Whether p takes events: loaded, not shutting down, not closed. */
static int running(const plugin *p) {
  return p->rt && !p->stopping && !p->closed;
}

static void reap(uv_timer_t *timer);

/* Called by coil on the loop thread once p's runtime has finished: every
 * task done, every handle it opened closed. It runs inside coil (from the
 * close callback of the runtime's last handle), so the runtime is freed a
 * moment later by reap, not here. */
static void on_plugin_closed(coil_runtime *rt, int status, void *ud) {
  plugin *p = (plugin *)ud;
  (void)rt;
  say("%s closed with status %d%s", p->name, status,
      p->reload && !quit_signal ? ", reloading" : "");
  p->closed = 1;
  uv_timer_start(&reap_timer, reap, 0, 0);
}

/* Creates p's runtime on the host's loop and spawns its file as the
 * runtime's main task. On failure p->rt stays NULL. */
static void start_plugin(plugin *p) {
  coil_config cfg;
  char *argv[1];
  int r;
  coil_config_init(&cfg);
  cfg.loop = &loop;          /* coil never runs this loop by itself */
  cfg.signals = 0;           /* the host handles signals, not coil */
  cfg.grace = GRACE;
  cfg.memory_limit = MEMORY_LIMIT;
  cfg.on_closed = on_plugin_closed;
  cfg.ud = p;
  p->stopping = p->closed = p->reload = 0;
  r = coil_new(&p->rt, &cfg);
  if (r < 0) {
    say("cannot start %s: %s", p->name, coil_strerror(r));
    return;
  }
  argv[0] = p->path;
  r = coil_spawn_file(p->rt, p->path, 1, argv);
  if (r < 0) {
    say("cannot load %s: %s", p->name,
        r == COIL_ELOAD ? coil_last_error(p->rt) : coil_strerror(r));
    /* no task yet: free at once (no on_closed); the runtime's handles
     * finish closing on the loop's next turn */
    coil_free(p->rt);
    p->rt = NULL;
    return;
  }
  say("loaded %s", p->name);
}

/* Asks p's runtime to shut down: returns at once, on_closed comes later. */
static void stop_plugin(plugin *p) {
  if (!running(p)) return;
  p->stopping = 1;
  coil_shutdown(p->rt, 0);
}

static void close_host_handles(void) {
  if (host_closed) return;
  host_closed = 1;
  uv_close((uv_handle_t *)&event_timer, NULL);
  uv_close((uv_handle_t *)&reap_timer, NULL);
  uv_close((uv_handle_t *)&sigint_watcher, NULL);
  uv_close((uv_handle_t *)&sigterm_watcher, NULL);
  uv_close((uv_handle_t *)&dir_watcher, NULL);
  uv_close((uv_handle_t *)&settle_timer, NULL);
}

/* Frees the runtimes that have closed, starts again the ones to reload,
 * and once the host is quitting and no runtime is left, closes the host's
 * own handles: then uv_run returns in main. */
static void reap(uv_timer_t *timer) {
  int i, live = 0;
  (void)timer;
  for (i = 0; i < nplugins; i++) {
    plugin *p = &plugins[i];
    if (p->rt && p->closed) {
      coil_free(p->rt);
      p->rt = NULL;
      if (p->reload && !quit_signal) start_plugin(p);
    }
    if (p->rt) live++;
  }
  if (quit_signal && live == 0) close_host_handles();
}

/* The slot for file name f ("clock.lua"), added if new; NULL for a file
 * that is no plugin or when the table is full. */
static plugin *find_or_add(const char *f) {
  size_t n = strlen(f);
  int i;
  if (n < 5 || n - 4 >= sizeof plugins[0].name || f[0] == '.' ||
      strcmp(f + n - 4, ".lua") != 0)
    return NULL;
  for (i = 0; i < nplugins; i++)
    if (strncmp(plugins[i].name, f, n - 4) == 0 && !plugins[i].name[n - 4])
      return &plugins[i];
  if (nplugins == MAX_PLUGINS) return NULL;
  memcpy(plugins[nplugins].name, f, n - 4);
  snprintf(plugins[nplugins].path, sizeof plugins[0].path, "%s/%s", dir, f);
  return &plugins[nplugins++];
}

/* The folder has been quiet for a moment: reload each plugin whose file
 * changed, appeared or went away (a removed file then fails to load and
 * the plugin stays down). One write makes several events, and a file
 * being written must not be loaded half-way: hence the wait. */
static void on_settled(uv_timer_t *timer) {
  int i;
  (void)timer;
  for (i = 0; i < nplugins; i++) {
    plugin *p = &plugins[i];
    if (!p->changed || quit_signal) continue;
    p->changed = 0;
    if (!p->rt) {
      start_plugin(p);
    } else {
      p->reload = 1; /* reap starts it again once it has closed */
      stop_plugin(p);
    }
  }
}

static void on_dir_change(uv_fs_event_t *h, const char *filename, int events,
                          int status) {
  plugin *p;
  (void)h;
  (void)events;
  if (status < 0 || !filename || quit_signal) return;
  if (!(p = find_or_add(filename))) return;
  p->changed = 1;
  uv_timer_start(&settle_timer, on_settled, 100, 0); /* restarts the wait */
}

/* luaL_tolstring under lua_pcall: a value's __tostring is plugin code and
 * may raise; an error outside a protected call would abort the host. */
static int tostring_fn(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Writes the first line of the value at idx into buf. Stack unchanged. */
static void describe(lua_State *L, int idx, char *buf, size_t size) {
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, tostring_fn);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_isstring(L, -1))
    snprintf(buf, size, "%s", lua_tostring(L, -1));
  else
    snprintf(buf, size, "(a %s)", luaL_typename(L, idx));
  lua_pop(L, 1);
  buf[strcspn(buf, "\n")] = '\0';
}

/* A plugin's on_event call ended. Runs on the loop thread, inside coil. On
 * success its nresults results are on top of the plugin's Lua stack; on
 * failure (status COIL_ELUA, also when the call was cancelled by a
 * shutdown) the error is. They are the plugin's: read them, copy what is
 * kept, leave the stack as it is. */
static void on_reply(coil_runtime *rt, int status, int nresults, void *ud) {
  call *c = (call *)ud;
  round *rd = c->rd;
  char value[128] = "nothing";
  size_t used = strlen(rd->text);
  if (nresults > 0) describe(coil_lua(rt), -nresults, value, sizeof value);
  snprintf(rd->text + used, sizeof rd->text - used, " %s%s%s", c->p->name,
           status == 0 ? "=" : " failed: ", value);
  if (--rd->pending == 0) {
    say("tick %d:%s", rd->tick, rd->text);
    free(rd);
  }
}

/* Sends the event ("tick", n) to every running plugin that has on_event. */
static void on_event_timer(uv_timer_t *timer) {
  round *rd = (round *)calloc(1, sizeof *rd);
  int i;
  (void)timer;
  if (!rd) return;
  rd->tick = ++ticks;
  for (i = 0; i < nplugins; i++) {
    plugin *p = &plugins[i];
    lua_State *L;
    int top;
    if (!running(p)) continue;
    L = coil_lua(p->rt);
    top = lua_gettop(L);
    /* host code runs outside any protected call: a raw get, so that a
     * plugin's metatable on _G (a "strict" module, say) cannot raise here */
    lua_pushglobaltable(L);
    lua_pushliteral(L, "on_event");
    if (lua_rawget(L, -2) != LUA_TFUNCTION) {
      lua_settop(L, top);
      continue;
    }
    lua_remove(L, -2); /* the globals table */
    lua_pushliteral(L, "tick");
    lua_pushinteger(L, rd->tick);
    rd->calls[rd->pending].rd = rd;
    rd->calls[rd->pending].p = p;
    /* pops the function and its 2 arguments; the task starts on the loop's
     * next turn, so on_reply never runs before this returns */
    if (coil_spawn_call(p->rt, 2, on_reply, &rd->calls[rd->pending]) == 0)
      rd->pending++;
    lua_settop(L, top);
  }
  if (rd->pending == 0) free(rd);
}

/* SIGINT/SIGTERM: shut every plugin down; reap closes the host's handles
 * once the last one has closed. A second signal does not wait. */
static void on_signal(uv_signal_t *h, int signo) {
  const char *name = signo == SIGINT ? "SIGINT" : "SIGTERM";
  int i, n = 0;
  (void)h;
  if (quit_signal) {
    say("%s again: exiting without waiting for cleanup", name);
    coil_die_by_signal(signo);
  }
  quit_signal = signo;
  uv_timer_stop(&event_timer);
  for (i = 0; i < nplugins; i++) {
    if (plugins[i].rt) n++;
    stop_plugin(&plugins[i]);
  }
  say("%s: shutting down %d plugin(s)", name, n);
  uv_timer_start(&reap_timer, reap, 0, 0); /* for when none is running */
}

int main(int argc, char **argv) {
  uv_fs_t req;
  uv_dirent_t ent;
  int r, i, loaded = 0;
  dir = argc > 1 ? argv[1] : "plugins";
  setvbuf(stdout, NULL, _IOLBF, 0); /* lines reach a pipe at once */

  r = uv_loop_init(&loop);
  if (r == 0) r = uv_fs_scandir(NULL, &req, dir, 0, NULL); /* synchronous */
  if (r < 0) {
    fprintf(stderr, "host: cannot read %s: %s\n", dir, uv_strerror(r));
    return 1;
  }
  uv_timer_init(&loop, &event_timer);
  uv_timer_init(&loop, &reap_timer);
  uv_signal_init(&loop, &sigint_watcher);
  uv_signal_init(&loop, &sigterm_watcher);
  uv_signal_start(&sigint_watcher, on_signal, SIGINT);
  uv_signal_start(&sigterm_watcher, on_signal, SIGTERM);
  uv_timer_init(&loop, &settle_timer);
  uv_fs_event_init(&loop, &dir_watcher);
  r = uv_fs_event_start(&dir_watcher, on_dir_change, dir, 0);
  if (r < 0) say("not watching %s for changes: %s", dir, uv_strerror(r));

  while (uv_fs_scandir_next(&req, &ent) != UV_EOF) { /* sorted by name */
    plugin *p = ent.type == UV_DIRENT_FILE || ent.type == UV_DIRENT_UNKNOWN
                    ? find_or_add(ent.name)
                    : NULL;
    if (p) start_plugin(p);
  }
  uv_fs_req_cleanup(&req);
  for (i = 0; i < nplugins; i++) loaded += plugins[i].rt != NULL;
  uv_timer_start(&event_timer, on_event_timer, EVENT_EVERY_MS,
                 EVENT_EVERY_MS);
  say("ready: %d plugin(s) from %s, pid %d; Ctrl+C to stop", loaded, dir,
      (int)uv_os_getpid());

  /* Runs until the host has closed its own handles, which it does once
   * every runtime has closed and been freed: see on_signal and reap. */
  uv_run(&loop, UV_RUN_DEFAULT);
  r = uv_loop_close(&loop);
  say("all plugins closed; loop closed: %s", r == 0 ? "ok" : uv_strerror(r));
  if (r != 0) return 1;
  if (quit_signal) coil_die_by_signal(quit_signal); /* as a shell expects */
  return 0;
}
