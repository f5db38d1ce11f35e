/*
 * file:seek for coil.fs: luv 1.44 has no lseek. A seek on a regular file
 * never blocks, so it runs on the loop's thread.
 */
#include <errno.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "coil_internal.h"

/* core.lseek(fd, offset, whence) -> the new position, or nil, err.
 * whence: "set", "cur" or "end" (checked by the caller). */
static int l_lseek(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  off_t offset = (off_t)luaL_checkinteger(L, 2);
  const char *whence = luaL_checkstring(L, 3);
  int w = whence[0] == 's' ? SEEK_SET : whence[0] == 'e' ? SEEK_END : SEEK_CUR;
  off_t pos = lseek(fd, offset, w);
  if (pos < 0) {
    int err = errno;
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", uv_err_name(uv_translate_sys_error(err)),
                    strerror(err));
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)pos);
  return 1;
}

/* Adds the function to the module table on top of L. */
void coil__fs_open(lua_State *L) {
  lua_pushcfunction(L, l_lseek);
  lua_setfield(L, -2, "lseek");
}
