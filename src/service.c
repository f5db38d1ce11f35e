/*
 * Running under a service manager (SPEC §9): the sd_notify datagram protocol
 * written directly (no libsystemd), the watchdog ping from the loop, socket
 * activation's LISTEN_FDS, and the few system calls the --workers supervisor
 * needs (its own notify socket, ending by a signal).
 *
 * Everything here is a no-op without NOTIFY_SOCKET / WATCHDOG_USEC /
 * LISTEN_FDS, and nothing here runs on a path that does not use it: the
 * watchdog timer exists only when systemd asked for it.
 */
/* struct ucred and SCM_CREDENTIALS are Linux (GNU) extensions */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coil_internal.h"

#define LISTEN_FDS_START 3

/* Fills addr from NOTIFY_SOCKET ("/path" or "@abstract"). Returns the
 * address length, 0 when the variable is unset, -1 when it is unusable. */
static socklen_t notify_address(struct sockaddr_un *addr) {
  const char *path = getenv("NOTIFY_SOCKET");
  size_t len;
  if (!path || !*path) return 0;
  len = strlen(path);
  if ((path[0] != '/' && path[0] != '@') || len > sizeof addr->sun_path)
    return (socklen_t)-1;
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  memcpy(addr->sun_path, path, len);
  if (path[0] == '@') {
    /* the abstract namespace: a leading NUL, no terminator counted */
    addr->sun_path[0] = '\0';
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
  }
  if (len == sizeof addr->sun_path) return (socklen_t)-1;
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

/* Sends one datagram to NOTIFY_SOCKET. Returns 1 when sent, 0 when there is
 * no NOTIFY_SOCKET, or a negative errno. Never blocks. */
static int notify_send(const char *text, size_t len) {
  struct sockaddr_un addr;
  socklen_t alen = notify_address(&addr);
  int fd, r = 1;
  if (alen == 0) return 0;
  if (alen == (socklen_t)-1) return -EINVAL;
  fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (sendto(fd, text, len, MSG_NOSIGNAL | MSG_DONTWAIT,
             (struct sockaddr *)&addr, alen) < 0)
    r = -errno;
  close(fd);
  return r;
}

/* Reads an unsigned decimal environment variable; 0 when unset or bad. */
static uint64_t env_u64(const char *name) {
  const char *s = getenv(name);
  char *end;
  unsigned long long v;
  if (!s || !*s) return 0;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno || *end) return 0;
  return (uint64_t)v;
}

/* Appends EXTEND_TIMEOUT_USEC while a shutdown runs and its grace is longer
 * than the watchdog period: what is left of the grace, plus one period. */
static size_t extend_line(coil_runtime *rt, char *buf, size_t size) {
  uint64_t grace_us, spent_us, left_us;
  if (rt->run.phase < PHASE_DRAIN || rt->run.phase >= PHASE_CLOSED) return 0;
  if (rt->watchdog_usec == 0 || rt->grace * 1e6 <= (double)rt->watchdog_usec)
    return 0;
  grace_us = (uint64_t)(rt->grace * 1e6);
  uv_update_time(rt->loop);
  spent_us = (uv_now(rt->loop) - rt->run.shutdown_started) * 1000;
  left_us = spent_us < grace_us ? grace_us - spent_us : 0;
  return (size_t)snprintf(buf, size, "\nEXTEND_TIMEOUT_USEC=%llu",
                          (unsigned long long)(left_us + rt->watchdog_usec));
}

/* The watchdog ping: runs only while the loop turns, so a stuck loop stops
 * it and systemd restarts the service. */
static void on_watchdog(uv_timer_t *timer) {
  coil_runtime *rt = (coil_runtime *)timer->data;
  char buf[96] = "WATCHDOG=1";
  size_t len = strlen(buf);
  len += extend_line(rt, buf + len, sizeof buf - len);
  notify_send(buf, len);
}

/* Starts the watchdog ping for a process that owns its loop, when systemd
 * asked for one (WATCHDOG_USEC) for this very process (WATCHDOG_PID unset,
 * or ours). The timer is coil's own and unreferenced: it never keeps the
 * process alive and no script sees it. */
static void watchdog_start(coil_runtime *rt) {
  uint64_t usec = env_u64("WATCHDOG_USEC"), pid = env_u64("WATCHDOG_PID");
  uint64_t every;
  const char *pidvar = getenv("WATCHDOG_PID");
  if (usec == 0 || !getenv("NOTIFY_SOCKET")) return;
  if (pidvar && *pidvar && pid != (uint64_t)getpid()) return;
  rt->watchdog_usec = usec;
  every = usec / 2000;
  if (every == 0) every = 1;
  uv_timer_init(rt->loop, &rt->watchdog);
  rt->watchdog.data = rt;
  uv_timer_start(&rt->watchdog, on_watchdog, 0, every);
  uv_unref((uv_handle_t *)&rt->watchdog);
  rt->watchdog_started = 1;
}

/* Pushes nil and "ENAME: message" for a negative errno, spelt as luv
 * spells its failures. */
static int push_errno(lua_State *L, int err) {
  int code = uv_translate_sys_error(-err);
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(code), uv_strerror(code));
  return 2;
}

/* core.notify(text) -> true, or false without NOTIFY_SOCKET, or nil, err:
 * one datagram, as sd_notify sends it. */
static int l_notify(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  int r = notify_send(text, len);
  if (r < 0) return push_errno(L, r);
  lua_pushboolean(L, r);
  return 1;
}

/* core.notify_stopping() -> as _notify: STOPPING=1, with an
 * EXTEND_TIMEOUT_USEC when the grace outlasts the watchdog. */
static int l_notify_stopping(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  char buf[96] = "STOPPING=1";
  size_t len = strlen(buf);
  int r;
  len += extend_line(rt, buf + len, sizeof buf - len);
  r = notify_send(buf, len);
  if (r < 0) return push_errno(L, r);
  lua_pushboolean(L, r);
  return 1;
}

/* core.listen_fds() -> fds, names: socket activation's descriptors, when
 * LISTEN_PID is this process. The variables are removed from the
 * environment and the descriptors made close-on-exec, so that children
 * inherit neither (sd_listen_fds with unset_environment). */
static int l_listen_fds(lua_State *L) {
  uint64_t pid = env_u64("LISTEN_PID"), n = env_u64("LISTEN_FDS");
  const char *names = getenv("LISTEN_FDNAMES");
  uint64_t i;
  lua_newtable(L); /* fds */
  lua_newtable(L); /* names */
  if (pid == (uint64_t)getpid() && n > 0 && n < 4096) {
    const char *p = names;
    for (i = 0; i < n; i++) {
      int fd = (int)(LISTEN_FDS_START + i);
      int flags = fcntl(fd, F_GETFD);
      const char *end;
      if (flags < 0) break; /* not open: trust nothing after it */
      fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
      lua_pushinteger(L, fd);
      lua_rawseti(L, -3, (lua_Integer)(i + 1));
      /* names are ':'-separated; a missing one is "unknown", as systemd
       * itself names them */
      if (p) {
        end = strchr(p, ':');
        if (!end) end = p + strlen(p);
        if (end > p) lua_pushlstring(L, p, (size_t)(end - p));
        else lua_pushliteral(L, "unknown");
        p = *end ? end + 1 : NULL;
      } else {
        lua_pushliteral(L, "unknown");
      }
      lua_rawseti(L, -2, (lua_Integer)(i + 1));
    }
  }
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  return 2;
}

/* core.notify_listen() -> fd, "@name": a datagram socket of the
 * supervisor's own, in the abstract namespace under a name the kernel picks
 * (so concurrent supervisors never collide), with the sender's credentials
 * on every message. Non-blocking, close-on-exec. */
static int l_notify_listen(lua_State *L) {
  struct sockaddr_un addr;
  socklen_t alen = sizeof(sa_family_t);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int one = 1;
  if (fd < 0) return push_errno(L, -errno);
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  /* binding only the family autobinds an abstract name */
  if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0 ||
      bind(fd, (struct sockaddr *)&addr, alen) < 0) {
    int err = -errno;
    close(fd);
    return push_errno(L, err);
  }
  alen = sizeof addr;
  if (getsockname(fd, (struct sockaddr *)&addr, &alen) < 0) {
    int err = -errno;
    close(fd);
    return push_errno(L, err);
  }
  lua_pushinteger(L, fd);
  lua_pushliteral(L, "@");
  lua_pushlstring(L, addr.sun_path + 1,
                  alen - offsetof(struct sockaddr_un, sun_path) - 1);
  lua_concat(L, 2);
  return 2;
}

/* core.notify_recv(fd) -> text, pid; or nil when nothing is waiting. */
static int l_notify_recv(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  char buf[4096];
  union {
    struct cmsghdr align;
    char space[CMSG_SPACE(sizeof(struct ucred))];
  } control;
  struct iovec iov = {buf, sizeof buf};
  struct msghdr msg;
  struct cmsghdr *c;
  ssize_t n;
  pid_t pid = 0;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.space;
  msg.msg_controllen = sizeof control.space;
  do n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      lua_pushnil(L);
      return 1;
    }
    return push_errno(L, -errno);
  }
  for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
      struct ucred cred;
      memcpy(&cred, CMSG_DATA(c), sizeof cred);
      pid = cred.pid;
    } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      /* nobody asked for descriptors: close what was sent */
      size_t k, nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (k = 0; k < nfd; k++) {
        int sent;
        memcpy(&sent, CMSG_DATA(c) + k * sizeof(int), sizeof sent);
        close(sent);
      }
    }
  }
  lua_pushlstring(L, buf, (size_t)n);
  lua_pushinteger(L, pid);
  return 2;
}

/* core.close_fd(fd) */
static int l_close_fd(lua_State *L) {
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

/* core.end_by_signal(name): unless an exit status was already asked for,
 * the process will end by this signal once the run is over (§2), as after
 * the §3 sequence for it. For the supervisor, which handles the interrupt
 * itself. */
static int l_end_by_signal(lua_State *L) {
  coil_runtime *rt = RT_UP(L);
  int signo = coil__signal_number(luaL_checkstring(L, 1));
  luaL_argcheck(L, signo != 0, 1, "unknown signal");
  if (!rt->run.exit_set) {
    rt->run.exit_set = 1;
    rt->run.exit_status = 128 + signo;
    rt->run.exit_signal = signo;
  }
  return 0;
}

/* core.reap(pid) -> bool: collects pid if it is a zombie child. For the
 * supervisor as PID 1, which adopts orphans that libuv knows nothing of. */
static int l_reap(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int status;
  lua_pushboolean(L, waitpid(pid, &status, WNOHANG) == pid);
  return 1;
}

static const luaL_Reg service_funcs[] = {{"reap", l_reap},
                                         {"notify", l_notify},
                                         {"notify_stopping", l_notify_stopping},
                                         {"listen_fds", l_listen_fds},
                                         {"notify_listen", l_notify_listen},
                                         {"notify_recv", l_notify_recv},
                                         {"close_fd", l_close_fd},
                                         {"end_by_signal", l_end_by_signal},
                                         {NULL, NULL}};

/* Adds the functions above to the coil table on top of L; starts the
 * watchdog for a process that owns its loop and its signals (the CLI). */
void coil__service_open(lua_State *L, coil_runtime *rt) {
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, service_funcs, 1);
  if (rt->owns_loop && rt->signals && !rt->module) watchdog_start(rt);
}
