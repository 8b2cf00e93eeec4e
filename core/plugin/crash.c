#include "plugin/crash.h"

#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

/* One bracket: what the host asked of which plugin file. */
typedef struct frame {
    const char *file, *what, *name;
    uintptr_t code; /* file unknown: a function of the plugin, found at report time */
} frame;

#define MAX_DEPTH 8 /* deeper brackets are counted; the line names the 8th */

/* initial-exec: the handler reads these, and a TLS access that may allocate
 * (the general dynamic model, in a dlopen'ed library) is not safe there. The
 * core is linked into the program, where this is the model anyway. */
#define TLS_IE __attribute__((tls_model("initial-exec")))
static _Thread_local frame frames[MAX_DEPTH] TLS_IE;
static _Thread_local int depth TLS_IE;

/* The --json stdout split (usi_crash_split_stdout, set once before any
 * plugin runs): which FILE plugin code prints to, and how many threads are
 * in plugin code now. */
static FILE *host_out, *plugin_out;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static int threads_inside;

/* Where plugin code lies, for faults outside every bracket. Written under a
 * lock at load and unload; the handler reads without one (a crash racing an
 * unload can at worst name the wrong file). */
typedef struct code_range {
    void *handle;
    uintptr_t start, end;
    char *path;
} code_range;
#define MAX_RANGES 256
static code_range ranges[MAX_RANGES];
static volatile sig_atomic_t n_ranges;
static pthread_mutex_t ranges_lock = PTHREAD_MUTEX_INITIALIZER;

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

static void stdout_to_plugin(void)
{
    pthread_mutex_lock(&out_lock);
    if (threads_inside++ == 0) stdout = plugin_out;
    pthread_mutex_unlock(&out_lock);
}

static void stdout_to_host(void)
{
    pthread_mutex_lock(&out_lock);
    if (--threads_inside == 0) {
        fflush(plugin_out); /* a plugin's lines before the host's next ones */
        stdout = host_out;
    }
    pthread_mutex_unlock(&out_lock);
}

static void enter(const char *file, uintptr_t code, const char *what, const char *name)
{
    if (depth < MAX_DEPTH) frames[depth] = (frame){file, what, name, code};
    /* The handler runs on this thread: the frame must be whole before the
     * depth that makes it visible. */
    atomic_signal_fence(memory_order_release);
    if (depth++ == 0 && host_out) stdout_to_plugin();
}

void usi_crash_enter(const char *file, const char *what, const char *name) { enter(file, 0, what, name); }

void usi_crash_enter_code(uintptr_t code, const char *what, const char *name) { enter(NULL, code, what, name); }

void usi_crash_leave(void)
{
    if (depth <= 0) return;
    if (--depth == 0 && host_out) stdout_to_host();
}

void usi_crash_split_stdout(FILE *host, FILE *plugin)
{
    pthread_mutex_lock(&out_lock);
    host_out = host;
    plugin_out = plugin;
    pthread_mutex_unlock(&out_lock);
}

/* --- what the handler may use: no malloc, no stdio, no locks --- */

static size_t put(char *buf, size_t at, size_t cap, const char *s)
{
    while (s && *s && at + 1 < cap) buf[at++] = *s++;
    buf[at] = 0;
    return at;
}

const char *usi_crash_signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGABRT: return "SIGABRT";
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGSYS: return "SIGSYS";
    case SIGTRAP: return "SIGTRAP";
    default: return NULL;
    }
}

/* The instruction that faulted, when the kernel raised the signal for one. */
static uintptr_t fault_pc(const siginfo_t *info, void *uctx)
{
    if (!info || info->si_code <= 0 || !uctx) return 0; /* sent by kill(), raise(), abort() */
#if defined(__x86_64__)
    return (uintptr_t)((ucontext_t *)uctx)->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)((ucontext_t *)uctx)->uc_mcontext.pc;
#else
    return 0;
#endif
}

static const char *plugin_at(uintptr_t pc)
{
    int n = n_ranges;
    for (int i = 0; pc && i < n && i < MAX_RANGES; i++)
        if (pc >= ranges[i].start && pc < ranges[i].end) return ranges[i].path;
    return NULL;
}

/* "usi: fatal SIGSEGV in plugin file F while WHAT 'NAME'\n" into buf. */
static size_t describe(char *buf, size_t cap, int sig, uintptr_t pc)
{
    size_t n = put(buf, 0, cap, "usi: fatal ");
    const char *sig_name = usi_crash_signal_name(sig);
    n = put(buf, n, cap, sig_name ? sig_name : "signal");
    int d = depth;
    if (d > MAX_DEPTH) d = MAX_DEPTH;
    const char *code_of = plugin_at(pc);
    if (d > 0) {
        const frame *f = &frames[d - 1];
        const char *file = f->file ? f->file : plugin_at(f->code);
        if (file) n = put(buf, n, cap, " in plugin file "), n = put(buf, n, cap, file);
        if (f->what) n = put(buf, n, cap, " while "), n = put(buf, n, cap, f->what);
        if (f->name) n = put(buf, n, cap, " '"), n = put(buf, n, cap, f->name), n = put(buf, n, cap, "'");
    } else if (code_of) {
        n = put(buf, n, cap, " in the code of plugin file ");
        n = put(buf, n, cap, code_of);
    } else {
        n = put(buf, n, cap, " (a bug in usi: please report it)");
    }
    return put(buf, n, cap, "\n");
}

static void on_fatal(int sig, siginfo_t *info, void *uctx)
{
    char line[2048];
    size_t n = describe(line, sizeof line, sig, fault_pc(info, uctx));
    for (size_t done = 0; done < n;) {
        ssize_t w = write(2, line + done, n - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    /* Die of the same signal: with the default action back, the signal
     * raised again is pending (blocked while this runs) and kills the process
     * as soon as the handler returns, with the status and core dump of the
     * crash itself. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig);
}

#ifdef __GLIBC__
/* exit() inside a bracket: a plugin gave up on the whole process. Say so,
 * and never let it pass for success. */
static void on_exit_hook(int status, void *arg)
{
    (void)arg;
    int d = depth > MAX_DEPTH ? MAX_DEPTH : depth;
    if (d <= 0) return;
    const frame *f = &frames[d - 1];
    const char *file = f->file ? f->file : plugin_at(f->code);
    fprintf(stderr, "usi: error: plugin file %s called exit(%d) while %s%s%s%s; "
                    "a plugin must return an error instead (report it to its vendor)\n",
            file ? file : "(unknown)", status, f->what ? f->what : "running",
            f->name ? " '" : "", f->name ? f->name : "", f->name ? "'" : "");
    if (status == 0) {
        fflush(NULL);
        _exit(1);
    }
}
#endif

void usi_crash_install(void)
{
    static int done;
    if (done) return;
    done = 1;
    /* A stack overflow faults on the stack itself: the handler needs its own
     * (this thread's; other threads die of the default action there). */
    static char alt[64 * 1024];
    stack_t old;
    if (sigaltstack(NULL, &old) == 0 && (old.ss_flags & SS_DISABLE)) {
        stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0};
        sigaltstack(&ss, NULL);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof fatal_signals / sizeof *fatal_signals; i++)
        sigaction(fatal_signals[i], &sa, NULL);
#ifdef __GLIBC__
    on_exit(on_exit_hook, NULL);
#endif
}

void usi_crash_uninstall(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (size_t i = 0; i < sizeof fatal_signals / sizeof *fatal_signals; i++)
        sigaction(fatal_signals[i], &dfl, NULL);
}

/* --- where plugin code lies --- */

typedef struct finding {
    uintptr_t inside;
    void *handle;
    const char *path;
} finding;

static int contains(const struct dl_phdr_info *info, uintptr_t p)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && p >= start && p - start < ph->p_memsz) return 1;
    }
    return 0;
}

/* Called with ranges_lock held, for every loaded object. */
static int add_code_of(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    const finding *f = arg;
    if (!contains(info, f->inside)) return 0;
    for (int i = 0; i < info->dlpi_phnum && n_ranges < MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        char *copy = strdup(f->path);
        if (!copy) break;
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        ranges[n_ranges] = (code_range){f->handle, start, start + ph->p_memsz, copy};
        n_ranges = n_ranges + 1;
    }
    return 1;
}

void usi_crash_note_plugin(void *handle, const void *inside, const char *path)
{
    finding f = {(uintptr_t)inside, handle, path};
    if (!inside || !path) return;
    pthread_mutex_lock(&ranges_lock);
    dl_iterate_phdr(add_code_of, &f);
    pthread_mutex_unlock(&ranges_lock);
}

void usi_crash_forget_plugin(void *handle)
{
    pthread_mutex_lock(&ranges_lock);
    for (int i = 0; i < n_ranges;) {
        if (ranges[i].handle != handle) {
            i++;
            continue;
        }
        char *path = ranges[i].path;
        ranges[i] = ranges[n_ranges - 1];
        n_ranges = n_ranges - 1;
        free(path);
    }
    pthread_mutex_unlock(&ranges_lock);
}
