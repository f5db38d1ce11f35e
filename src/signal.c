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
static struct sigaction saved[3], saved_pipe, saved_usr1;
static int installed[3], pipe_ignored, usr1_kept;

static const struct {
  const char *name;
  int signo;
} signal_names[] = {{"SIGINT", SIGINT},
                    {"SIGTERM", SIGTERM},
                    {"SIGHUP", SIGHUP},
                    {"SIGUSR1", SIGUSR1},
                    {"SIGUSR2", SIGUSR2},
                    {"SIGWINCH", SIGWINCH},
                    {"SIGQUIT", SIGQUIT},
                    {"SIGPIPE", SIGPIPE},
                    {"SIGALRM", SIGALRM},
                    {"SIGCHLD", SIGCHLD},
                    {"SIGCONT", SIGCONT},
                    {"SIGTSTP", SIGTSTP},
                    {"SIGTTIN", SIGTTIN},
                    {"SIGTTOU", SIGTTOU},
                    {"SIGXCPU", SIGXCPU},
                    {"SIGXFSZ", SIGXFSZ},
                    {"SIGVTALRM", SIGVTALRM},
                    {"SIGPROF", SIGPROF},
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

/* The console (core.interrupt_busy): a SIGINT it took over with on_signal
 * still interrupts a task that does not yield, and counts that it did so. */
static atomic_int interrupt_busy, interrupts_taken;

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
  if (!signo && !atomic_load(&rt->as.shutdown_requested) &&
      atomic_load(&interrupt_busy)) {
    /* the console's Ctrl+C: only the busy task gets Cancelled */
    atomic_fetch_add(&interrupts_taken, 1);
    if (rt->current) rt->current->cancels++;
    coil__new_cancelled(L, "SIGINT");
    lua_error(L);
  }
  /* the loop could not act on the request: record it from here, so that it
   * (not this task's end) decides the exit status; the shutdown step acts
   * on it once this task is off the stack */
  if (signo && rt->run.phase >= PHASE_CLOSING) {
    /* teardown: the loop no longer acts on it; it ends the process once
     * the teardown is over (coil__signals_uninstall) */
  } else if (signo) {
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

/* The public face of the above (include/coil.h), for a process ending on
 * the loop's thread: stdio flushed first. */
void coil_die_by_signal(int signo) {
  fflush(stdout);
  fflush(stderr);
  coil__die_by_signal(signo);
}

/* Flushes f unless another thread, or the code this handler interrupted,
 * holds its lock: dying must not wait. */
static void flush_if_free(FILE *f) {
  if (ftrylockfile(f) != 0) return;
  fflush_unlocked(f);
  funlockfile(f);
}

static void on_interrupt(int signo) {
  int saved_errno = errno;
  coil_runtime *rt = atomic_load(&signal_rt);
  if (!rt) goto out;
  if (atomic_load(&rt->as.override[signo])) {
    atomic_fetch_add(&rt->as.pending[signo], 1);
    if (signo == SIGINT && atomic_load(&interrupt_busy))
      coil__interrupt_running(rt);
  } else {
    int expected = 0, n;
    atomic_compare_exchange_strong(&rt->as.first, &expected, signo);
    n = atomic_fetch_add(&rt->as.count, 1) + 1;
    /* the way out when cleanup itself is stuck: die now, by this signal,
     * with what stdout holds written out (SPEC §3: flushed on every path) */
    if (n >= 3) {
      flush_if_free(stdout);
      flush_if_free(stderr);
      coil__die_by_signal(signo);
    }
    if (atomic_load(&rt->as.handled) < n) coil__interrupt_running(rt);
  }
  if (atomic_load(&rt->as.wake_ok)) uv_async_send(&rt->async);
out:
  errno = saved_errno;
}

/* SIGPIPE: the write that raised it fails with EPIPE, which is enough. */
static void on_sigpipe(int signo) { (void)signo; }

/* SIGUSR1 once its libuv handle is closed (teardown): nothing to dump, and
 * the default action (death) must not end a run that is finishing. */
static void on_late_usr1(int signo) { (void)signo; }

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
   * without cleanup (Node does the same). A handler that does nothing, not
   * SIG_IGN: exec keeps an ignored signal, so io.popen("yes | head -1")
   * would hand `yes` an ignored SIGPIPE; a handler resets to the default. */
  sigaction(SIGPIPE, NULL, &saved_pipe);
  if (saved_pipe.sa_handler == SIG_DFL) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigpipe;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGPIPE, &sa, NULL);
    pipe_ignored = 1;
  }
  sigaction(SIGUSR1, NULL, &saved_usr1);
usr1:
  if (!rt->usr1_started) {
    usr1_kept = 0; /* libuv's handler again */
    uv_signal_init(rt->loop, &rt->usr1);
    rt->usr1.data = rt;
    uv_signal_start(&rt->usr1, on_usr1, SIGUSR1);
    uv_unref((uv_handle_t *)&rt->usr1);
    rt->usr1_started = 1;
  }
  return 0;
}

/* Step 6 closed the SIGUSR1 handle (libuv restored the default action):
 * SIGUSR1 is still watched, and ignored, until the runtime lets go. */
void coil__signals_keep_usr1(coil_runtime *rt) {
  struct sigaction sa;
  if (atomic_load(&signal_rt) != rt || usr1_kept) return;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_late_usr1;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
  usr1_kept = 1;
}

/* An interrupt the loop never acted on (it came while handles closed, or
 * while __gc ran at lua_close): returns its signal, once, or 0. */
int coil__signals_unhandled(coil_runtime *rt) {
  int n = atomic_load(&rt->as.count);
  if (atomic_load(&signal_rt) != rt || atomic_load(&rt->as.handled) >= n)
    return 0;
  atomic_store(&rt->as.handled, n);
  return atomic_load(&rt->as.first);
}

/* Lets the signals go, at the very end of a runtime (coil__teardown) or of
 * a coil.run. An interrupt that came after the run's end was decided is
 * not lost: it goes on to the disposition the process had before coil (the
 * CLI: SIG_DFL, so it dies by it, stdout flushed). */
void coil__signals_uninstall(coil_runtime *rt) {
  int i, late = 0;
  struct sigaction now;
  if (atomic_load(&signal_rt) != rt) return;
  for (i = 0; i < 3; i++) {
    if (installed[i]) sigaction(interrupts[i], &saved[i], NULL);
    installed[i] = 0;
  }
  if (pipe_ignored) sigaction(SIGPIPE, &saved_pipe, NULL);
  pipe_ignored = 0;
  if (usr1_kept) sigaction(SIGUSR1, &saved_usr1, NULL);
  usr1_kept = 0;
  if (atomic_load(&rt->as.handled) < atomic_load(&rt->as.count))
    late = atomic_load(&rt->as.first);
  atomic_store(&signal_rt, NULL);
  if (late) {
    sigaction(late, NULL, &now);
    if (now.sa_handler == SIG_DFL) coil_die_by_signal(late);
    if (now.sa_handler != SIG_IGN) raise(late);
  }
}

/* coil_shutdown's work, from any thread or a signal handler: records the
 * request in atomics (the first status wins, whichever thread gets there
 * first), reaches Lua code that never yields (the busy hook, after 50 ms)
 * and wakes the loop. */
void coil__request_async(coil_runtime *rt, int status) {
  int expected = 0;
  if (atomic_load(&rt->teardown)) {
    /* the run is over and Lua code at teardown does not end: stop it */
    if (atomic_compare_exchange_strong(&rt->as.shutdown_claimed, &expected, 1))
      atomic_store(&rt->as.shutdown_request_status, status);
    atomic_store(&rt->teardown_stop, 1);
    return;
  }
  if (atomic_compare_exchange_strong(&rt->as.shutdown_claimed, &expected, 1)) {
    atomic_store(&rt->as.shutdown_request_status, status);
    atomic_store(&rt->as.shutdown_requested, 1);
    coil__interrupt_running(rt);
  }
  if (atomic_load(&rt->as.wake_ok)) uv_async_send(&rt->async);
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
    lua_sethook(running, busy_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT,
                1);
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

/* core.override(name, on) -> bool: whether coil handles this interrupt for
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

/* core.signum(name) -> number or nil */
static int l_signum(lua_State *L) {
  int signo = coil__signal_number(luaL_checkstring(L, 1));
  if (signo) lua_pushinteger(L, signo);
  else lua_pushnil(L);
  return 1;
}

/* core.interrupt_busy(on) -> taken: while on, a SIGINT taken over by
 * on_signal also raises Cancelled in a task that runs for 50 ms without
 * yielding (or in a C call it cut short); returns (and resets) how many
 * times that happened. */
static int l_interrupt_busy(lua_State *L) {
  atomic_store(&interrupt_busy, lua_toboolean(L, 1));
  lua_pushinteger(L, atomic_exchange(&interrupts_taken, 0));
  return 1;
}

/* core.ignored_signals() -> "1 13", or nil: the signals this process
 * ignores now. coil never ignores one itself (its SIGPIPE is a handler), so
 * these are the ones it was started with ignored (nohup): libuv's children
 * reset every signal to its default, and coil.process restores these. */
static int l_ignored_signals(lua_State *L) {
  luaL_Buffer b;
  int signo, any = 0;
  luaL_buffinit(L, &b);
  for (signo = 1; signo < 32; signo++) {
    struct sigaction sa;
    if (signo == SIGKILL || signo == SIGSTOP) continue;
    if (sigaction(signo, NULL, &sa) != 0 || sa.sa_handler != SIG_IGN) continue;
    if (any) luaL_addchar(&b, ' ');
    lua_pushinteger(L, signo);
    luaL_addvalue(&b);
    any = 1;
  }
  luaL_pushresult(&b);
  if (!any) lua_pushnil(L);
  return 1;
}

static const luaL_Reg signal_funcs[] = {{"override", l_override},
                                        {"signum", l_signum},
                                        {"ignored_signals", l_ignored_signals},
                                        {"interrupt_busy", l_interrupt_busy},
                                        {NULL, NULL}};

void coil__signal_open(lua_State *L, coil_runtime *rt) {
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, signal_funcs, 1);
}
