/*
 * Socket options luv 1.44 cannot set, for coil.net: SO_REUSEPORT before a
 * bind (several processes serving one port, §9), and a look at an inherited
 * fd (socket activation) to know what kind of server it is.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "coil_internal.h"

static int push_errno(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(uv_translate_sys_error(err)),
                  strerror(err));
  return 2;
}

/* coil._reuseport(fd) -> true, or nil, err: sets SO_REUSEPORT on a socket
 * not yet bound. */
static int l_reuseport(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1), on = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0)
    return push_errno(L, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* coil._socket_info(fd) -> family ("inet", "inet6", "unix", "other"), type
 * ("stream", "dgram", "other"), listening (bool); or nil, err when fd is not
 * a socket. */
static int l_socket_info(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1), domain = 0, type = 0, listening = 0;
  socklen_t len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0)
    return push_errno(L, errno);
  len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    return push_errno(L, errno);
  len = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0)
    listening = 0;
  lua_pushstring(L, domain == AF_INET    ? "inet"
                    : domain == AF_INET6 ? "inet6"
                    : domain == AF_UNIX  ? "unix"
                                         : "other");
  lua_pushstring(L, type == SOCK_STREAM  ? "stream"
                    : type == SOCK_DGRAM ? "dgram"
                                         : "other");
  lua_pushboolean(L, listening);
  return 3;
}

/* Adds the functions to the module table on top of L. */
void coil__net_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"_reuseport", l_reuseport},
                                 {"_socket_info", l_socket_info},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
