/*
 * A tiny test runner in libuv's manner (test/runner.c): every case runs in a
 * process of its own with a time limit, so a crash or a hang fails that case
 * only. `./embed_test` runs all; `./embed_test name` runs one in-process.
 * Prints "N passed, N failed" last.
 */
#ifndef COIL_TEST_RUNNER_H
#define COIL_TEST_RUNNER_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
  const char *name;
  void (*fn)(void);
} test_case;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      fflush(stderr);                                                          \
      _exit(1);                                                                \
    }                                                                          \
  } while (0)

#define CHECK_EQ(a, b)                                                         \
  do {                                                                         \
    long long va_ = (long long)(a), vb_ = (long long)(b);                      \
    if (va_ != vb_) {                                                          \
      fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__,      \
              __LINE__, #a, #b, va_, vb_);                                     \
      fflush(stderr);                                                          \
      _exit(1);                                                                \
    }                                                                          \
  } while (0)

static int run_tests(const test_case *cases, int argc, char **argv,
                     unsigned limit) {
  int passed = 0, failed = 0, i;
  if (argc > 1) {
    for (i = 0; cases[i].name; i++)
      if (strcmp(cases[i].name, argv[1]) == 0) {
        cases[i].fn();
        return 0;
      }
    fprintf(stderr, "no test named %s\n", argv[1]);
    return 2;
  }
  for (i = 0; cases[i].name; i++) {
    int status;
    pid_t pid;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
      alarm(limit);
      cases[i].fn();
      fflush(stdout);
      _exit(0);
    }
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      printf("ok %s\n", cases[i].name);
      passed++;
    } else {
      if (WIFSIGNALED(status))
        printf("FAILED %s (killed by signal %d%s)\n", cases[i].name,
               WTERMSIG(status),
               WTERMSIG(status) == SIGALRM ? ": time limit" : "");
      else printf("FAILED %s (exit %d)\n", cases[i].name, WEXITSTATUS(status));
      failed++;
    }
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

#endif
