/*
 * Transparent coroutines (src/coroutine.c): awaits inside user coroutines.
 */
#ifndef COIL_COROUTINE_H
#define COIL_COROUTINE_H

#include "coil_internal.h"

/* Replaces coroutine.resume/wrap/yield/running/isyieldable/close in L and
 * coil._traceback (the coil table is on top of L's stack). */
COIL_INTERNAL void coil__coroutine_open(lua_State *L, coil_runtime *rt);

/* Whether L, a coroutine inside the running task, was resumed by coil's
 * resume from a place an await can pass through (task.c's await check). */
COIL_INTERNAL int coil__inner_awaits(lua_State *L);

#endif
