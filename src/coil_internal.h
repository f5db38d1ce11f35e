/* Internal declarations shared by the files of libcoil. */
#ifndef COIL_INTERNAL_H
#define COIL_INTERNAL_H

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "coil.h"

#define COIL_INTERNAL __attribute__((visibility("hidden")))

typedef struct coil_task coil_task;

/* The Lua state's small blocks (pool.c): a free list per 16-byte class up
 * to POOL_MAX, carved from chunks. */
#define POOL_GRAIN 16
#define POOL_MAX 1024
typedef struct coil_pool {
  void *free[POOL_MAX / POOL_GRAIN + 1];
  char *next, *end;               /* the rest of the newest chunk */
  struct coil_pool_chunk *chunks; /* every chunk, freed with the runtime */
  size_t held;                    /* bytes in chunks */
} coil_pool;
typedef struct coil_waitset coil_waitset;

/* Where a task is in its life. */
enum {
  TASK_READY,     /* in the ready queue */
  TASK_RUNNING,   /* its coroutine is executing */
  TASK_SUSPENDED, /* parked at an await point */
  TASK_DONE
};

/* How a finished task ended. */
enum { OUTCOME_NONE, OUTCOME_OK, OUTCOME_FAILED, OUTCOME_CANCELLED };

/* What a suspended task waits for: decides how cancellation detaches it. */
enum {
  WAIT_NONE,
  WAIT_SLEEP,  /* in the timer heap */
  WAIT_TASK,   /* in another task's waiter list */
  WAIT_SHIELD, /* same, without owning it */
  WAIT_PARKED  /* a Lua-level wait (event, queue...): Lua code detaches */
};

/* Task flags. */
#define TF_THROW 0x0001           /* the value pushed for resume is an error */
#define TF_CANCEL_PENDING 0x0002  /* a Cancelled waits for delivery */
#define TF_CANCEL_DEFERRED 0x0004 /* raise it once the awaited task is done */
#define TF_CANCEL_SOFT                                                         \
  0x0008                             /* the pending one is a timeout's: a real
                                   cancellation replaces it */
#define TF_FORCED 0x0010             /* closed by force: awaits fail at once */
#define TF_MAIN 0x0020               /* the runtime's main task */
#define TF_ERR_SEEN 0x0040           /* someone looked at its error */
#define TF_INTERNAL 0x0080           /* coil's own (shutdown driver) */
#define TF_HOOK_CANCELLED 0x0100     /* interrupted by the busy-task hook */
#define TF_SHUTDOWN_CANCELLED 0x0200 /* step 3 already reached it */
#define TF_HAS_DONE_CB 0x0400 /* a coil_spawn_call done_cb waits for it */
#define TF_CO_SEEN 0x0800     /* Lua code got its coroutine: never reuse it */
#define TF_DEFERS 0x1000      /* coil.defer was called: look for defers */
#define TF_EXTRAS 0x2000      /* it has an extras table (task.c) */

struct coil_task {
  coil_runtime *rt;
  lua_State *co;            /* its coroutine; NULL once done */
  coil_task *next_ready;    /* ready-queue link */
  coil_task *awaited;       /* WAIT_TASK/WAIT_SHIELD: the task waited for */
  coil_task *waiters;       /* first task waiting for this one */
  coil_task *wnext, *wprev; /* links in awaited->waiters; WAIT_SLEEP: in
                               its sleep bucket (timer.c) */
  struct coil_sleep_bucket *bucket; /* WAIT_SLEEP: sleepers sharing its
                                       deadline millisecond */
  uint64_t id;
  uint64_t started;  /* loop time at spawn, ms */
  coil_waitset *ws;  /* the gather/wait/race watching it, if any */
  uint32_t ws_index; /* its place in that waitset's list */
  int anchor;        /* slot in the live-task table */
  int nargs;         /* values pushed for the next resume */
  int nresults;      /* DONE: how many results it returned */
  uint16_t flags;
  uint16_t cancels; /* Cancelled delivered, less core.uncancel */
  uint8_t state, outcome, wait;
};

/* Phases of the §3 sequence. Only coil__shutdown_step (shutdown.c) moves a
 * run from one to the next; a new run starts at PHASE_RUN (zero). */
enum {
  PHASE_RUN,     /* no shutdown requested */
  PHASE_DRAIN,   /* step 2: on_shutdown hooks */
  PHASE_CANCEL,  /* steps 3-4: every task cancelled, cleanup runs */
  PHASE_CLOSING, /* step 6: handles closing */
  PHASE_CLOSED   /* on_closed called / coil_run returning */
};

/* The sleepers (timer.c): a min-heap of buckets, one per deadline
 * millisecond, each a FIFO ring of its tasks; a hash finds a deadline's
 * bucket. len > 0 while anyone sleeps. */
typedef struct coil_sleep_bucket coil_sleep_bucket;
typedef struct {
  coil_sleep_bucket **items; /* the heap, earliest deadline first */
  uint32_t len, cap;
  coil_sleep_bucket **table; /* hash chains by deadline */
  uint32_t table_bits;       /* the table has 1 << table_bits chains */
  coil_sleep_bucket *spare;  /* emptied buckets, for reuse */
} coil_heap;

/* What a signal handler or another thread touches: atomics only, written
 * by signal.c's handler and coil_shutdown, read on the loop. */
typedef struct {
  atomic_int shutdown_claimed;   /* coil_shutdown: the first call's status */
  atomic_int shutdown_requested; /* from other threads / signal handlers */
  atomic_int shutdown_request_status;
  atomic_int wake_ok;           /* the async handle may be sent to */
  atomic_int count;             /* interrupts received */
  atomic_int first;             /* first interrupting signal */
  atomic_int handled;           /* interrupts the loop has acted on */
  atomic_int pending[32];       /* on_signal-handled signals to dispatch */
  atomic_int override[32];      /* on_signal took these over */
  lua_State *_Atomic running_L; /* Lua code now running, for the busy hook */
  atomic_int hook_armed;
} coil_async_state;

/* What lives for one run (one coil_run, one coil.run, or a host-loop
 * runtime's life until its shutdown): cleared in one place,
 * coil__run_reset (shutdown.c), which also tells the Lua half. */
typedef struct {
  int phase;
  int stepping; /* coil__shutdown_step is on the stack */
  /* requests, recorded by any layer, acted on by the step */
  int requested; /* a shutdown was asked for */
  int request_signo;
  const char *request_reason;
  int cancel_wanted;        /* step 2 is over: cancel every task */
  int force_wanted;         /* close every task by force */
  const char *force_reason; /* for the report; NULL: say nothing */
  int close_wanted;         /* close the handles now */
  /* outcome */
  int exit_set; /* the first request's status is kept */
  int exit_status;
  int exit_signal;
  int deadlocked; /* this run ended in a deadlock */
  /* the sequence's own state */
  int forced;
  int handles_closing;
  int closing_count; /* coil's own handles still closing */
  int closed_notified;
  int async_reffed; /* waiting for a signal keeps the loop alive */
  int abandoned;    /* gave up waiting for a stuck request at teardown */
  int cancel_ref;   /* registry: the Cancelled every task gets in step 3 */
  uint64_t shutdown_started; /* loop time of the request, ms */
  uint64_t hook_t0;          /* when the busy hook first ran */
  int mem_exceeded;          /* 1: just hit, 2: acted on */
  coil_task *main_task;
} coil_run_state;

struct coil_runtime {
  /* for the runtime's life */
  lua_State *L;
  uv_loop_t *loop;
  uv_loop_t own_loop;
  int owns_loop;  /* 1 own loop, 2 own loop given up on (abandoned) */
  int owns_state; /* 0 when coil is a module inside someone's state */
  int module;     /* loaded by require "coil" from stock Lua */
  int in_run;     /* coil.run is driving the loop */
  int quiet;
  double grace;
  int signals;
  coil_closed_cb on_closed;
  coil_message_cb on_message;
  void *ud;
  char last_error[512];
  int free_pending; /* coil_free came before the closes finished */
  int in_on_closed; /* on_closed is running: coil_free waits for it */
  int lua_closed;

  /* coil's own handles (shutdown.c opens and closes them) */
  uv_idle_t idle;   /* active while tasks are ready: poll must not block */
  uv_check_t check; /* runs the ready tasks after each poll */
  uv_timer_t timer; /* armed for the earliest sleeper */
  uv_timer_t grace_timer;
  uv_async_t async; /* wakes the loop for coil_shutdown and signals */
  uv_signal_t usr1;
  int usr1_started;
  uv_timer_t watchdog; /* service.c: systemd's watchdog ping, when asked */
  uint64_t watchdog_usec;
  int watchdog_started;

  /* the scheduler and the tasks */
  coil_heap sleepers;
  uint64_t timer_due; /* deadline the timer is armed for; 0 = idle */
  int vclock;         /* registry: virtual time's clock (clock.c); 0 = real */
  int vclock_quiet;   /* virtual time: the last turn left no task ready */
  coil_task *ready_head, *ready_tail;
  coil_task *current;
  uint64_t next_id;
  size_t live;     /* tasks not done */
  int anchors_ref; /* registry: table slot -> live task userdata */
  int anchored;    /* spawn.c: slots 1..anchored of it are in use */
  int entry_ref;   /* registry: the coroutine main function */
  /* a thread never run, whose stack keeps [1] the live-task table (as
   * anchors_ref: read without a registry lookup), [2] the task metatable,
   * and above them the finished coroutines spawn.c reuses (co_pool_n of
   * them). Only calls that cannot raise touch it: an error there would have
   * no handler. */
  lua_State *keep;
  int co_pool_n;
  /* the task metatable, for a quick identity test (task.c) */
  const void *task_mt;

  /* memory (memory.c, pool.c) */
  coil_pool pool;
  size_t mem_used, mem_limit;
  void *refused_ptr; /* the allocation the memory limit refused last */
  size_t refused_size;
  /* teardown (shutdown.c): Lua code still runs in the last report and at
   * lua_close; the limit holds there, and once the host calls
   * coil_shutdown again the Lua state gets no more memory */
  atomic_int teardown;
  atomic_int teardown_stop;

  coil_run_state run;
  coil_async_state as;
  struct { /* coil_post's queue (post.c; under its mutex) */
    struct coil_post_item *head, *tail;
    int closing; /* the teardown runs the last ones */
    int closed;  /* refused from then on */
  } posts;
};

/* The runtime of a C function registered with it as upvalue 1. */
#define RT_UP(L) ((coil_runtime *)lua_touserdata(L, lua_upvalueindex(1)))

COIL_INTERNAL void coil__messagef(coil_runtime *rt, const char *fmt, ...);

/* Disarms the busy-task hook in co (any layer that ran Lua code may). */
static inline void coil__clear_hook(coil_runtime *rt, lua_State *co) {
  if (!atomic_exchange(&rt->as.hook_armed, 0)) return;
  lua_sethook(co, NULL, 0, 0);
  rt->run.hook_t0 = 0;
}

/* Records a shutdown request (any layer may; the first status wins). The
 * shutdown step acts on it: at once when the caller is shutdown.c, else on
 * the loop right after the Lua code that asked returns. */
static inline void coil__request(coil_runtime *rt, int status, int signo,
                                 const char *reason) {
  if (!rt->run.exit_set) {
    rt->run.exit_set = 1;
    rt->run.exit_status = status;
    rt->run.exit_signal = signo;
  }
  if (!rt->run.requested) {
    rt->run.requested = 1;
    rt->run.request_signo = signo;
    rt->run.request_reason = reason;
    /* step 1 is said when the request is recorded, not when the loop acts
     * on it: a busy task that swallows its Cancelled never lets it */
    if (signo && !rt->quiet)
      coil__messagef(rt,
                     "%s received, cancelling %zu task(s) (%s again to force)",
                     reason, rt->live, signo == SIGINT ? "Ctrl+C" : reason);
  }
}

/* Sets the exit status unless a request already decided it. */
static inline void coil__request_status(coil_runtime *rt, int status) {
  if (!rt->run.exit_set) {
    rt->run.exit_set = 1;
    rt->run.exit_status = status;
  }
}

/* Layers, bottom up: each file calls only the files listed before it here
 * (scripts/check-layers checks it; docs/internals.md is the map). */

/* message.c: every line coil writes for a human */
COIL_INTERNAL void coil__message(coil_runtime *rt, const char *text);
COIL_INTERNAL void coil__messagef(coil_runtime *rt, const char *fmt, ...);
COIL_INTERNAL void coil__report_error(lua_State *L, const char *what, int idx);
COIL_INTERNAL coil_runtime *coil__rt(lua_State *L);
COIL_INTERNAL int coil__arg_error(lua_State *L, int idx, const char *what,
                                  const char *expected);
COIL_INTERNAL void coil__check_function(lua_State *L, int idx,
                                        const char *what);
COIL_INTERNAL void coil__register_runtime(lua_State *L, coil_runtime *rt);

/* pool.c: size-class blocks for the Lua state */
COIL_INTERNAL void *coil__pool_realloc(coil_pool *pool, void *ptr, size_t osize,
                                       size_t nsize);
COIL_INTERNAL void coil__pool_free(coil_pool *pool);

/* memory.c: the counting allocator and the memory limit */
COIL_INTERNAL void *coil__alloc(void *ud, void *ptr, size_t osize,
                                size_t nsize);
COIL_INTERNAL void coil__check_memory(coil_runtime *rt);

/* task.c: the task object */
COIL_INTERNAL void coil__push_task(lua_State *L, coil_task *t);
COIL_INTERNAL coil_task *coil__test_task(lua_State *L, int idx);
COIL_INTERNAL coil_task *coil__check_task(lua_State *L, int idx);
COIL_INTERNAL coil_task *coil__test_task(lua_State *L, int idx);
COIL_INTERNAL int coil__push_extras(lua_State *L, int idx, int create);
COIL_INTERNAL int coil__push_extras_of(lua_State *L, coil_task *t, int create);
COIL_INTERNAL void coil__push_name_at(lua_State *L, int idx);
COIL_INTERNAL void coil__push_name(lua_State *L, coil_task *t);
COIL_INTERNAL coil_task **coil__live_tasks(coil_runtime *rt, size_t *count);
COIL_INTERNAL void coil__task_object_open(lua_State *L, coil_runtime *rt);
COIL_INTERNAL void coil__task_methods(lua_State *L, coil_runtime *rt,
                                      const luaL_Reg *methods);
COIL_INTERNAL extern const char coil__task_mt_key;
COIL_INTERNAL extern const char *const coil__wait_names[];

/* post.c: coil_post, work handed in from other threads (a queue and
 * an async handle; it calls nothing of coil's) */
COIL_INTERNAL void coil__posts_run(coil_runtime *rt);
COIL_INTERNAL void coil__posts_kick(coil_runtime *rt);
COIL_INTERNAL void coil__posts_close(coil_runtime *rt);

/* error.c: error objects, tracebacks, the protected call, unseen errors */
COIL_INTERNAL void coil__new_cancelled(lua_State *L, const char *reason);
COIL_INTERNAL int coil__is_cancelled(lua_State *L, int idx);
COIL_INTERNAL void coil__new_interrupted(lua_State *L, const char *signal);
COIL_INTERNAL void coil__traceback(lua_State *L, lua_State *co, const char *msg,
                                   coil_task *t);
COIL_INTERNAL int coil__msgh(lua_State *L);
COIL_INTERNAL int coil__pcall(lua_State *L, int nargs, int nresults);
COIL_INTERNAL int coil__call_hook(coil_runtime *rt, const char *name, int nargs,
                                  int nresults);
COIL_INTERNAL void coil__push_error_text(lua_State *L, int idx);
COIL_INTERNAL void coil__mark_seen(lua_State *L, int idx);
COIL_INTERNAL void coil__record_unseen(lua_State *L, int idx);
COIL_INTERNAL void coil__report_unseen_all(coil_runtime *rt);
COIL_INTERNAL void coil__error_open(lua_State *L, coil_runtime *rt);

/* signal.c: the only async-signal-safe code */
COIL_INTERNAL int coil__signals_install(coil_runtime *rt);
COIL_INTERNAL void coil__signals_uninstall(coil_runtime *rt);
COIL_INTERNAL void coil__signals_keep_usr1(coil_runtime *rt);
COIL_INTERNAL int coil__signals_unhandled(coil_runtime *rt);
COIL_INTERNAL void coil__signals_poll(coil_runtime *rt);
COIL_INTERNAL void coil__signal_open(lua_State *L, coil_runtime *rt);
COIL_INTERNAL int coil__signals_pending(coil_runtime *rt);
COIL_INTERNAL void coil__interrupt_running(coil_runtime *rt);
COIL_INTERNAL int coil__signal_number(const char *name);
COIL_INTERNAL const char *coil__signal_name(int signo);
COIL_INTERNAL void coil__die_by_signal(int signo);
COIL_INTERNAL void coil__request_async(coil_runtime *rt, int status);

/* coroutine.c: transparent coroutines (awaits inside user coroutines) */
/* Replaces coroutine.resume/wrap/yield/running/isyieldable/close in L and
 * core.traceback (the coil table is on top of L's stack). */
COIL_INTERNAL void coil__coroutine_open(lua_State *L, coil_runtime *rt);
/* Whether L, a coroutine inside the running task, was resumed by coil's
 * resume from a place an await can pass through (the await check). */
COIL_INTERNAL int coil__inner_awaits(lua_State *L);
/* Pushes the traceback of the suspended task t (with t->co set) prefixed by
 * msg: from the coroutine it waits in, when it waits inside one, outward. */
COIL_INTERNAL void coil__task_traceback(lua_State *L, coil_task *t,
                                        const char *msg);

/* service.c: systemd's notify protocol, the watchdog, socket activation */
COIL_INTERNAL void coil__service_open(lua_State *L, coil_runtime *rt);

/* scheduler.c: the ready queue and the one await-point API */
COIL_INTERNAL void coil__make_ready(coil_runtime *rt, coil_task *t);
COIL_INTERNAL coil_task *coil__inside_task(lua_State *L, const char *what);
COIL_INTERNAL coil_task *coil__await_check(lua_State *L, const char *what);
COIL_INTERNAL int coil__suspend(lua_State *L, coil_task *t, int wait,
                                lua_KFunction k, lua_KContext ctx);
COIL_INTERNAL void coil__check_throw(lua_State *L, coil_task *t);
COIL_INTERNAL void coil__cancel_delivered(coil_task *t);
COIL_INTERNAL void coil__link_waiter(coil_task *target, coil_task *w);
COIL_INTERNAL void coil__unlink_waiter(coil_task *w);
COIL_INTERNAL void coil__scheduler_open(lua_State *L, coil_runtime *rt);

/* clock.c: virtual time (lua/coil/clock.lua); it wraps the core's check
 * callback, which it calls through the pointer it replaced, as libuv would */
COIL_INTERNAL int coil__l_virtual_clock(lua_State *L);
COIL_INTERNAL int coil__vclock_sleep(lua_State *L, coil_runtime *rt,
                                     lua_Number s);
COIL_INTERNAL int coil__vclock_now(lua_State *L, coil_runtime *rt);

/* timer.c: sleeping */
COIL_INTERNAL void coil__timer_open(lua_State *L, coil_runtime *rt);
COIL_INTERNAL void coil__heap_remove(coil_runtime *rt, coil_task *t);
COIL_INTERNAL void coil__heap_free(coil_runtime *rt);
COIL_INTERNAL coil_task **coil__sleepers(coil_runtime *rt, size_t *count);

/* cancel.c: cancellation, soft cancellation */
COIL_INTERNAL int coil__cancel(lua_State *L, coil_task *t, int err_idx,
                               int soft);
COIL_INTERNAL void coil__task_unlink_waits(coil_runtime *rt, coil_task *t);
COIL_INTERNAL int coil__task_cancel(lua_State *L);
COIL_INTERNAL void coil__cancel_open(lua_State *L, coil_runtime *rt);

/* waitset.c: gather/wait/race watching their tasks */
COIL_INTERNAL void coil__waitset_linked_done(coil_runtime *rt, coil_task *t);
COIL_INTERNAL void coil__waitset_open(lua_State *L, coil_runtime *rt);

/* spawn.c: a task's life: spawn, run, finish, defer, force */
COIL_INTERNAL coil_task *coil__spawn(lua_State *L, coil_runtime *rt, int nargs);
COIL_INTERNAL void *coil__done_record_new(coil_done_cb cb, void *ud);
COIL_INTERNAL void coil__attach_done_record(lua_State *L, void *rec);
COIL_INTERNAL int coil__run_ready(coil_runtime *rt);
COIL_INTERNAL void coil__force(coil_runtime *rt, coil_task *t);
COIL_INTERNAL int coil__status_of(lua_State *L, int idx);
COIL_INTERNAL void coil__spawn_open(lua_State *L, coil_runtime *rt);

/* thread.c: coil.thread, Lua states on the thread pool */
COIL_INTERNAL void coil__thread_open(lua_State *L);
COIL_INTERNAL void coil__threads_abandon(coil_runtime *rt);

/* shutdown.c: the step function, the drive loop, coil's own handles */
COIL_INTERNAL void coil__open_handles(coil_runtime *rt);
COIL_INTERNAL int coil__close_module_handles(coil_runtime *rt, uv_close_cb cb);
COIL_INTERNAL void coil__run_reset(coil_runtime *rt);
COIL_INTERNAL void coil__shutdown_step(coil_runtime *rt);
COIL_INTERNAL void coil__drive(coil_runtime *rt, int close_when_done);
COIL_INTERNAL void coil__shutdown_now(coil_runtime *rt);
COIL_INTERNAL void coil__teardown(coil_runtime *rt);
COIL_INTERNAL void coil__install_last_finalizer(lua_State *L, coil_runtime *rt);
COIL_INTERNAL void coil__final_report(coil_runtime *rt);
COIL_INTERNAL void coil__luv_running(coil_runtime *rt, int running);
COIL_INTERNAL void coil__shutdown_open(lua_State *L, coil_runtime *rt);

/* net_socket.c: socket options luv lacks (SO_REUSEPORT before bind) */
COIL_INTERNAL void coil__net_open(lua_State *L);

/* fs_seek.c: file:seek (lseek on a descriptor) */
COIL_INTERNAL void coil__fs_open(lua_State *L);

/* embed.c (generated): the lua/ files */
typedef struct {
  const char *name;
  const char *chunkname;
  const unsigned char *data;
  size_t size;
} coil_embedded;
COIL_INTERNAL extern const coil_embedded coil__lua_files[];

/* lib.c: the Lua bindings (luv on the loop, the coil table) */
COIL_INTERNAL int coil__open(lua_State *L, coil_runtime *rt);

/* The two front doors, on top: runtime.c (the public C API of coil.h) and
 * module.c (luaopen_coil and coil.run for stock Lua). */

/* Lua 5.4.4 closes a coroutine with lua_resetthread; 5.4.6+ with
 * lua_closethread(co, from). */
static inline int coil__closethread(lua_State *co, lua_State *from) {
#if LUA_VERSION_RELEASE_NUM >= 50406
  return lua_closethread(co, from);
#else
  (void)from;
  return lua_resetthread(co);
#endif
}

#endif
