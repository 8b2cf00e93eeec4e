/* SIGINT / SIGTERM during a run are taken by usi_stop_signals_begin's own
 * thread, never by a thread inside oneDNN: its JIT sgemm points rsp at a heap
 * workspace, and a signal frame pushed there corrupts the heap (an abort at a
 * later free, 1 `usi train` in 10-25 stopped with Ctrl-C). The masks are
 * checked directly; then sgemm runs under a stream of SIGTERMs, which with
 * the handler on the computing thread aborted within a few dozen signals. */
#include <dnnl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#include "train/stop.h"
#include "train/trainer.h"

static void *mask_of_new_thread(void *arg)
{
    pthread_sigmask(SIG_BLOCK, NULL, arg);
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* In a child: the first Ctrl-C requests a stop, the second ends it at once,
 * removing the temporary file of a save in progress and saying so. */
static void test_second_ctrl_c(void)
{
    int fd[2], err[2];
    char temp[] = "/tmp/usi-stop-XXXXXX";
    int tfd = mkstemp(temp);
    CHECK(tfd >= 0 && pipe(fd) == 0 && pipe(err) == 0, "pipes and a temporary file");
    close(tfd);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        close(err[0]);
        dup2(err[1], STDERR_FILENO);
        usi_stop_signals_begin();
        usi_stop_temp_begin(temp); /* as a checkpoint save does */
        if (write(fd[1], "r", 1) != 1) _exit(3);
        while (!usi_stop_requested) usleep(1000);
        if (write(fd[1], "1", 1) != 1) _exit(3);
        for (;;) pause();
    }
    close(fd[1]);
    char got = 0;
    CHECK(read(fd[0], &got, 1) == 1 && got == 'r', "the child is ready");
    kill(pid, SIGINT);
    CHECK(read(fd[0], &got, 1) == 1 && got == '1', "the first SIGINT requests a stop");
    kill(pid, SIGINT);
    int status = 0;
    pid_t done = 0;
    for (double t0 = now(); !done && now() - t0 < 5;) {
        done = waitpid(pid, &status, WNOHANG);
        if (!done) usleep(1000);
    }
    if (!done) { /* it ignored the second Ctrl-C */
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT, "the second SIGINT ends the process: status %d",
          status);
    close(fd[0]);
    close(err[1]);
    char said[512] = "";
    ssize_t n = read(err[0], said, sizeof said - 1);
    said[n > 0 ? n : 0] = 0;
    close(err[0]);
    CHECK(strstr(said, "usi: stopping after this step, with a checkpoint") != NULL,
          "the first Ctrl-C says at once what will happen: '%s'", said);
    CHECK(strstr(said, "stopped at once") != NULL, "the second Ctrl-C says what it did: '%s'", said);
    CHECK(access(temp, F_OK) != 0, "the save's temporary file %s is gone", temp);
    unlink(temp);
}

int main(void)
{
    test_second_ctrl_c();
    usi_stop_signals_begin();
    sigset_t here, child;
    pthread_sigmask(SIG_BLOCK, NULL, &here);
    CHECK(sigismember(&here, SIGINT) && sigismember(&here, SIGTERM), "blocked in the calling thread");
    pthread_t th;
    CHECK(pthread_create(&th, NULL, mask_of_new_thread, &child) == 0, "a thread");
    pthread_join(th, NULL);
    CHECK(sigismember(&child, SIGINT) && sigismember(&child, SIGTERM), "blocked in a thread started later");

    usi_stop_requested = 0;
    kill(getpid(), SIGTERM);
    for (double t0 = now(); !usi_stop_requested && now() - t0 < 5;) sched_yield();
    CHECK(usi_stop_requested, "a SIGTERM to the process requests a stop");

    /* A SIGTERM every 50 us while the JIT sgemm runs (1 thread, as in the
     * runs that corrupted the heap). */
    enum { M = 192, N = 160, K = 144 };
    float *a = calloc((size_t)M * K, sizeof(float)), *b = calloc((size_t)K * N, sizeof(float));
    float *c = calloc((size_t)M * N, sizeof(float));
    CHECK(a && b && c, "buffers");
    for (int i = 0; i < M * K; i++) a[i] = (float)(i % 7) * 0.25f;
    for (int i = 0; i < K * N; i++) b[i] = (float)(i % 5) * 0.5f;
    struct sigevent ev = {0};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGTERM;
    timer_t timer;
    CHECK(timer_create(CLOCK_MONOTONIC, &ev, &timer) == 0, "timer");
    struct itimerspec its = {{0, 50000}, {0, 50000}};
    timer_settime(timer, 0, &its, NULL);
    int calls = 0;
    for (double t0 = now(); now() - t0 < 1.5 && a && b && c; calls++) {
        CHECK(dnnl_sgemm('N', 'N', M, N, K, 1.0f, a, K, b, N, 0.0f, c, N) == dnnl_success, "sgemm");
        free(malloc(4096)); /* consolidation checks the heap around the workspace */
    }
    timer_delete(timer);
    double want = 0;
    for (int k = 0; k < K; k++) want += (double)(k % 7) * 0.25 * (double)((k * N) % 5) * 0.5;
    CHECK(calls > 0 && c[0] == (float)want, "sgemm result %g, expected %g", c ? c[0] : 0.0, want);
    free(a);
    free(b);
    free(c);
    usi_stop_signals_end();
    pthread_sigmask(SIG_BLOCK, NULL, &here);
    CHECK(!sigismember(&here, SIGINT) && !sigismember(&here, SIGTERM), "the mask is restored");
    return check_status("stop_signals");
}
