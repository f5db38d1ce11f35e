/*
 * coil.thread's C half: a Lua function runs in a fresh lua_State on libuv's
 * thread pool. The function travels as bytecode (string.dump), arguments
 * and results as a small tagged byte format (nil, booleans, integers,
 * floats, strings and tables of those), so the two states never share a
 * Lua object. Cancelling sets a flag and a count hook in the thread's
 * state (the way lua.c stops a running script), so the function stops at
 * its next Lua instruction; a job still queued is never started.
 *
 * Lua side (lua/coil/thread.lua):
 *   core.thread_start(cb, code, ...) -> job    (raises if an argument
 *                                                cannot be copied)
 *   core.thread_cancel(job)
 * and cb(true, results...) / cb(false, message) / cb(nil) (it never ran,
 * or stopped because it was cancelled) later, on the loop's thread.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "coil_internal.h"

#define MAX_DEPTH 100

enum { T_NIL, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_STRING, T_TABLE, T_END };

/* A growable byte buffer, owned by a userdata while it is being filled (so
 * a Lua error in the middle frees it) and detached when complete. */
typedef struct {
  char *data;
  size_t len, cap;
} buffer;

static const char *const BUFFER_MT = "coil.thread.buffer";

static int buffer_gc(lua_State *L) {
  buffer *b = (buffer *)lua_touserdata(L, 1);
  free(b->data);
  b->data = NULL;
  return 0;
}

/* Pushes a new empty buffer userdata; returns it. */
static buffer *buffer_new(lua_State *L) {
  buffer *b = (buffer *)lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  if (luaL_newmetatable(L, BUFFER_MT)) {
    lua_pushcfunction(L, buffer_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return b;
}

/* Raises a message without a position (the Lua half adds the caller's). */
static int copy_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

static void put(lua_State *L, buffer *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    char *data;
    while (cap < b->len + n) cap *= 2;
    data = (char *)realloc(b->data, cap);
    if (!data) copy_error(L, "coil: thread: out of memory");
    b->data = data;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void put_tag(lua_State *L, buffer *b, char tag) { put(L, b, &tag, 1); }

/* Appends the value at idx (absolute). `seen` (absolute) is a table of the
 * tables being copied, to refuse cycles; `what` names the value in errors. */
static void put_value(lua_State *L, buffer *b, int idx, int seen, int depth,
                      const char *what) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    put_tag(L, b, T_NIL);
    break;
  case LUA_TBOOLEAN:
    put_tag(L, b, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      lua_Integer i = lua_tointeger(L, idx);
      put_tag(L, b, T_INT);
      put(L, b, &i, sizeof i);
    } else {
      lua_Number n = lua_tonumber(L, idx);
      put_tag(L, b, T_FLOAT);
      put(L, b, &n, sizeof n);
    }
    break;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    put_tag(L, b, T_STRING);
    put(L, b, &len, sizeof len);
    put(L, b, s, len);
    break;
  }
  case LUA_TTABLE:
    if (depth >= MAX_DEPTH)
      copy_error(L, "coil: thread: cannot copy %s: tables nested too deep",
                 what);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, seen) != LUA_TNIL)
      copy_error(L, "coil: thread: cannot copy %s: a table with a cycle", what);
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, seen);
    luaL_checkstack(L, 4, "coil: thread: tables nested too deep");
    put_tag(L, b, T_TABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      int top = lua_gettop(L);
      put_value(L, b, top - 1, seen, depth + 1, what);
      put_value(L, b, top, seen, depth + 1, what);
      lua_pop(L, 1);
    }
    put_tag(L, b, T_END);
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, seen);
    break;
  default:
    copy_error(L,
               "coil: thread: cannot copy %s: a %s (only nil, booleans, "
               "numbers, strings and tables of those)",
               what, luaL_typename(L, idx));
  }
}

/* Serializes the n values from index first into a new buffer; leaves the
 * buffer userdata on the stack and returns it. */
static buffer *put_values(lua_State *L, int first, int n, const char *what) {
  char name[64];
  buffer *b;
  int i, seen;
  lua_newtable(L);
  seen = lua_gettop(L);
  b = buffer_new(L);
  for (i = 0; i < n; i++) {
    snprintf(name, sizeof name, "%s %d", what, i + 1);
    put_value(L, b, first + i, seen, 0, name);
  }
  lua_remove(L, seen);
  return b;
}

static void take(const char **p, void *out, size_t n) {
  memcpy(out, *p, n);
  *p += n;
}

/* Pushes the value at *p (trusted: written by put_value). */
static void get_value(lua_State *L, const char **p) {
  char tag = *(*p)++;
  switch (tag) {
  case T_NIL:
    lua_pushnil(L);
    break;
  case T_FALSE:
  case T_TRUE:
    lua_pushboolean(L, tag == T_TRUE);
    break;
  case T_INT: {
    lua_Integer i;
    take(p, &i, sizeof i);
    lua_pushinteger(L, i);
    break;
  }
  case T_FLOAT: {
    lua_Number n;
    take(p, &n, sizeof n);
    lua_pushnumber(L, n);
    break;
  }
  case T_STRING: {
    size_t len;
    take(p, &len, sizeof len);
    lua_pushlstring(L, *p, len);
    *p += len;
    break;
  }
  case T_TABLE:
    luaL_checkstack(L, 3, "coil: thread: tables nested too deep");
    lua_newtable(L);
    while (**p != T_END) {
      get_value(L, p);
      get_value(L, p);
      lua_rawset(L, -3);
    }
    (*p)++;
    break;
  default:
    luaL_error(L, "coil: thread: corrupt data");
  }
}

/* Pushes the n values in data; returns n. */
static int get_values(lua_State *L, const char *data, int n) {
  const char *p = data;
  int i;
  luaL_checkstack(L, n + 2, "coil: thread: too many values");
  for (i = 0; i < n; i++) get_value(L, &p);
  return n;
}

/* ---- jobs ----------------------------------------------------------------- */

enum { JOB_OK = 1, JOB_ERROR = 0, JOB_CANCELLED = -1 };

typedef struct thread_job {
  uv_work_t req;
  coil_runtime *rt;
  struct thread_job *next_running; /* in running_jobs while fn runs */
  pthread_t thread;
  int cb_ref; /* registry: the Lua callback */
  char *code; /* the function's bytecode */
  size_t code_len;
  char *args; /* serialized arguments */
  int nargs;
  char *results; /* serialized results, or the error message */
  size_t results_len;
  int nresults;
  int outcome;
  atomic_int cancel;
  pthread_mutex_t lock; /* guards running */
  lua_State *running;   /* the thread's state while fn runs */
} thread_job;

/* Jobs whose fn runs now, for coil__threads_abandon. */
static pthread_mutex_t running_lock = PTHREAD_MUTEX_INITIALIZER;
static thread_job *running_jobs;

static void running_add(thread_job *job) {
  pthread_mutex_lock(&running_lock);
  job->thread = pthread_self();
  job->next_running = running_jobs;
  running_jobs = job;
  pthread_mutex_unlock(&running_lock);
}

static void running_remove(thread_job *job) {
  thread_job **p;
  pthread_mutex_lock(&running_lock);
  for (p = &running_jobs; *p; p = &(*p)->next_running)
    if (*p == job) {
      *p = job->next_running;
      break;
    }
  pthread_mutex_unlock(&running_lock);
}

/* The runtime is torn down and its loop given up with a thread still
 * stuck in a C call: libuv joins its pool's threads at process exit, which
 * would wait for that call forever. Such a thread is cancelled (pthread
 * cancellation: it ends at its next cancellation point, a blocking read or
 * open among them); its state and job are left behind with it. */
void coil__threads_abandon(coil_runtime *rt) {
  thread_job *job;
  pthread_mutex_lock(&running_lock);
  for (job = running_jobs; job; job = job->next_running)
    if (job->rt == rt) pthread_cancel(job->thread);
  pthread_mutex_unlock(&running_lock);
}

static void free_job(thread_job *job) {
  pthread_mutex_destroy(&job->lock);
  free(job->code);
  free(job->args);
  free(job->results);
  free(job);
}

/* The count hook armed by a cancellation: raises at the next instruction,
 * and again at each one after (a pcall in fn cannot swallow it for long). */
static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  luaL_error(L, "cancelled");
}

/* In the thread's state, protected: load fn, push the arguments, call,
 * serialize the results into the job. */
static int run_in_thread(lua_State *L) {
  thread_job *job = (thread_job *)lua_touserdata(L, 1);
  int base, n;
  buffer *b;
  if (luaL_loadbufferx(L, job->code, job->code_len, "=coil.thread", "b") !=
      LUA_OK)
    return lua_error(L);
  base = lua_gettop(L);
  get_values(L, job->args, job->nargs);
  lua_call(L, job->nargs, LUA_MULTRET);
  n = lua_gettop(L) - base + 1;
  b = put_values(L, base, n, "result");
  job->results = b->data;
  job->results_len = b->len;
  job->nresults = n;
  b->data = NULL; /* the job owns it now */
  return 0;
}

/* The pool thread's work: a fresh state, the function, its results. */
static void work_cb(uv_work_t *req) {
  thread_job *job = (thread_job *)req->data;
  lua_State *L;
  int st;
  if (atomic_load(&job->cancel)) {
    job->outcome = JOB_CANCELLED;
    return;
  }
  L = luaL_newstate();
  if (!L) {
    job->outcome = JOB_ERROR;
    job->results = strdup("coil: thread: out of memory");
    return;
  }
  luaL_openlibs(L);
  pthread_mutex_lock(&job->lock);
  job->running = L;
  /* a cancellation that came before this point finds running NULL */
  if (atomic_load(&job->cancel)) lua_sethook(L, stop_hook, LUA_MASKCOUNT, 1);
  pthread_mutex_unlock(&job->lock);
  lua_pushcfunction(L, run_in_thread);
  lua_pushlightuserdata(L, job);
  running_add(job);
  st = lua_pcall(L, 1, 0, 0);
  running_remove(job);
  pthread_mutex_lock(&job->lock);
  job->running = NULL;
  pthread_mutex_unlock(&job->lock);
  if (st == LUA_OK) {
    job->outcome = JOB_OK;
  } else if (atomic_load(&job->cancel)) {
    job->outcome = JOB_CANCELLED;
  } else {
    const char *msg = lua_tostring(L, -1);
    char buf[64];
    if (!msg) {
      snprintf(buf, sizeof buf, "(error object is a %s value)",
               luaL_typename(L, -1));
      msg = buf;
    }
    job->outcome = JOB_ERROR;
    job->results = strdup(msg);
  }
  lua_close(L);
}

/* Back on the loop's thread: hands the outcome to the Lua callback. */
static void after_work_cb(uv_work_t *req, int status) {
  thread_job *job = (thread_job *)req->data;
  coil_runtime *rt = job->rt;
  lua_State *L = rt->L;
  int n;
  if (!L || rt->lua_closed) {
    free_job(job);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, job->cb_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, job->cb_ref);
  if (status == UV_ECANCELED || job->outcome == JOB_CANCELLED) {
    lua_pushnil(L);
    n = 1;
  } else if (job->outcome == JOB_OK) {
    lua_pushboolean(L, 1);
    n = 1 + get_values(L, job->results, job->nresults);
  } else {
    lua_pushboolean(L, 0);
    lua_pushstring(L,
                   job->results ? job->results : "coil: thread: out of memory");
    n = 2;
  }
  free_job(job);
  if (coil__pcall(L, n, 0) != LUA_OK) {
    coil__report_error(L, "error in coil.thread's callback", -1);
    lua_pop(L, 1);
  }
}

/* core.thread_start(cb, code, ...) -> job (a light userdata) */
static int l_thread_start(lua_State *L) {
  coil_runtime *rt = coil__rt(L);
  size_t code_len;
  const char *code;
  thread_job *job;
  buffer *b;
  int nargs = lua_gettop(L) - 2, r;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  code = luaL_checklstring(L, 2, &code_len);
  b = put_values(L, 3, nargs, "argument");
  job = (thread_job *)calloc(1, sizeof *job);
  if (!job) return luaL_error(L, "coil: thread: out of memory");
  job->code = (char *)malloc(code_len ? code_len : 1);
  if (!job->code) {
    free(job);
    return luaL_error(L, "coil: thread: out of memory");
  }
  memcpy(job->code, code, code_len);
  job->code_len = code_len;
  job->args = b->data;
  job->nargs = nargs;
  b->data = NULL;
  job->rt = rt;
  job->req.data = job;
  atomic_init(&job->cancel, 0);
  pthread_mutex_init(&job->lock, NULL);
  r = uv_queue_work(rt->loop, &job->req, work_cb, after_work_cb);
  if (r != 0) {
    free_job(job);
    return luaL_error(L, "coil: thread: %s", uv_strerror(r));
  }
  lua_pushvalue(L, 1);
  job->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, job);
  return 1;
}

/* core.thread_cancel(job): a job still queued never starts; a running
 * one stops at its next Lua instruction. Only while its callback has not
 * come (the Lua half keeps to that). */
static int l_thread_cancel(lua_State *L) {
  thread_job *job = (thread_job *)lua_touserdata(L, 1);
  luaL_argcheck(L, job != NULL, 1, "job expected");
  atomic_store(&job->cancel, 1);
  if (uv_cancel((uv_req_t *)&job->req) == 0) return 0;
  pthread_mutex_lock(&job->lock);
  if (job->running) lua_sethook(job->running, stop_hook, LUA_MASKCOUNT, 1);
  pthread_mutex_unlock(&job->lock);
  return 0;
}

/* Adds the functions to the module table on top of L. */
void coil__thread_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"thread_start", l_thread_start},
                                 {"thread_cancel", l_thread_cancel},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
