/*
 * coil.console_edit: line editing and history for the console, through
 * libedit's readline-compatible callback interface. The console drives it
 * from the loop: a poll handle on fd 0 calls feed() when a key is there, so
 * nothing here ever waits for input while tasks could run.
 *
 * Part of the coil command only (libcoil never links libedit). libedit's own
 * signal handlers are turned off: SIGINT belongs to coil (the console's
 * Ctrl+C), and libedit's handlers would re-send signals to the whole process
 * group. Built without libedit, the module has stdin_blocking only and
 * line_editing = false.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "console_edit.h"

static int stdin_flags = -1; /* fd 0's flags before any handle touched it */

/* stdin_blocking(on): libuv makes fd 0 non-blocking for its handles; between
 * prompts it blocks again (if it did at first), so that a statement reading
 * it, or the shell afterwards, gets no EAGAIN. */
static int l_stdin_blocking(lua_State *L) {
  int flags = fcntl(0, F_GETFL), want;
  if (flags < 0 || stdin_flags < 0) return 0;
  want = lua_toboolean(L, 1) && !(stdin_flags & O_NONBLOCK)
             ? flags & ~O_NONBLOCK
             : flags | O_NONBLOCK;
  if (want != flags) fcntl(0, F_SETFL, want);
  return 0;
}

#ifdef COIL_HAVE_LIBEDIT
#include <editline/readline.h>

static int initialized;
static int got_line;       /* the line handler ran since the last feed */
static char *done_line;    /* what it got: a line, or NULL for end of input */
static char *prompt_now;   /* the prompt being shown (libedit copies it too) */
static lua_State *feeding; /* the state feed() runs in, for the completer */
static int completer = LUA_NOREF; /* registry: the Lua completion function */

/* Characters that end a word for Tab: Lua's operators and brackets; '.'
 * and ':' stay inside it (coil.sl, t:na). */
static const char word_breaks[] = " \t\n\"'`@$><=;|&{}()+-*/%^#~,[]";

/* Pushes the completer's list for the word before the cursor (from base),
 * or returns 0 with nothing pushed. */
static int candidates(lua_State *L, size_t *base) {
  const char *line = rl_line_buffer;
  size_t point = (size_t)rl_point, start = point;
  if (!L || completer == LUA_NOREF || !line) return 0;
  while (start > 0 && !strchr(word_breaks, line[start - 1])) start--;
  lua_rawgeti(L, LUA_REGISTRYINDEX, completer);
  lua_pushlstring(L, line + start, point - start);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  *base = point - start;
  return 1;
}

/* Tab: extends the word before the cursor as far as every candidate agrees;
 * when that adds nothing and there are several, lists them above the line.
 * Bound with rl_add_defun, so that no beep and no file names come with it. */
static int complete_key(int count, int key) {
  lua_State *L = feeding;
  size_t wordlen = 0, common = 0, i, n;
  const char *first;
  (void)count;
  (void)key;
  if (!candidates(L, &wordlen)) return 0;
  n = (size_t)lua_rawlen(L, -1);
  if (n > 0) {
    lua_rawgeti(L, -1, 1);
    first = lua_tostring(L, -1);
    common = first ? strlen(first) : 0;
    for (i = 2; i <= n && first; i++) {
      const char *m;
      size_t k = 0;
      lua_rawgeti(L, -2, (lua_Integer)i);
      m = lua_tostring(L, -1);
      while (m && k < common && first[k] == m[k]) k++;
      common = m ? k : 0;
      lua_pop(L, 1);
    }
    if (first && common > wordlen) {
      char *more = strndup(first + wordlen, common - wordlen);
      if (more) rl_insert_text(more);
      free(more);
      fputs("\r", stdout); /* the line is drawn again from its start */
    } else if (n > 1) {
      fputs("\n", stdout);
      for (i = 1; i <= n; i++) {
        const char *m;
        lua_rawgeti(L, -2, (lua_Integer)i);
        m = lua_tostring(L, -1);
        fprintf(stdout, "%s%s", m ? m : "", i < n ? "  " : "\r\n");
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
    rl_forced_update_display();
    fflush(stdout);
  }
  lua_pop(L, 1);
  return 0;
}

static void on_line(char *line) {
  free(done_line);
  done_line = line;
  got_line = 1;
}

static void init(lua_State *L) {
  if (initialized) return;
  rl_catch_signals = 0;
  rl_catch_sigwinch = 0;
  rl_readline_name = "coil";
  if (rl_initialize() != 0)
    luaL_error(L, "coil: console: cannot start line editing");
  using_history();
  rl_add_defun("coil-complete", complete_key, '\t');
  initialized = 1;
}

/* start(prompt): shows the prompt and starts editing a line. */
static int l_start(lua_State *L) {
  const char *prompt = luaL_checkstring(L, 1);
  char *copy;
  init(L);
  copy = strdup(prompt);
  if (!copy) return luaL_error(L, "coil: console: out of memory");
  free(prompt_now);
  prompt_now = copy;
  got_line = 0;
  rl_callback_handler_install(prompt_now, on_line);
  return 0;
}

/* feed() -> line | false | nil: reads the key that is waiting (the fd is
 * readable). A finished line is returned (editing stops until the next
 * start), false is the end of input (Ctrl+D on an empty line), nil means the
 * line is not finished yet. */
static int l_feed(lua_State *L) {
  if (!initialized) return 0;
  feeding = L;
  rl_callback_read_char();
  feeding = NULL;
  if (!got_line) return 0;
  got_line = 0;
  if (!done_line) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushstring(L, done_line);
  free(done_line);
  done_line = NULL;
  return 1;
}

/* stop(): stops editing and gives the terminal back its normal mode. */
static int l_stop(lua_State *L) {
  (void)L;
  if (initialized) rl_callback_handler_remove();
  return 0;
}

/* hide(): clears the line being edited from the screen, so that output can
 * go above it; show() draws the prompt and the line again. */
static int l_hide(lua_State *L) {
  int rows = 0, cols = 0, up = 0;
  (void)L;
  fflush(stdout);
  if (initialized && prompt_now) {
    /* a line longer than the screen is wider takes several rows */
    rl_get_screen_size(&rows, &cols);
    if (cols > 0)
      up = (int)((strlen(prompt_now) + (size_t)rl_point) / (size_t)cols);
  }
  if (up > 0) printf("\033[%dA", up);
  fputs("\r\033[J", stdout);
  fflush(stdout);
  return 0;
}

static int l_show(lua_State *L) {
  (void)L;
  fflush(stdout);
  fflush(stderr);
  if (initialized) rl_forced_update_display();
  fflush(stdout);
  return 0;
}

/* set_completer(fn): fn(word) -> list of completions, for Tab. */
static int l_set_completer(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_unref(L, LUA_REGISTRYINDEX, completer);
  lua_settop(L, 1);
  completer = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* resize(): the terminal changed size (SIGWINCH). */
static int l_resize(lua_State *L) {
  (void)L;
  if (initialized) rl_resize_terminal();
  return 0;
}

static int l_history_add(lua_State *L) {
  const char *line = luaL_checkstring(L, 1);
  if (initialized && *line) add_history(line);
  return 0;
}

/* history_load(path) / history_save(path, max) -> true, or nil, message */
static int l_history_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int r;
  init(L);
  r = read_history(path);
  if (r != 0) {
    luaL_pushfail(L);
    lua_pushstring(L, strerror(r < 0 ? -r : r));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_history_save(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int max = (int)luaL_optinteger(L, 2, 1000), r;
  init(L);
  stifle_history(max);
  r = write_history(path);
  if (r != 0) {
    luaL_pushfail(L);
    lua_pushstring(L, strerror(r < 0 ? -r : r));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg edit_funcs[] = {{"start", l_start},
                                      {"feed", l_feed},
                                      {"stop", l_stop},
                                      {"hide", l_hide},
                                      {"show", l_show},
                                      {"resize", l_resize},
                                      {"set_completer", l_set_completer},
                                      {"history_add", l_history_add},
                                      {"history_load", l_history_load},
                                      {"history_save", l_history_save},
                                      {"stdin_blocking", l_stdin_blocking},
                                      {NULL, NULL}};
#define LINE_EDITING 1

#else

static const luaL_Reg edit_funcs[] = {{"stdin_blocking", l_stdin_blocking},
                                      {NULL, NULL}};
#define LINE_EDITING 0

#endif

static int open_edit(lua_State *L) {
  if (stdin_flags < 0) stdin_flags = fcntl(0, F_GETFL);
  luaL_newlib(L, edit_funcs);
  lua_pushboolean(L, LINE_EDITING);
  lua_setfield(L, -2, "line_editing");
  return 1;
}

void console_edit_preload(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, open_edit);
  lua_setfield(L, -2, "coil.console_edit");
  lua_pop(L, 1);
}
