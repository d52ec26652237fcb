/* Kernel modules (spec §3.22 step 4): "modprobe -v <name> <params...>" children run one by one from the loop.
 */
#include "kmod.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../loop/child_run.h"
#include "../util/cleanup.h"
#include "../util/log.h"

#define SUB          "kmod"
#define TAIL_BUF_MAX 512 /* stderr tail kept; stdout keeps less (the error message is 1 KiB) */
#define STDOUT_TAIL  256

struct kmod_load {
    struct loop *l;
    size_t n, cur;
    char ***argv; /* per module: modprobe -v name params... NULL */
    void (*done)(void *arg, const ka_err *err);
    void *arg;
    struct child_run run;
    struct loop_defer defer;
};

/* NUL-terminated text of a tail, trailing whitespace dropped, "..." in front when cut. */
static const char *stream_text(const struct child_out *s, char *out, size_t outsz)
{
    size_t len = s->len;
    while (len > 0 && (s->tail[len - 1] == '\n' || s->tail[len - 1] == ' ' || s->tail[len - 1] == '\t'))
        len--;
    snprintf(out, outsz, "%s%.*s", s->total > s->len ? "..." : "", (int)len, s->tail);
    return out;
}

/* ---- lifetime ---- */

static void argv_free(char **argv)
{
    if (!argv)
        return;
    for (char **p = argv; *p; p++)
        free(*p);
    free(argv);
}

static void kmod_free(struct kmod_load *k)
{
    child_run_cancel(&k->run);
    loop_defer_cancel(&k->defer);
    for (size_t i = 0; k->argv && i < k->n; i++)
        argv_free(k->argv[i]);
    free(k->argv);
    free(k);
}

/* The end: free everything, then tell the caller (who may start anything from done). */
static void finish(struct kmod_load *k, const ka_err *err)
{
    void (*done)(void *arg, const ka_err *err) = k->done;
    void *arg = k->arg;
    ka_err copy;
    if (err)
        copy = *err;
    kmod_free(k);
    done(arg, err ? &copy : NULL);
}

static void on_defer(struct loop_defer *d)
{
    finish(container_of(d, struct kmod_load, defer), NULL);
}

/* ---- running modules one by one ---- */

static void on_exited(struct child_run *r, int status);

static int spawn(struct kmod_load *k, ka_err *e)
{
    struct child_spec s = {.argv = k->argv[k->cur], .out_tail = STDOUT_TAIL, .err_tail = TAIL_BUF_MAX};
    if (child_run_start(k->l, &k->run, &s, on_exited, e) < 0)
        return -1;
    log_info(SUB, "loading kernel module %s (pid %d)", k->argv[k->cur][2], (int)k->run.pid);
    return 0;
}

static void fail_status(struct kmod_load *k, int status, ka_err *e)
{
    char out[STDOUT_TAIL + 8], err[TAIL_BUF_MAX + 8];
    const char *name = k->argv[k->cur][2];
    stream_text(&k->run.out, out, sizeof(out));
    stream_text(&k->run.err, err, sizeof(err));
    if (WIFSIGNALED(status))
        ka_fail(e, KA_INTERNAL, "load_kernel_module %s: Process terminated by signal %d stderr: %s", name,
                WTERMSIG(status), err);
    else
        ka_fail(e, KA_INTERNAL, "load_kernel_module %s return code: %d stdout: %s stderr: %s", name,
                WEXITSTATUS(status), out, err);
}

static void on_exited(struct child_run *r, int status)
{
    struct kmod_load *k = container_of(r, struct kmod_load, run);
    ka_err e;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail_status(k, status, &e);
        finish(k, &e);
        return;
    }
    if (++k->cur == k->n) {
        finish(k, NULL);
        return;
    }
    if (spawn(k, &e) < 0)
        finish(k, &e);
}
/* ---- setup ---- */

static char **build_argv(const char *modprobe, const Grpc__KernelModule *m)
{
    char **argv = calloc(m->n_parameters + 4, sizeof(*argv));
    if (!argv)
        return NULL;
    argv[0] = strdup(modprobe);
    argv[1] = strdup("-v");
    argv[2] = strdup(m->name);
    bool ok = argv[0] && argv[1] && argv[2];
    for (size_t i = 0; ok && i < m->n_parameters; i++)
        ok = (argv[3 + i] = strdup(m->parameters[i])) != NULL;
    if (!ok) {
        for (size_t i = 0; i < m->n_parameters + 3; i++)
            free(argv[i]);
        free(argv);
        return NULL;
    }
    return argv;
}

static int check_names(Grpc__KernelModule *const *mods, size_t n, ka_err *e)
{
    for (size_t i = 0; i < n; i++)
        if (!mods[i]->name || !mods[i]->name[0])
            return ka_fail(e, KA_INVALID_ARGUMENT, "Kernel module name is empty");
    return 0;
}

static struct kmod_load *kmod_new(struct loop *l, const char *modprobe, Grpc__KernelModule *const *mods,
                                  size_t n)
{
    struct kmod_load *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    k->l = l;
    child_run_init(&k->run);
    loop_defer_init(&k->defer, on_defer);
    k->argv = calloc(n ? n : 1, sizeof(*k->argv));
    if (!k->argv) {
        free(k);
        return NULL;
    }
    k->n = n;
    for (size_t i = 0; i < n; i++) {
        if (!(k->argv[i] = build_argv(modprobe, mods[i]))) {
            kmod_free(k);
            return NULL;
        }
    }
    return k;
}

struct kmod_load *kmod_load_async(struct loop *l, const char *modprobe, Grpc__KernelModule *const *mods,
                                  size_t n, void (*done)(void *arg, const ka_err *err), void *arg, ka_err *e)
{
    if (check_names(mods, n, e) < 0)
        return NULL;
    struct kmod_load *k = kmod_new(l, modprobe ? modprobe : "/sbin/modprobe", mods, n);
    if (!k) {
        ka_fail_errno(e, ENOMEM, "kernel modules");
        return NULL;
    }
    k->done = done;
    k->arg = arg;
    if (n == 0) {
        loop_defer(l, &k->defer);
        return k;
    }
    if (spawn(k, e) < 0) {
        kmod_free(k);
        return NULL;
    }
    return k;
}

void kmod_load_cancel(struct kmod_load *k)
{
    if (k)
        kmod_free(k); /* kills a running modprobe */
}
