/*
 * Socket calls luv 1.44 does not have, for coil.net: SO_REUSEPORT before a
 * bind (several processes serving one port, §9), a look at an inherited fd
 * (socket activation), listen and accept4 (servers accept by themselves,
 * TCP_NODELAY set on what they accept),
 * and O_NONBLOCK cleared again on a descriptor (coil.io's stdin).
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coil_internal.h"

static int push_errno(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(uv_translate_sys_error(err)),
                  strerror(err));
  return 2;
}

/* core.reuseport(fd) -> true, or nil, err: sets SO_REUSEPORT on a socket
 * not yet bound. */
static int l_reuseport(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1), on = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0)
    return push_errno(L, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.socket_info(fd) -> family ("inet", "inet6", "unix", "other"), type
 * ("stream", "dgram", "other"), listening (bool), nodelay (bool: TCP_NODELAY
 * is set); or nil, err when fd is not a socket. */
static int l_socket_info(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1), domain = 0, type = 0, listening = 0,
      nodelay = 0;
  socklen_t len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0)
    return push_errno(L, errno);
  len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    return push_errno(L, errno);
  len = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0)
    listening = 0;
  len = sizeof nodelay;
  if ((domain != AF_INET && domain != AF_INET6) || type != SOCK_STREAM ||
      getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) != 0)
    nodelay = 0;
  lua_pushstring(L, domain == AF_INET    ? "inet"
                    : domain == AF_INET6 ? "inet6"
                    : domain == AF_UNIX  ? "unix"
                                         : "other");
  lua_pushstring(L, type == SOCK_STREAM  ? "stream"
                    : type == SOCK_DGRAM ? "dgram"
                                         : "other");
  lua_pushboolean(L, listening);
  lua_pushboolean(L, nodelay);
  return 4;
}

/* core.listen(fd, backlog) -> true, or nil, err: listen(2) on a bound
 * socket (coil.net accepts by itself, see core.accept). */
static int l_listen(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int backlog = (int)luaL_checkinteger(L, 2);
  if (listen(fd, backlog) != 0) return push_errno(L, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.accept(fd [, nodelay]) -> the new connection's fd (non-blocking,
 * close-on-exec; with nodelay, TCP_NODELAY set: a TCP server's small answers
 * go out at once instead of waiting for the peer's delayed ACK), or nil, err
 * ("EAGAIN: …" when none is waiting, "EMFILE: …" when the process is out of
 * descriptors: the connection then stays queued in the kernel, which is what
 * lets a server pause instead of dropping it). */
static int l_accept(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1), nodelay = lua_toboolean(L, 2), conn;
  do conn = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (conn < 0 && errno == EINTR);
  if (conn < 0) return push_errno(L, errno);
  /* best effort, as Node and asyncio: a connection without it still works */
  if (nodelay)
    (void)setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay);
  lua_pushinteger(L, conn);
  return 1;
}

/* core.fd_blocking(fd): clears O_NONBLOCK (coil.io gives standard input
 * back blocking: a pipe's other readers share the flag). */
static int l_fd_blocking(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0 && (flags & O_NONBLOCK))
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return 0;
}

/* core.close_fd(fd): closes a descriptor no handle took. */
static int l_close_fd(lua_State *L) {
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

/* Adds the functions to the module table on top of L. */
void coil__net_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"reuseport", l_reuseport},
                                 {"socket_info", l_socket_info},
                                 {"listen", l_listen},
                                 {"accept", l_accept},
                                 {"close_fd", l_close_fd},
                                 {"fd_blocking", l_fd_blocking},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
