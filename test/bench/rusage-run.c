/* Runs a command and reports, for that child alone, the wall time from fork to reaping and
 * its wait4() resource usage. Usage: rusage-run OUTFILE COMMAND [ARGS...]
 * OUTFILE gets one line: "<wall_ns> <user_us> <sys_us> <maxrss_kib> <status>", where
 * status is the exit code, or 128+signal. The child inherits stdin/stdout/stderr. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: rusage-run OUTFILE COMMAND [ARGS...]\n");
    return 2;
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pid_t pid = fork();
  if (pid < 0) {
    perror("rusage-run: fork");
    return 2;
  }
  if (pid == 0) {
    execvp(argv[2], argv + 2);
    perror("rusage-run: exec");
    _exit(127);
  }
  int status = 0;
  struct rusage ru;
  if (wait4(pid, &status, 0, &ru) < 0) {
    perror("rusage-run: wait4");
    return 2;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long long wall = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
  long long user = (long long)ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec;
  long long sys = (long long)ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec;
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  FILE *out = fopen(argv[1], "w");
  if (!out) {
    perror("rusage-run: output file");
    return 2;
  }
  fprintf(out, "%lld %lld %lld %ld %d\n", wall, user, sys, ru.ru_maxrss, code);
  return fclose(out) == 0 ? 0 : 2;
}
