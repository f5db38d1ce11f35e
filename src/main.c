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

static const char usage_line[] =
    "usage: coil [options] [script [args...]]";

static void usage(FILE *out) {
  fprintf(out,
          "%s\n"
          "  -e chunk      run chunk (in the main task, before the script)\n"
          "  -i            enter the interactive console after the script\n"
          "  -l name       require name, bind it to global name (g=name too)\n"
          "  -v            print version (coil, Lua, libuv, luv) and exit\n"
          "  -             read the script from standard input\n"
          "  --            stop handling options\n"
          "  --grace S     seconds that cancelled tasks get to finish "
          "cleanup (default 5)\n"
          "  --quiet       no shutdown messages on stderr\n"
          "  -h, --help    show this help\n",
          usage_line);
}

static int bad_usage(const char *fmt, const char *what) {
  fputs("coil: ", stderr);
  fprintf(stderr, fmt, what);
  fprintf(stderr, " (%s)\n", usage_line);
  return 1;
}

int main(int argc, char **argv) {
  coil_config cfg;
  coil_runtime *rt;
  lua_State *L;
  int script = 0, i, r, status, signo, show_version = 0, nactions = 0;
  int has_e = 0, interactive = 0;

  coil_config_init(&cfg);
  cfg.signals = 1;

  /* a first pass for the options the runtime needs before it exists */
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || strcmp(a, "-") == 0) {
      script = i;
      break;
    }
    if (strcmp(a, "--") == 0) {
      if (i + 1 < argc) script = i + 1;
      break;
    }
    if (strcmp(a, "-v") == 0) {
      show_version = 1;
    } else if (strcmp(a, "-i") == 0) {
      interactive = 1; /* implies -v, as in lua.c */
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--quiet") == 0) {
      cfg.quiet = 1;
    } else if (strcmp(a, "--grace") == 0) {
      char *end;
      double g;
      if (i + 1 >= argc) return bad_usage("'%s' needs a number of seconds", a);
      g = strtod(argv[++i], &end);
      if (*argv[i] == '\0' || *end != '\0' || !(g >= 0) || g > 1e9)
        return bad_usage("--grace expects a number of seconds, got '%s'",
                         argv[i]);
      cfg.grace = g;
    } else if (strcmp(a, "-e") == 0 || strcmp(a, "-l") == 0) {
      if (i + 1 >= argc) return bad_usage("'%s' needs an argument", a);
      i++;
      nactions++;
      has_e |= a[1] == 'e';
    } else if ((a[1] == 'e' || a[1] == 'l') && a[2] != '\0') {
      nactions++; /* -echunk, -lname */
      has_e |= a[1] == 'e';
    } else {
      return bad_usage("unrecognized option '%s'", a);
    }
  }

  /* no script on a terminal: the console (docs/console.md) */
  if (!script && !has_e && !show_version && isatty(STDIN_FILENO))
    interactive = 1;
  if (show_version || interactive) {
    puts(coil_version_string());
    if (!script && !nactions && !interactive) return 0;
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

  /* the main task: coil.cli(argv, script, actions), or with -i
   * coil.console.main(coil.cli, argv, script, actions) */
  if (interactive) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "coil.console");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "main");
    lua_remove(L, -2);
  }
  lua_getglobal(L, "require");
  lua_pushliteral(L, "coil.cli");
  lua_call(L, 1, 1);
  lua_createtable(L, argc, 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  if (script) lua_pushinteger(L, script);
  else if (!has_e && !show_version && !interactive)
    lua_pushinteger(L, argc); /* stdin */
  else lua_pushnil(L);
  if (!script && !has_e && !show_version && !interactive) {
    /* no script and stdin is not a terminal: the script is stdin */
    lua_pushliteral(L, "-");
    lua_rawseti(L, -3, argc);
  }
  lua_createtable(L, nactions, 0);
  nactions = 0;
  for (i = 1; i < argc && (!script || i < script); i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) break;
    if (strcmp(a, "--grace") == 0) {
      i++;
      continue;
    }
    if (a[0] == '-' && (a[1] == 'e' || a[1] == 'l')) {
      const char *value = a[2] ? a + 2 : argv[++i];
      lua_createtable(L, 2, 0);
      lua_pushlstring(L, a + 1, 1);
      lua_rawseti(L, -2, 1);
      lua_pushstring(L, value);
      lua_rawseti(L, -2, 2);
      lua_rawseti(L, -2, ++nactions);
    }
  }
  r = coil_spawn_main(rt, interactive ? 4 : 3);
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
  return status;
}
