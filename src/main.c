/*
 * coil: the command-line host. Only the command line lives here; it uses
 * nothing but include/coil.h (and Lua's API on coil_lua), exactly as any
 * other program embedding coil would.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "coil.h"
#include "console_edit.h"

static const char usage_line[] = "usage: coil [options] [script [args...]]";

static void usage(FILE *out) {
  fprintf(out,
          "%s\n"
          "  -e chunk      run chunk (in the main task, before the script)\n"
          "  -i            enter the interactive console after the script\n"
          "  -l name       require name, bind it to global name\n"
          "  -l g=name     require name, bind it to global g\n"
          "  -v            print version (coil, Lua, libuv, luv) and exit\n"
          "  -E            ignore LUA_INIT and the LUA_PATH/LUA_CPATH "
          "variables\n"
          "  -W            turn warnings on\n"
          "  -             read the script from standard input\n"
          "  --            stop handling options\n"
          "  --grace S     seconds that cancelled tasks get to finish "
          "cleanup (default 5)\n"
          "  --quiet       no shutdown messages on stderr\n"
          "  --workers N   run N copies of the script as worker processes\n"
          "  --help        print this usage and exit\n",
          usage_line);
}

static int bad_usage(const char *fmt, const char *what) {
  fputs("coil: ", stderr);
  fprintf(stderr, fmt, what);
  fprintf(stderr, " (%s)\n", usage_line);
  return 1;
}

enum { HAS_E = 1, HAS_V = 2, HAS_LOWER_E = 4, HAS_HELP = 8, HAS_I = 16 };

/* What the command line asks for, found as lua.c's collectargs finds it. */
typedef struct {
  int flags;
  int script;   /* index of the script in argv, or argc when none */
  int nactions; /* -e, -l and -W, run in order by coil.cli */
  int workers;  /* index of --workers' value in argv, or 0 */
} cli_args;

/* One pass over the options, in lua.c's order and with its rules (an option
 * letter with extra characters is an error, -e/-l take the next argument
 * unless it is another option), plus coil's own long options. Returns 0, or
 * 1 after printing a bad-usage line. */
static int collect_args(int argc, char **argv, coil_config *cfg,
                        cli_args *out) {
  int i;
  out->flags = 0;
  out->nactions = 0;
  out->workers = 0;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    out->script = i;
    if (a[0] != '-') return 0; /* the script */
    switch (a[1]) {
    case '\0': /* "-": the script is stdin */
      return 0;
    case '-':
      if (a[2] == '\0') { /* "--" */
        out->script = i + 1;
        return 0;
      }
      if (strcmp(a, "--help") == 0) {
        out->flags |= HAS_HELP;
      } else if (strcmp(a, "--quiet") == 0) {
        cfg->quiet = 1;
      } else if (strcmp(a, "--grace") == 0) {
        char *end;
        double g;
        if (i + 1 >= argc)
          return bad_usage("'%s' needs a number of seconds", a);
        g = strtod(argv[++i], &end);
        if (*argv[i] == '\0' || *end != '\0' || !(g >= 0) || g > 1e9)
          return bad_usage("--grace expects a number of seconds, got '%s'",
                           argv[i]);
        cfg->grace = g;
      } else if (strcmp(a, "--workers") == 0) {
        if (i + 1 >= argc) return bad_usage("'%s' needs a number", a);
        out->workers = ++i; /* checked by coil.supervisor */
      } else {
        return bad_usage("unrecognized option '%s'", a);
      }
      break;
    case 'E':
    case 'W':
    case 'i':
    case 'v':
      if (a[2] != '\0') return bad_usage("unrecognized option '%s'", a);
      if (a[1] == 'E') out->flags |= HAS_E;
      else if (a[1] == 'i') out->flags |= HAS_I; /* implies -v, as in lua.c */
      else if (a[1] == 'v') out->flags |= HAS_V;
      else out->nactions++;
      break;
    case 'e':
    case 'l':
      if (a[2] == '\0') {
        if (i + 1 >= argc || argv[i + 1][0] == '-')
          return bad_usage("'%s' needs argument", a);
        i++;
      }
      if (a[1] == 'e') out->flags |= HAS_LOWER_E;
      out->nactions++;
      break;
    default:
      return bad_usage("unrecognized option '%s'", a);
    }
  }
  out->script = argc; /* no script */
  return 0;
}

/* Pushes the list of actions coil.cli runs in order: {"e", chunk},
 * {"l", "g=name"}, {"W"}. */
static void push_actions(lua_State *L, int argc, char **argv,
                         const cli_args *args) {
  int i, n = 0;
  lua_createtable(L, args->nactions, 0);
  for (i = 1; i < args->script && i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--grace") == 0 || strcmp(a, "--workers") == 0) {
      i++;
      continue;
    }
    if (a[0] != '-' || strchr("elW", a[1]) == NULL || a[1] == '\0') continue;
    lua_createtable(L, 2, 0);
    lua_pushlstring(L, a + 1, 1);
    lua_rawseti(L, -2, 1);
    if (a[1] != 'W') {
      lua_pushstring(L, a[2] ? a + 2 : argv[++i]);
      lua_rawseti(L, -2, 2);
    }
    lua_rawseti(L, -2, ++n);
  }
}

/* -E: package paths as if no LUA_PATH/LUA_CPATH variable were set, as the
 * stock interpreter's package library sets them under LUA_NOENV. */
static void ignore_env(lua_State *L) {
  lua_pushboolean(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    lua_pushliteral(L, LUA_PATH_DEFAULT);
    lua_setfield(L, -2, "path");
    lua_pushliteral(L, LUA_CPATH_DEFAULT);
    lua_setfield(L, -2, "cpath");
  }
  lua_pop(L, 1);
}

/* Lua's warnings as the stock interpreter shows them: off until "@on"
 * (-W, or warn "@on"), each one "Lua warning: ..." on stderr, pieces of one
 * warning joined; the same states as lauxlib's warnf for luaL_newstate. */
enum { WARN_OFF, WARN_ON, WARN_CONT };
static int warn_state = WARN_OFF;

/* A control message ("@on", "@off") is a whole warning starting with '@'. */
static int warn_control(const char *msg, int tocont) {
  if (tocont || *msg != '@') return 0;
  if (strcmp(msg, "@off") == 0) warn_state = WARN_OFF;
  else if (strcmp(msg, "@on") == 0) warn_state = WARN_ON;
  return 1;
}

static void warn_cli(void *ud, const char *msg, int tocont) {
  (void)ud;
  if (warn_state == WARN_OFF) {
    warn_control(msg, tocont);
    return;
  }
  if (warn_state == WARN_ON) {
    if (warn_control(msg, tocont)) return;
    fputs("Lua warning: ", stderr);
  }
  fputs(msg, stderr);
  if (tocont) {
    warn_state = WARN_CONT;
  } else {
    fputs("\n", stderr);
    fflush(stderr);
    warn_state = WARN_ON;
  }
}

int main(int argc, char **argv) {
  coil_config cfg;
  coil_runtime *rt;
  lua_State *L;
  cli_args args;
  int script, i, r, status, signo, show_version, has_e, interactive;

  coil_config_init(&cfg);
  cfg.signals = 1;

  if (collect_args(argc, argv, &cfg, &args) != 0) return 1;
  if (args.flags & HAS_HELP) {
    usage(stdout);
    return 0;
  }
  script = args.script < argc ? args.script : 0;
  show_version = (args.flags & HAS_V) != 0;
  has_e = (args.flags & HAS_LOWER_E) != 0;
  interactive = (args.flags & HAS_I) != 0;

  if (interactive && args.workers) {
    fprintf(stderr, "coil: --workers cannot be combined with -i\n");
    return 1;
  }
  /* no script on a terminal: the console (docs/console.md) */
  if (!script && !has_e && !show_version && !args.workers &&
      isatty(STDIN_FILENO))
    interactive = 1;
  if (show_version || interactive) {
    printf("%s; MIT licence, Copyright (c) 2026 the coil authors\n",
           coil_version_string());
    if (!script && !args.nactions && !interactive) return 0;
  }

  /* stdout is line-buffered, so that "ready" lines reach a pipe at once */
  setvbuf(stdout, NULL, _IOLBF, 0);

  r = coil_new(&rt, &cfg);
  if (r < 0) {
    fprintf(stderr, "coil: cannot start: %s\n", coil_strerror(r));
    return 1;
  }
  L = coil_lua(rt);
  console_edit_preload(L);
  lua_setwarnf(L, warn_cli, NULL);

  /* the main task: coil.cli(argv, script, actions, ignore_env), or with -i
   * coil.console.main(coil.cli, argv, script, actions, ignore_env) */
  if (interactive) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "coil.console");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "main");
    lua_remove(L, -2);
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, args.workers ? "coil.supervisor" : "coil.cli");
  lua_call(L, 1, 1);
  lua_createtable(L, argc, 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  if (script) lua_pushinteger(L, script);
  /* no script and stdin is not a terminal: stdin, as lua.c's dofile(NULL) */
  else if (!has_e && !show_version && !interactive) lua_pushinteger(L, 0);
  else lua_pushnil(L);
  push_actions(L, argc, argv, &args);
  lua_pushboolean(L, args.flags & HAS_E);
  if (args.flags & HAS_E) ignore_env(L);
  if (args.workers) lua_pushinteger(L, args.workers);
  r = coil_spawn_main(rt, 4 + (args.workers != 0) + interactive);
  if (r < 0) {
    fprintf(stderr, "coil: cannot start: %s\n", coil_strerror(r));
    coil_free(rt);
    return 1;
  }

  status = coil_run(rt);
  signo = coil_exit_signal(rt);
  coil_free(rt);
  fflush(stdout);
  fflush(stderr);
  if (signo) coil_die_by_signal(signo);
  /* exit() would join libuv's threadpool, and so wait for that request */
  if (coil_abandoned_requests() > 0) _exit(status);
  return status;
}
