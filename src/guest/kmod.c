/* Kernel modules (spec §3.22 step 4): "modprobe -v <name> <params...>" children run one by one from the loop.
 */
#include "kmod.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../util/buf.h"
#include "../util/cleanup.h"
#include "../util/log.h"

#define SUB            "kmod"
#define TAIL_BUF_MAX   512 /* stderr tail kept; stdout keeps less (the error message is 1 KiB) */
#define STDOUT_TAIL    256
#define READS_PER_CALL 16

/* The last bytes a child wrote to one of its output pipes. */
struct kmod_stream {
    struct loop_io io; /* fd -1 once closed */
    size_t cap, len;
    bool truncated;
    char buf[TAIL_BUF_MAX];
};

struct kmod_load {
    struct loop *l;
    size_t n, cur;
    char ***argv; /* per module: modprobe -v name params... NULL */
    void (*done)(void *arg, const ka_err *err);
    void *arg;
    struct loop_child child;
    bool running;
    struct kmod_stream out, err;
    struct loop_defer defer;
};

/* ---- output capture ---- */

static void stream_append(struct kmod_stream *s, const char *data, size_t n)
{
    if (tail_append(s->buf, s->cap, &s->len, data, n))
        s->truncated = true;
}

/* Read what is there (a bounded amount); true at EOF or on a read error. */
static bool stream_read(struct kmod_stream *s)
{
    char chunk[4096];
    for (int i = 0; i < READS_PER_CALL; i++) {
        ssize_t r = read(s->io.fd, chunk, sizeof(chunk));
        if (r > 0) {
            stream_append(s, chunk, (size_t)r);
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        return !(r < 0 && errno == EAGAIN);
    }
    return false;
}

static void stream_close(struct loop *l, struct kmod_stream *s)
{
    if (s->io.fd < 0)
        return;
    loop_io_del(l, &s->io);
    close(s->io.fd);
    s->io.fd = -1;
}

static void stream_reset(struct kmod_stream *s, size_t cap, void (*cb)(struct loop_io *io, uint32_t revents))
{
    s->io.fd = -1;
    s->io.events = EPOLLIN;
    s->io.cb = cb;
    s->cap = cap;
    s->len = 0;
    s->truncated = false;
}

/* NUL-terminated text of the tail, trailing whitespace dropped, "..." in front when cut. */
static const char *stream_text(struct kmod_stream *s, char *out, size_t outsz)
{
    size_t len = s->len;
    while (len > 0 && (s->buf[len - 1] == '\n' || s->buf[len - 1] == ' ' || s->buf[len - 1] == '\t'))
        len--;
    snprintf(out, outsz, "%s%.*s", s->truncated ? "..." : "", (int)len, s->buf);
    return out;
}

static void on_out(struct loop_io *io, uint32_t revents)
{
    struct kmod_stream *s = container_of(io, struct kmod_stream, io);
    struct kmod_load *k = container_of(s, struct kmod_load, out);
    (void)revents;
    if (stream_read(s))
        stream_close(k->l, s);
}

static void on_err(struct loop_io *io, uint32_t revents)
{
    struct kmod_stream *s = container_of(io, struct kmod_stream, io);
    struct kmod_load *k = container_of(s, struct kmod_load, err);
    (void)revents;
    if (stream_read(s))
        stream_close(k->l, s);
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
    stream_close(k->l, &k->out);
    stream_close(k->l, &k->err);
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

/* ---- the child ---- */

static void child_reset_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
            signal(sig, SIG_DFL);
    }
}

static void child_exec(char *const argv[], int out_w, int err_w)
{
    child_reset_signals();
    setpgid(0, 0);
    out_w = fcntl(out_w, F_DUPFD_CLOEXEC, 3);
    err_w = fcntl(err_w, F_DUPFD_CLOEXEC, 3);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out_w < 0 || err_w < 0 || null < 0 || dup2(null, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
        _exit(126);
    close_range(3, ~0U, 0);
    execv(argv[0], argv);
    dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* ---- running modules one by one ---- */

static void on_exited(struct loop_child *c, int status);

static int open_pipes(int out[2], int err[2], ka_err *e)
{
    if (pipe2(out, O_CLOEXEC) < 0)
        return ka_fail_errno(e, errno, "pipe");
    if (pipe2(err, O_CLOEXEC) < 0) {
        ka_fail_errno(e, errno, "pipe");
        close(out[0]);
        close(out[1]);
        return -1;
    }
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    return 0;
}

static void kill_child(struct kmod_load *k)
{
    if (!k->running)
        return;
    kill(-k->child.pid, SIGKILL);
    kill(k->child.pid, SIGKILL);
    loop_child_unwatch(&k->child); /* the loop still reaps it */
    k->running = false;
}

static int watch_streams(struct kmod_load *k, int out_r, int err_r, ka_err *e)
{
    k->out.io.fd = out_r;
    k->err.io.fd = err_r;
    if (loop_io_add(k->l, &k->out.io, e) < 0) {
        close(out_r);
        close(err_r);
        k->out.io.fd = k->err.io.fd = -1;
        return -1;
    }
    if (loop_io_add(k->l, &k->err.io, e) < 0) {
        close(err_r);
        k->err.io.fd = -1;
        return -1;
    }
    return 0;
}

static int spawn(struct kmod_load *k, ka_err *e)
{
    int out[2], err[2];
    stream_reset(&k->out, STDOUT_TAIL, on_out);
    stream_reset(&k->err, TAIL_BUF_MAX, on_err);
    if (open_pipes(out, err, e) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0)
        child_exec(k->argv[k->cur], out[1], err[1]);
    int fork_errno = errno;
    close(out[1]);
    close(err[1]);
    if (pid < 0) {
        close(out[0]);
        close(err[0]);
        return ka_fail_errno(e, fork_errno, "fork modprobe");
    }
    setpgid(pid, pid);
    k->child.pid = pid;
    k->child.exited = on_exited;
    loop_child_watch(k->l, &k->child);
    k->running = true;
    log_info(SUB, "loading kernel module %s (pid %d)", k->argv[k->cur][2], (int)pid);
    if (watch_streams(k, out[0], err[0], e) < 0) {
        kill_child(k);
        return -1;
    }
    return 0;
}

static void fail_status(struct kmod_load *k, int status, ka_err *e)
{
    char out[STDOUT_TAIL + 8], err[TAIL_BUF_MAX + 8];
    const char *name = k->argv[k->cur][2];
    stream_text(&k->out, out, sizeof(out));
    stream_text(&k->err, err, sizeof(err));
    if (WIFSIGNALED(status))
        ka_fail(e, KA_INTERNAL, "load_kernel_module %s: Process terminated by signal %d stderr: %s", name,
                WTERMSIG(status), err);
    else
        ka_fail(e, KA_INTERNAL, "load_kernel_module %s return code: %d stdout: %s stderr: %s", name,
                WEXITSTATUS(status), out, err);
}

static void on_exited(struct loop_child *c, int status)
{
    struct kmod_load *k = container_of(c, struct kmod_load, child);
    ka_err e;
    k->running = false;
    /* everything the child wrote is in the pipes now; a grandchild keeping them open is not waited for */
    if (k->out.io.fd >= 0)
        stream_read(&k->out);
    if (k->err.io.fd >= 0)
        stream_read(&k->err);
    stream_close(k->l, &k->out);
    stream_close(k->l, &k->err);
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
    stream_reset(&k->out, STDOUT_TAIL, on_out);
    stream_reset(&k->err, TAIL_BUF_MAX, on_err);
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
    if (!k)
        return;
    kill_child(k);
    kmod_free(k);
}
