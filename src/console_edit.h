/* Line editing for the console (the coil command only, never libcoil). */
#ifndef COIL_CONSOLE_EDIT_H
#define COIL_CONSOLE_EDIT_H

#include <lua.h>

/* Registers package.preload["coil.console_edit"] in L: line editing when the
 * command was built with libedit (line_editing = true), and the fd 0 mode
 * switch the console needs either way. */
void console_edit_preload(lua_State *L);

#endif
