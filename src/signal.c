/*
 * Signals: the only async-signal-safe code of coil. SIGINT, SIGTERM and
 * SIGHUP get a sigaction handler of coil's own, because a task stuck in a
 * busy loop must be reached too: the handler only counts the signal in
 * rt->as, wakes the loop (uv_async_send is async-signal-safe) and arms a Lua
 * hook in whatever Lua code is running, as lua.c's laction does. On the loop,
 * coil__signals_poll turns the counts into requests that the shutdown step
 * acts on. A third interrupt ends the process at once from the handler
 * itself (coil__die_by_signal, the one way coil dies by a signal).
 *
 * SIGUSR1 (the task dump) goes through a libuv signal handle.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "coil_internal.h"

/* One runtime per process may own the signals. */
static coil_runtime *_Atomic signal_rt;

static const int interrupts[] = {SIGINT, SIGTERM, SIGHUP};
static struct sigaction saved[3], saved_pipe;
static int installed[3], pipe_ignored;

static const struct {
  const char *name;
  int signo;
} signal_names[] = {{"SIGINT", SIGINT},     {"SIGTERM", SIGTERM},
                    {"SIGHUP", SIGHUP},     {"SIGUSR1", SIGUSR1},
                    {"SIGUSR2", SIGUSR2},   {"SIGWINCH", SIGWINCH},
                    {"SIGQUIT", SIGQUIT},   {"SIGPIPE", SIGPIPE},
                    {"SIGALRM", SIGALRM},   {"SIGCHLD", SIGCHLD},
                    {"SIGCONT", SIGCONT},   {"SIGTSTP", SIGTSTP},
                    {"SIGTTIN", SIGTTIN},   {"SIGTTOU", SIGTTOU},
                    {"SIGXCPU", SIGXCPU},   {"SIGXFSZ", SIGXFSZ},
                    {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF},
                    {NULL, 0}};

int coil__signal_number(const char *name) {
  int i;
  char buf[16];
  if (strncmp(name, "SIG", 3) != 0 && strlen(name) < 12) {
    snprintf(buf, sizeof buf, "SIG%s", name);
    name = buf;
  }
  for (i = 0; signal_names[i].name; i++)
    if (strcmp(signal_names[i].name, name) == 0) return signal_names[i].signo;
  return 0;
}

const char *coil__signal_name(int signo) {
  int i;
  for (i = 0; signal_names[i].name; i++)
    if (signal_names[i].signo == signo) return signal_names[i].name;
  return "signal";
}

/* ---- the busy-task hook ------------------------------------------------- */

#define BUSY_NS (50ull * 1000 * 1000)

/* Whether the hook fired as a C function returned from a system call that
 * the interrupt cut short (read(2) on a terminal, say): lua.c's SIGINT
 * reaches such a call at once, and so does coil's. */
static int interrupted_c_call(lua_State *L, lua_Debug *ar, int err) {
  return ar->event == LUA_HOOKRET && err == EINTR && lua_getinfo(L, "S", ar) &&
         ar->what[0] == 'C';
}

/* Runs inside Lua code that was running when an interrupt came. Code that
 * yields within 50 ms is left alone (the loop handles the signal); code
 * still running then, or a C call the signal interrupted, gets the
 * shutdown's Cancelled raised in it. */
static void busy_hook(lua_State *L, lua_Debug *ar) {
  int err = errno; /* what the C function returning now left */
  coil_runtime *rt = coil__rt(L);
  uint64_t now = uv_hrtime();
  int signo;
  if (!rt) {
    lua_sethook(L, NULL, 0, 0);
    return;
  }
  if (rt->run.hook_t0 == 0 && !interrupted_c_call(L, ar, err)) {
    rt->run.hook_t0 = now;
    lua_sethook(L, busy_hook, LUA_MASKCOUNT, 1000);
    return;
  }
  if (rt->run.hook_t0 != 0 && now - rt->run.hook_t0 < BUSY_NS) return;
  coil__clear_hook(rt, L);
  signo = atomic_load(&rt->as.first);
  /* the loop could not act on the request: record it from here, so that it
   * (not this task's end) decides the exit status; the shutdown step acts
   * on it once this task is off the stack */
  if (signo) {
    atomic_fetch_add(&rt->as.handled, 1);
    coil__request(rt, 128 + signo, signo, coil__signal_name(signo));
  } else {
    atomic_store(&rt->as.shutdown_requested, 0);
    coil__request(rt, atomic_load(&rt->as.shutdown_request_status), 0,
                  "shutdown");
  }
  if (rt->current) {
    rt->current->flags |= TF_HOOK_CANCELLED | TF_SHUTDOWN_CANCELLED;
    rt->current->cancels++;
  }
  coil__new_cancelled(L, signo ? coil__signal_name(signo) : "shutdown");
  lua_error(L);
}

void coil__clear_hook(coil_runtime *rt, lua_State *co) {
  if (!atomic_exchange(&rt->as.hook_armed, 0)) return;
  lua_sethook(co, NULL, 0, 0);
  rt->run.hook_t0 = 0;
}

/* ---- the handler ----------------------------------------------------------- */

/* Ends the process by signo the Unix way: default action restored, the
 * signal unblocked (a handler runs with it blocked) and raised; if the
 * process is still alive (PID 1 ignores default actions), _exit(128 +
 * signo). Async-signal-safe; coil_die_by_signal flushes stdio first. */
void coil__die_by_signal(int signo) {
  sigset_t set;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  sigaction(signo, &sa, NULL);
  sigemptyset(&set);
  sigaddset(&set, signo);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  raise(signo);
  _exit(128 + signo);
}

static void on_interrupt(int signo) {
  int saved_errno = errno;
  coil_runtime *rt = atomic_load(&signal_rt);
  if (!rt) goto out;
  if (atomic_load(&rt->as.override[signo])) {
    atomic_fetch_add(&rt->as.pending[signo], 1);
  } else {
    int expected = 0, n;
    atomic_compare_exchange_strong(&rt->as.first, &expected, signo);
    n = atomic_fetch_add(&rt->as.count, 1) + 1;
    /* the way out when cleanup itself is stuck: die now, by this signal */
    if (n >= 3) coil__die_by_signal(signo);
    if (atomic_load(&rt->as.handled) < n) coil__interrupt_running(rt);
  }
  if (atomic_load(&rt->as.wake_ok)) uv_async_send(&rt->async);
out:
  errno = saved_errno;
}

static void on_usr1(uv_signal_t *h, int signo) {
  coil_runtime *rt = (coil_runtime *)h->data;
  (void)signo;
  coil__call_hook(rt, "usr1", 0, 0);
}

int coil__signals_install(coil_runtime *rt) {
  coil_runtime *expected = NULL;
  int i;
  if (atomic_load(&signal_rt) == rt) goto usr1; /* a new run */
  if (!atomic_compare_exchange_strong(&signal_rt, &expected, rt))
    return COIL_EBUSY;
  for (i = 0; i < 3; i++) {
    struct sigaction sa;
    sigaction(interrupts[i], NULL, &saved[i]);
    /* a signal ignored when coil started (nohup) stays ignored */
    if (saved[i].sa_handler == SIG_IGN) continue;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGHUP);
    /* no SA_RESTART: a task blocked in a C call (io.read on a terminal)
     * gets EINTR and the hook interrupts it, as lua.c's handler does;
     * libuv retries its own calls on EINTR */
    sa.sa_flags = 0;
    sigaction(interrupts[i], &sa, NULL);
    installed[i] = 1;
  }
  /* A write to a peer that has gone must be an EPIPE error, not a death
   * without cleanup (Node does the same); children get it back by default. */
  sigaction(SIGPIPE, NULL, &saved_pipe);
  if (saved_pipe.sa_handler == SIG_DFL) {
    signal(SIGPIPE, SIG_IGN);
    pipe_ignored = 1;
  }
usr1:
  if (!rt->usr1_started) {
    uv_signal_init(rt->loop, &rt->usr1);
    rt->usr1.data = rt;
    uv_signal_start(&rt->usr1, on_usr1, SIGUSR1);
    uv_unref((uv_handle_t *)&rt->usr1);
    rt->usr1_started = 1;
  }
  return 0;
}

void coil__signals_uninstall(coil_runtime *rt) {
  int i;
  if (atomic_load(&signal_rt) != rt) return;
  for (i = 0; i < 3; i++) {
    if (installed[i]) sigaction(interrupts[i], &saved[i], NULL);
    installed[i] = 0;
  }
  if (pipe_ignored) sigaction(SIGPIPE, &saved_pipe, NULL);
  pipe_ignored = 0;
  atomic_store(&signal_rt, NULL);
}

/* Whether an on_signal-handled signal waits to be dispatched. */
int coil__signals_pending(coil_runtime *rt) {
  int signo;
  for (signo = 1; signo < 32; signo++)
    if (atomic_load(&rt->as.pending[signo])) return 1;
  return 0;
}

/* Arms the busy-task hook in whatever Lua code of rt is running (from a
 * signal handler or another thread: lua_sethook is safe there). */
void coil__interrupt_running(coil_runtime *rt) {
  lua_State *running = atomic_load(&rt->as.running_L);
  if (running) {
    atomic_store(&rt->as.hook_armed, 1);
    lua_sethook(running, busy_hook,
                LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  }
}

/* On the loop: turns the interrupts counted by the handler into requests
 * (the first asks for the shutdown, the second for force; the caller steps
 * the shutdown) and dispatches the signals on_signal took over. */
void coil__signals_poll(coil_runtime *rt) {
  int n = atomic_load(&rt->as.count), signo;
  while (atomic_load(&rt->as.handled) < n) {
    int k = atomic_fetch_add(&rt->as.handled, 1) + 1;
    signo = atomic_load(&rt->as.first);
    if (k == 1) {
      coil__request(rt, 128 + signo, signo, coil__signal_name(signo));
    } else if (k == 2 && !rt->run.force_wanted) {
      rt->run.force_wanted = 1;
      rt->run.force_reason = "second interrupt";
    }
  }
  for (signo = 1; signo < 32; signo++) {
    int pending = atomic_exchange(&rt->as.pending[signo], 0);
    while (pending-- > 0 && rt->L) {
      lua_pushstring(rt->L, coil__signal_name(signo));
      coil__call_hook(rt, "dispatch_signal", 1, 0);
    }
  }
}

/* ---- Lua functions --------------------------------------------------------------- */

/* coil._override(name, on) -> bool: whether coil handles this interrupt for
 * the script (on_signal took it over); false for other signals. */
static int l_override(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  int signo = coil__signal_number(luaL_checkstring(L, 1));
  int on = lua_toboolean(L, 2);
  if (signo != SIGINT && signo != SIGTERM && signo != SIGHUP) {
    lua_pushboolean(L, 0);
    return 1;
  }
  atomic_store(&rt->as.override[signo], on);
  lua_pushboolean(L, 1);
  return 1;
}

/* coil._signum(name) -> number or nil */
static int l_signum(lua_State *L) {
  int signo = coil__signal_number(luaL_checkstring(L, 1));
  if (signo) lua_pushinteger(L, signo);
  else lua_pushnil(L);
  return 1;
}

static const luaL_Reg signal_funcs[] = {
    {"_override", l_override}, {"_signum", l_signum}, {NULL, NULL}};

void coil__signal_open(lua_State *L, coil_runtime *rt) {
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, signal_funcs, 1);
}
