/* A plugin file is loaded and shaken hands with in a child process before
 * this process loads it.
 *
 * dlopen of a damaged file can crash inside the dynamic loader, and a broken
 * plugin can crash, hang or call exit() in its usi_plugin_entry; in this
 * process each of those would end usi with no word (or, for exit(0), with a
 * success it never had). The child does everything the registry does up to
 * registering the components -- dlopen, the entry call, the checks of the
 * descriptor -- and reports each stage on a pipe; the parent reads the end
 * of what the child wrote on stderr, to quote it. One fork per file, which
 * the loader check paid before too. Where no child can be made, the file
 * loads as before. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "plugin/crash.h"
#include "plugin/registry_internal.h"
#include "util/error.h"

/* What the child writes on the report pipe, one byte per stage reached. */
enum { SAID_LOADED = 'L', SAID_NOT_LOADED = 'N', SAID_DONE = 'D' };

static void say(int fd, char c)
{
    while (write(fd, &c, 1) < 0 && errno == EINTR) {}
}

#ifdef __GLIBC__
/* exit() in the plugin: leave at once with its status. The handlers the
 * parent registered, and the destructors of its libraries, must not run in
 * a copy of it (they could flush its buffers a second time, or wait for
 * threads the copy does not have). Registered last, so it runs first. */
static void leave_now(int status, void *arg)
{
    (void)arg;
    _exit(status);
}
#endif

static void child(const char *real, const char *shown, uint32_t min_minor, int report, int err)
{
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    usi_crash_uninstall(); /* a crash here is the parent's to report */
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 1);
    dup2(err, 2);
#ifdef __GLIBC__
    on_exit(leave_now, NULL);
#endif
    usi_crash_enter(shown, "loading it", NULL);
    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    usi_crash_leave();
    if (!h) { /* the parent's own dlopen says why */
        say(report, SAID_NOT_LOADED);
        _exit(0);
    }
    say(report, SAID_LOADED);
    usi_negotiate n;
    usi_error_free(usi_plugin_negotiate(min_minor, shown, h, &n)); /* refusals: the parent's again */
    say(report, SAID_DONE);
    _exit(0);
}

/* What the parent learned from the pipes. */
typedef struct watched {
    char stage;        /* the last byte on the report pipe, or 0 */
    char tail[1024];   /* the end of the child's stderr */
    size_t tail_len;
} watched;

static void keep_tail(watched *w, const char *buf, size_t n)
{
    size_t cap = sizeof w->tail - 1;
    if (n > cap) {
        buf += n - cap;
        n = cap;
    }
    size_t drop = w->tail_len + n > cap ? w->tail_len + n - cap : 0;
    memmove(w->tail, w->tail + drop, w->tail_len - drop);
    w->tail_len -= drop;
    memcpy(w->tail + w->tail_len, buf, n);
    w->tail_len += n;
    w->tail[w->tail_len] = 0;
}

static long ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Read both pipes until they close or timeout_ms pass; 1 on timeout. A
 * child that has exited while something it started keeps the pipes open is
 * done too (waitid with WNOWAIT looks without reaping). */
static int watch(pid_t pid, int report, int err, int timeout_ms, watched *w)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct pollfd fds[2] = {{report, POLLIN, 0}, {err, POLLIN, 0}};
    int open_fds = 2;
    while (open_fds) {
        long left = timeout_ms - ms_since(&t0);
        if (left <= 0) return 1;
        int n = poll(fds, 2, left < 100 ? (int)left : 100);
        if (n < 0 && errno != EINTR) return 0;
        if (n <= 0) {
            siginfo_t si;
            memset(&si, 0, sizeof si);
            if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid) return 0;
            continue;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !fds[i].revents) continue;
            char buf[512];
            ssize_t got = read(fds[i].fd, buf, sizeof buf);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                fds[i].fd = -1;
                open_fds--;
            } else if (i == 0) {
                w->stage = buf[got - 1];
            } else {
                keep_tail(w, buf, (size_t)got);
            }
        }
    }
    return 0;
}

/* The last line the child wrote, as a clause: `; it wrote: "..."`. */
static void quote_tail(watched *w, char *out, size_t cap)
{
    char *end = w->tail + w->tail_len;
    while (end > w->tail && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ')) end--;
    *end = 0;
    char *line = end;
    while (line > w->tail && line[-1] != '\n') line--;
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < ' ') *p = ' ';
    if (*line) snprintf(out, cap, "; before that it wrote: \"%.300s\"", line);
    else out[0] = 0;
}

static const char *signal_name(int sig)
{
    const char *name = usi_crash_signal_name(sig);
    return name ? name : strsignal(sig);
}

static const char *const broken = "the plugin is broken: report it to its vendor, or remove the file";

static usi_error *verdict(const char *shown, watched *w, int timed_out, int have_status, int status,
                          int timeout_ms)
{
    if (w->stage == SAID_DONE || w->stage == SAID_NOT_LOADED) return NULL;
    int in_entry = w->stage == SAID_LOADED;
    char said[400];
    quote_tail(w, said, sizeof said);
    if (timed_out)
        return in_entry ? usi_error_new(USI_ERR_INVALID, "%s: its usi_plugin_entry did not return in %g s "
                                                         "(it hangs); %s%s",
                                        shown, timeout_ms / 1000.0, broken, said)
                        : usi_error_new(USI_ERR_INVALID, "%s: loading it did not finish in %g s; remove the file%s",
                                        shown, timeout_ms / 1000.0, said);
    if (!have_status) /* reaped elsewhere (SIGCHLD ignored): only the stage is known */
        return in_entry ? usi_error_new(USI_ERR_INVALID, "%s: its usi_plugin_entry never returned (it crashed or "
                                                         "exited); %s%s",
                                        shown, broken, said)
                        : usi_error_new(USI_ERR_INVALID, "%s: loading it ended the process that tried it (a crash "
                                                         "or an exit in the loader or the file's start-up code); "
                                                         "rebuild it or remove it%s",
                                        shown, said);
    if (WIFSIGNALED(status))
        return in_entry ? usi_error_new(USI_ERR_INVALID, "%s: crashed with %s in its usi_plugin_entry; %s%s",
                                        shown, signal_name(WTERMSIG(status)), broken, said)
                        : usi_error_new(USI_ERR_INVALID,
                                        "%s: loading it crashed the dynamic loader or the file's own start-up "
                                        "code (%s): the file is damaged or broken; rebuild it or remove it%s",
                                        shown, signal_name(WTERMSIG(status)), said);
    if (WIFEXITED(status))
        return in_entry ? usi_error_new(USI_ERR_INVALID, "%s: called exit(%d) in its usi_plugin_entry, where a "
                                                         "plugin returns an error instead; %s%s",
                                        shown, WEXITSTATUS(status), broken, said)
                        : usi_error_new(USI_ERR_INVALID, "%s: called exit(%d) while being loaded (in its own "
                                                         "start-up code); %s%s",
                                        shown, WEXITSTATUS(status), broken, said);
    return NULL;
}

usi_error *usi_plugin_probe(const char *real, const char *shown, uint32_t min_minor, int timeout_ms)
{
    int report[2], err[2];
    if (pipe2(report, O_CLOEXEC) != 0) return NULL;
    if (pipe2(err, O_CLOEXEC) != 0) {
        close(report[0]);
        close(report[1]);
        return NULL;
    }
    fflush(NULL); /* nothing buffered may be written twice, by parent and child */
    pid_t pid = fork();
    if (pid == 0) {
        close(report[0]);
        close(err[0]);
        child(real, shown, min_minor, report[1], err[1]);
    }
    close(report[1]);
    close(err[1]);
    watched w = {0};
    int timed_out = pid > 0 && watch(pid, report[0], err[0], timeout_ms, &w);
    close(report[0]);
    close(err[0]);
    if (pid < 0) return NULL;
    if (timed_out) kill(pid, SIGKILL);
    int status = 0;
    pid_t got;
    while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {}
    return verdict(shown, &w, timed_out, got == pid, status, timeout_ms);
}
