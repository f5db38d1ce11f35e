/*
 * Messages: every line coil writes for a human (announcements, reports,
 * tracebacks) goes through coil__message. It is the bottom layer: it knows
 * the runtime only to find cfg.on_message.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "coil_internal.h"

static const char rt_key = 'r'; /* registry[&rt_key] = light userdata rt */

void coil__register_runtime(lua_State *L, coil_runtime *rt) {
  lua_pushlightuserdata(L, rt);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &rt_key);
}

/* Raises "coil: <what> expects <expected>, got <type>": the one-line
 * argument error of coil's own C functions (as coil.sleep's). */
int coil__arg_error(lua_State *L, int idx, const char *what,
                    const char *expected) {
  return luaL_error(L, "coil: %s expects %s, got %s", what, expected,
                    luaL_typename(L, idx));
}

void coil__check_function(lua_State *L, int idx, const char *what) {
  if (lua_type(L, idx) != LUA_TFUNCTION)
    coil__arg_error(L, idx, what, "a function");
}

coil_runtime *coil__rt(lua_State *L) {
  coil_runtime *rt;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &rt_key);
  rt = (coil_runtime *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return rt;
}

/* Hands text to the host's on_message one line at a time, or writes
 * "coil: " and text to stderr with every further line indented, so that a
 * message is always told apart from the script's own output. */
void coil__message(coil_runtime *rt, const char *text) {
  const char *p = text, *nl;
  if (strncmp(p, "coil: ", 6) == 0) p += 6;
  if (rt && rt->on_message) {
    char buf[1024];
    int first = 1;
    do {
      size_t len;
      nl = strchr(p, '\n');
      len = nl ? (size_t)(nl - p) : strlen(p);
      if (len > sizeof buf - 9) len = sizeof buf - 9;
      snprintf(buf, sizeof buf, "%s%.*s", first ? "coil: " : "  ", (int)len, p);
      rt->on_message(rt, buf, rt->ud);
      first = 0;
      p = nl ? nl + 1 : NULL;
    } while (p);
    return;
  }
  {
    /* one write for the whole message when it fits: processes sharing
     * stderr (--workers) never cut into each other's lines */
    char line[4096];
    size_t n = 6;
    memcpy(line, "coil: ", 6);
    for (; *p && n < sizeof line - 3; p++) {
      line[n++] = *p;
      if (*p == '\n') {
        line[n++] = ' ';
        line[n++] = ' ';
      }
    }
    if (!*p) {
      line[n++] = '\n';
      fwrite(line, 1, n, stderr);
      fflush(stderr);
      return;
    }
    p = text;
    if (strncmp(p, "coil: ", 6) == 0) p += 6;
  }
  fputs("coil: ", stderr);
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
  coil_runtime *rt = coil__rt(L);
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
