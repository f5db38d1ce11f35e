/* launch: runs one benchmark program for bench/run and reports on it.
 *
 *   launch FD PROGRAM [ARGS...]
 *
 * Forks and execs PROGRAM, writes "pid P\n" to file descriptor FD at once
 * and, once P has exited, "done STATUS MAXRSS_KIB START_NS END_NS\n": the
 * wait4() status and ru_maxrss, and CLOCK_MONOTONIC just before the fork and
 * just after wait4() returned. It exists because Linux carries the forking
 * process's resident size into the child's ru_maxrss across exec: forked
 * from the Python harness, every program would start at the harness's RSS;
 * forked from this small process, it starts at about a megabyte. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: launch FD PROGRAM [ARGS...]\n");
    return 2;
  }
  int fd = atoi(argv[1]);
  FILE *report = fdopen(fd, "w");
  if (!report || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
    perror("launch: report fd");
    return 2;
  }
  long long start = now_ns();
  pid_t pid = fork();
  if (pid < 0) {
    perror("launch: fork");
    return 2;
  }
  if (pid == 0) {
    execvp(argv[2], argv + 2);
    perror(argv[2]);
    _exit(127);
  }
  fprintf(report, "pid %ld\n", (long)pid);
  fflush(report);
  int status;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0) {
    if (errno != EINTR) {
      perror("launch: wait4");
      return 2;
    }
  }
  long long end = now_ns();
  long long cpu_us = (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
                     ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
  fprintf(report, "done %d %ld %lld %lld %lld\n", status, ru.ru_maxrss, start, end, cpu_us);
  return fclose(report) != 0;
}
