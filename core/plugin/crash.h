/* What usi is doing in plugin code, for the one line a crash leaves.
 *
 * A plugin runs inside our process: when it crashes, the kernel kills usi,
 * and without a word the user cannot tell a broken plugin from a bug in usi.
 * Every call the host makes into a plugin is bracketed:
 *
 *     usi_crash_enter(loaded->path, "building backbone", comp->name);
 *     out = ops->build(inst, g, x);
 *     usi_crash_leave();
 *
 * which stores three pointers in thread-local memory (cheap enough around
 * every kernel and every per-sample augment). The strings must live while
 * the call runs: a registry path, a literal, a component's name. Brackets
 * nest (a teacher's build building a backbone); the innermost is reported.
 *
 * With usi_crash_install (core/cli/main.c), a fatal signal writes
 *     usi: fatal SIGSEGV in plugin file /x/y.so while building backbone 'vgg'
 * or, outside every bracket,
 *     usi: fatal SIGSEGV (a bug in usi: please report it)
 * and the signal then kills the process as it would have, so the exit status
 * and the core dump are the crash's own. */
#ifndef USI_CORE_CRASH_H
#define USI_CORE_CRASH_H

#include <stdint.h>
#include <stdio.h>

/* Enter plugin code on this thread: `file` is the plugin file, `what` says
 * what usi asked of it ("building backbone"), `name` the component (NULL:
 * none; the line then ends after `what`). */
void usi_crash_enter(const char *file, const char *what, const char *name);
/* The same where the caller holds a function of the plugin (`code`, as an
 * integer) rather than its file: the file whose code holds that address is
 * named (usi_crash_note_plugin), found only if a report is written. */
void usi_crash_enter_code(uintptr_t code, const char *what, const char *name);
#define USI_CRASH_CODE(fn) ((uintptr_t)(fn))
/* Back in host code (pairs with the last enter of this thread). */
void usi_crash_leave(void);

/* Install the handler for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT (on an
 * alternate stack on this thread, so a stack overflow is reported too), and
 * an exit hook: a plugin that calls exit() inside a bracket is named, and
 * exit(0) there becomes status 1, since usi did not finish its work. For the
 * program's main; library code and tests call the rest without it. */
void usi_crash_install(void);
/* The default action for those signals again (in a child process that must
 * die of its own crash silently). */
void usi_crash_uninstall(void);

/* A plugin loaded at `handle`, with `inside` any address in it: a fault whose
 * instruction lies in its code is reported as being in `path` even outside a
 * bracket. forget before dlclose. */
void usi_crash_note_plugin(void *handle, const void *inside, const char *path);
void usi_crash_forget_plugin(void *handle);

/* "SIGSEGV" for the signals a crash or a kill gives, else NULL; safe in a
 * signal handler. */
const char *usi_crash_signal_name(int sig);

/* Plugins share the host's stdio. When `host` is given, `stdout` is switched
 * to `plugin` while any thread is inside a bracket and back to `host` after,
 * so what a plugin prints with printf() or puts() lands in `plugin` (used by
 * main for --json, where stdout must carry the document alone). */
void usi_crash_split_stdout(FILE *host, FILE *plugin);

#endif
