/* Line editing for the console (the coil command only, never libcoil). */
#ifndef COIL_CONSOLE_EDIT_H
#define COIL_CONSOLE_EDIT_H

#include <lua.h>

/* Registers package.preload["coil.console_edit"] in L when the command was
 * built with libedit; does nothing otherwise (the console then reads plain
 * lines). */
void console_edit_preload(lua_State *L);

#endif
