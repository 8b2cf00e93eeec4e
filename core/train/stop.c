/* SIGINT / SIGTERM ask the training loop to stop (usi_stop_requested), and
 * so does SIGHUP (the terminal or SSH session closed) unless the run was
 * started with it ignored (nohup): its default would end the run without a
 * checkpoint.
 *
 * The handler never runs on a thread that computes. oneDNN 2.x's JIT sgemm
 * kernels (behind dnnl_sgemm and every "gemm:jit" convolution) point rsp at
 * a heap workspace while they run, so a signal handled on such a thread
 * pushes its frame into the heap and corrupts it ("corrupted size vs.
 * prev_size" at a later free; oneDNN issue #4845, fixed in 3.11). The
 * signals are therefore blocked in the calling thread, and so in every thread
 * started after it (loader workers, the OpenMP team), and taken by one thread
 * that only waits for them. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "train/stop.h"
#include "train/trainer.h"
#include "util/log.h"

static pthread_t listener;
static int listening;
static sigset_t saved_mask;
static char temp_path[4096];
static volatile sig_atomic_t temp_set;
static int say_stopping, stderr_tty, take_hup;

void usi_stop_temp_begin(const char *path)
{
    temp_set = 0;
    snprintf(temp_path, sizeof temp_path, "%s", path);
    temp_set = 1;
}

void usi_stop_temp_end(void) { temp_set = 0; }

/* The first signal asks for a checkpoint and a clean stop; a second Ctrl-C
 * ends the process at once, removing a save's temporary file first (the
 * last checkpoint on disk stays whole: saves are atomic). A repeated
 * SIGTERM or SIGHUP only repeats the request. Only async-signal-safe calls. */
static void on_stop(int sig)
{
    if (sig == SIGINT && usi_stop_requested) {
        static const char said[] = "usi: stopped at once (a second Ctrl-C); the last whole checkpoint stays, and "
                                   "one being written is dropped\n";
        if (temp_set) unlink(temp_path);
        if (write(STDERR_FILENO, said, sizeof said - 1) < 0) {
        }
        signal(SIGINT, SIG_DFL);
        raise(SIGINT);
        return;
    }
    /* Said at once: the step, an evaluation or the teacher's set-up under
     * way can take minutes before the run gets to stop. */
    if (!usi_stop_requested && say_stopping) {
        static const char said[] = "usi: stopping after this step, with a checkpoint (Ctrl-C again stops at once, "
                                   "keeping the last whole checkpoint)\n";
        if (write(STDERR_FILENO, "\n", stderr_tty ? 1 : 0) < 0 || write(STDERR_FILENO, said, sizeof said - 1) < 0) {
        }
    }
    usi_stop_requested = 1;
}

static void stop_set(sigset_t *s)
{
    sigemptyset(s);
    sigaddset(s, SIGINT);
    sigaddset(s, SIGTERM);
    if (take_hup) sigaddset(s, SIGHUP);
}

static void *listen_main(void *arg)
{
    (void)arg;
    sigset_t s;
    stop_set(&s);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    for (;;) pause(); /* a cancellation point: usi_stop_signals_end ends it here */
    return NULL;
}

void usi_stop_signals_begin(void)
{
    if (listening) return;
    /* Rank 0 speaks for the job (mpirun passes a Ctrl-C to every rank). */
    say_stopping = usi_log_is_reporter();
    stderr_tty = isatty(STDERR_FILENO);
    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct sigaction hup;
    take_hup = sigaction(SIGHUP, NULL, &hup) == 0 && hup.sa_handler != SIG_IGN;
    if (take_hup) sigaction(SIGHUP, &sa, NULL);
    sigset_t s;
    stop_set(&s);
    pthread_sigmask(SIG_BLOCK, &s, &saved_mask);
    if (pthread_create(&listener, NULL, listen_main, NULL) == 0) listening = 1;
    else pthread_sigmask(SIG_SETMASK, &saved_mask, NULL); /* no thread: handled where they land, as before */
}

void usi_stop_signals_end(void)
{
    if (!listening) return;
    pthread_cancel(listener);
    pthread_join(listener, NULL);
    listening = 0;
    pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
}
