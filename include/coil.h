/*
 * coil — an embeddable host for asynchronous Lua 5.4 scripts on libuv.
 *
 * Every public symbol starts with coil_ / COIL_. Functions return 0 or a
 * negative COIL_E* code (coil_strerror names it). When a call fails, the
 * callback it was given is never called.
 *
 * Threading: every function must be called on the thread that runs the
 * runtime's loop, except coil_shutdown(), which is safe from any thread and
 * from a signal handler, and coil_post(), which is safe from any thread.
 */
#ifndef COIL_H
#define COIL_H

#include <stddef.h>
#include <uv.h>
#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define COIL_EXTERN __attribute__((visibility("default")))
#else
#define COIL_EXTERN
#endif

#define COIL_VERSION_MAJOR 0
#define COIL_VERSION_MINOR 2
#define COIL_VERSION_PATCH 0
#define COIL_VERSION_STRING "0.2.0"

/* coil's own codes lie below libuv's whole error space (UV_ERRNO_MAX), so
 * that no COIL_E* is ever taken for a libuv error. */
#define COIL__ERRNO_BASE (UV_ERRNO_MAX - 1000)

/* X-macro: name, value, message. Generates the COIL_E* codes and
 * coil_strerror. Where libuv has a code with the same meaning, it is
 * libuv's (uv_err_name names it too). */
#define COIL_ERRNO_MAP(XX)                                                     \
  XX(EINVAL, UV_EINVAL, "invalid argument")                                    \
  XX(ENOMEM, UV_ENOMEM,                                                        \
     "out of memory (or the runtime's memory_limit was hit)")                  \
  XX(EBUSY, UV_EBUSY, "another runtime already handles the process's signals") \
  XX(ECANCELED, UV_ECANCELED, "the task was cancelled")                        \
  XX(ELOAD, COIL__ERRNO_BASE - 1,                                              \
     "the code could not be loaded (missing file or syntax error)")            \
  XX(ESTATE, COIL__ERRNO_BASE - 2, "the runtime is shutting down or closed")   \
  XX(ELOOP, COIL__ERRNO_BASE - 3, "the libuv loop could not be set up")        \
  XX(ELUA, COIL__ERRNO_BASE - 4, "a Lua error")

typedef enum {
  COIL_OK = 0,
#define XX(code, value, msg) COIL_##code = (value),
  COIL_ERRNO_MAP(XX)
#undef XX
} coil_errno;

typedef struct coil_runtime coil_runtime;

/* Called once when a runtime has finished shutting down: every task done,
 * every handle of the runtime closed. status is the exit status (§2). */
typedef void (*coil_closed_cb)(coil_runtime *rt, int status, void *ud);

/* Called when a task started by coil_spawn_call ends. On success status is 0
 * and the task's results are on top of the Lua stack (nresults of them);
 * on failure status is COIL_ELUA, or COIL_ECANCELED if it was cancelled, and
 * the error object is on top (nresults 1). The callback must leave the
 * stack as it found it. */
typedef void (*coil_done_cb)(coil_runtime *rt, int status, int nresults,
                             void *ud);

/* Receives every line coil would write to stderr (announcements, reports,
 * tracebacks; one call per line, the first starting with "coil: "), when
 * set; coil then writes nothing to stderr itself. */
typedef void (*coil_message_cb)(coil_runtime *rt, const char *line, void *ud);

typedef struct coil_config {
  uv_loop_t *loop;          /* NULL: the runtime creates and owns a loop */
  double grace;             /* seconds cleanup gets on shutdown (default 5) */
  int signals;              /* 1: handle SIGINT/SIGTERM/SIGHUP/SIGUSR1 (§3) */
  int quiet;                /* 1: no shutdown announcements on stderr */
  size_t memory_limit;      /* bytes the Lua state may use; 0 = no limit */
  coil_closed_cb on_closed; /* see above; may be NULL */
  coil_message_cb on_message; /* see above; NULL: lines go to stderr */
  void *ud;                   /* passed to on_closed and on_message */
} coil_config;

/* Fills cfg with the defaults. */
COIL_EXTERN void coil_config_init(coil_config *cfg);

/* Creates a runtime: a Lua state with coil and luv loaded, bound to cfg->loop
 * (or a loop of its own). On failure *rt is NULL. */
COIL_EXTERN int coil_new(coil_runtime **rt, const coil_config *cfg);

/* The runtime's Lua state (the main thread). */
COIL_EXTERN lua_State *coil_lua(coil_runtime *rt);

/* The runtime's loop. */
COIL_EXTERN uv_loop_t *coil_loop(coil_runtime *rt);

/* Loads a script and spawns it as a task with argv as `...` and, for the
 * runtime's main task, as the global `arg` (argv[0] is the script name).
 * path NULL or "-" reads standard input. The first task spawned through
 * coil_spawn_file/coil_spawn_string is the runtime's main task: its result
 * decides the exit status (§2). On COIL_ELOAD, coil_last_error() says why. */
COIL_EXTERN int coil_spawn_file(coil_runtime *rt, const char *path, int argc,
                                char **argv);

/* Loads chunk (named name in messages) and spawns it as a task. */
COIL_EXTERN int coil_spawn_string(coil_runtime *rt, const char *chunk,
                                  const char *name);

/* Pops a function and nargs arguments from the Lua stack and spawns them as a
 * task; done_cb (may be NULL) gets its outcome. */
COIL_EXTERN int coil_spawn_call(coil_runtime *rt, int nargs,
                                coil_done_cb done_cb, void *ud);

/* Like coil_spawn_call, and the task becomes the runtime's main task (the CLI
 * uses it to run -e chunks, -l modules and the script in one task). */
COIL_EXTERN int coil_spawn_main(coil_runtime *rt, int nargs);

/* Own-loop mode: runs the loop until every task is done and every handle is
 * closed, then tears down. Returns the exit status (§2), and only that: a
 * misuse (a host-loop runtime, a second call) is reported as a message and
 * returns 1. After a signal shutdown coil_exit_signal() names the signal
 * the process should die by. */
COIL_EXTERN int coil_run(coil_runtime *rt);

/* Starts the §3 shutdown with the given exit status. Idempotent; safe from
 * any thread and from a signal handler; the loop does the work. */
COIL_EXTERN int coil_shutdown(coil_runtime *rt, int status);

/* The signal that ended the run (0 if none). */
COIL_EXTERN int coil_exit_signal(coil_runtime *rt);

/* How many runtimes of this process gave up waiting for a request still in
 * flight (a read from a FIFO in libuv's threadpool; the message "a request
 * still in flight did not finish"). libuv joins its threadpool's threads
 * when the process exits, which would wait for that request forever: a
 * process that sees a count above 0 should end with _exit after flushing. */
COIL_EXTERN int coil_abandoned_requests(void);

/* The message of the last failed call on rt (a load error, say), or "". */
COIL_EXTERN const char *coil_last_error(coil_runtime *rt);

/* A function coil_post runs on the loop's thread. */
typedef void (*coil_post_cb)(coil_runtime *rt, void *ud);

/* Hands fn(rt, ud) to the runtime from any thread (asyncio's
 * run_coroutine_threadsafe): it runs soon on the thread that runs the
 * loop, where it may call coil_spawn_call and every other function. Posts
 * run in the order they were made (per posting thread, and overall as the
 * mutex ordered them). After a shutdown began fn still runs — the runtime
 * then refuses new tasks (COIL_ESTATE) — at the latest in coil_free, so ud
 * can always be freed by fn. Returns 0, COIL_EINVAL (rt or fn NULL),
 * COIL_ENOMEM, or COIL_ESTATE once coil_free has begun (fn then never
 * runs). */
COIL_EXTERN int coil_post(coil_runtime *rt, coil_post_cb fn, void *ud);

/* Frees the runtime. Own-loop mode: after coil_run returned. Host loop:
 * after on_closed fired, or before any task was spawned. */
COIL_EXTERN void coil_free(coil_runtime *rt);

/* Names an error code. */
COIL_EXTERN const char *coil_strerror(int code);

/* Ends the process by signo the Unix way: default action restored, signal
 * unblocked and raised; if still alive (PID 1), _exit(128 + signo).
 * Flushes stdio first. Never returns. */
COIL_EXTERN void coil_die_by_signal(int signo);

/* "coil 0.2.0, Lua 5.4.4, libuv 1.44.2, luv 1.44.2" */
COIL_EXTERN const char *coil_version_string(void);

#ifdef __cplusplus
}
#endif
#endif /* COIL_H */
