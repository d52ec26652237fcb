/* iptables-save / iptables-restore as children of the event loop: stdin fed, stdout and stderr read, exit. */
#include "iptables.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../util/buf.h"
#include "../util/cleanup.h"
#include "../util/log.h"

#define SUB            "iptables"
#define ERR_TAIL       512       /* stderr kept for the error message (the message is 1 KiB) */
#define READ_CHUNK     65536     /* one read() */
#define READS_PER_WAKE 16        /* per loop wake-up, so one busy child cannot hog the loop */
#define ERR_DRAIN_MAX  (1 << 20) /* stderr read after the exit, at most (a grandchild could keep writing) */

struct ipt_job {
    struct loop *l;
    char **argv;
    uint8_t *in; /* stdin data (copy) */
    size_t in_len, in_off;
    struct loop_io in_io, out_io, err_io; /* fd -1 once closed */
    struct kbuf out;
    size_t err_len, err_total;
    char err[ERR_TAIL];
    struct loop_child child;
    bool running;
    struct loop_timer stdin_timer, run_timer;
    ipt_done_cb done;
    void *arg;
};

/* ---- helpers ---- */

static void argv_free(char **argv)
{
    for (char **p = argv; p && *p; p++)
        free(*p);
    free(argv);
}

static char **argv_dup(char *const argv[])
{
    size_t n = 0;
    while (argv[n])
        n++;
    char **v = calloc(n + 1, sizeof(*v));
    for (size_t i = 0; v && i < n; i++) {
        if (!(v[i] = strdup(argv[i]))) {
            argv_free(v);
            return NULL;
        }
    }
    return v;
}

static void io_close(struct loop *l, struct loop_io *io)
{
    if (io->fd < 0)
        return;
    loop_io_del(l, io);
    close(io->fd);
    io->fd = -1;
}

static void kill_child(struct ipt_job *j)
{
    if (!j->running)
        return;
    kill(-j->child.pid, SIGKILL);
    kill(j->child.pid, SIGKILL);
    loop_child_unwatch(&j->child); /* the loop still reaps it */
    j->running = false;
}

static void job_free(struct ipt_job *j)
{
    io_close(j->l, &j->in_io);
    io_close(j->l, &j->out_io);
    io_close(j->l, &j->err_io);
    loop_timer_stop(j->l, &j->stdin_timer);
    loop_timer_stop(j->l, &j->run_timer);
    kill_child(j);
    argv_free(j->argv);
    free(j->in);
    kbuf_free(&j->out);
    free(j);
}

/* The end: answer through done (out is still valid), then free everything. */
static void finish(struct ipt_job *j, const ka_err *err)
{
    kill_child(j);
    io_close(j->l, &j->in_io);
    io_close(j->l, &j->out_io);
    io_close(j->l, &j->err_io);
    loop_timer_stop(j->l, &j->stdin_timer);
    loop_timer_stop(j->l, &j->run_timer);
    if (err)
        j->done(j->arg, err, NULL, 0);
    else
        j->done(j->arg, NULL, j->out.data, j->out.len);
    job_free(j);
}

/* The stderr tail as text safe for a status message: control and non-ASCII bytes become '?', newlines
 * become "; ", trailing whitespace is dropped, "..." in front when the start was lost. */
static void err_text(const struct ipt_job *j, char *out, size_t outsz)
{
    size_t len = j->err_len, o = 0;
    while (len > 0 && (j->err[len - 1] == '\n' || j->err[len - 1] == ' ' || j->err[len - 1] == '\t'))
        len--;
    if (j->err_total > j->err_len && outsz > 4)
        o = (size_t)snprintf(out, outsz, "...");
    for (size_t i = 0; i < len && o + 3 < outsz; i++) {
        unsigned char ch = (unsigned char)j->err[i];
        if (ch == '\n') {
            out[o++] = ';';
            out[o++] = ' ';
        } else {
            out[o++] = (ch >= 0x20 && ch < 0x7f) || ch == '\t' ? (char)ch : '?';
        }
    }
    out[o] = '\0';
}

static void err_add(struct ipt_job *j, const char *d, size_t n)
{
    j->err_total += n;
    tail_append(j->err, sizeof(j->err), &j->err_len, d, n);
}

/* ---- output ---- */

enum rd { RD_MORE, RD_EOF, RD_OVERFLOW };

/* Read stdout: at most max_reads reads (0 = until EAGAIN or EOF). */
static enum rd read_out(struct ipt_job *j, int max_reads)
{
    for (int i = 0; max_reads == 0 || i < max_reads; i++) {
        uint8_t *p = kbuf_reserve(&j->out, READ_CHUNK);
        if (!p)
            return RD_OVERFLOW; /* out of memory: as good as too much */
        ssize_t r = read(j->out_io.fd, p, READ_CHUNK);
        if (r > 0) {
            j->out.len += (size_t)r;
            if (j->out.len > IPT_OUT_MAX)
                return RD_OVERFLOW;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 && errno == EAGAIN ? RD_MORE : RD_EOF;
    }
    return RD_MORE;
}

/* Read stderr into the tail: at most max_bytes (then it counts as more to come). */
static enum rd read_err(struct ipt_job *j, size_t max_bytes)
{
    char buf[4096];
    for (size_t got = 0; got < max_bytes;) {
        ssize_t r = read(j->err_io.fd, buf, sizeof(buf));
        if (r > 0) {
            err_add(j, buf, (size_t)r);
            got += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 && errno == EAGAIN ? RD_MORE : RD_EOF;
    }
    return RD_MORE;
}

static void fail_overflow(struct ipt_job *j)
{
    ka_err e;
    ka_fail(&e, KA_RESOURCE_EXHAUSTED, "%s: output exceeds %zu bytes", j->argv[0], IPT_OUT_MAX);
    finish(j, &e);
}

static void on_out(struct loop_io *io, uint32_t revents)
{
    struct ipt_job *j = container_of(io, struct ipt_job, out_io);
    (void)revents;
    enum rd r = read_out(j, READS_PER_WAKE);
    if (r == RD_OVERFLOW)
        fail_overflow(j);
    else if (r == RD_EOF)
        io_close(j->l, &j->out_io);
}

static void on_err(struct loop_io *io, uint32_t revents)
{
    struct ipt_job *j = container_of(io, struct ipt_job, err_io);
    (void)revents;
    if (read_err(j, READS_PER_WAKE * sizeof(j->err)) == RD_EOF)
        io_close(j->l, &j->err_io);
}

/* ---- input ---- */

static void on_in(struct loop_io *io, uint32_t revents)
{
    struct ipt_job *j = container_of(io, struct ipt_job, in_io);
    (void)revents;
    while (j->in_off < j->in_len) {
        ssize_t n = write(io->fd, j->in + j->in_off, j->in_len - j->in_off); /* SIGPIPE is ignored */
        if (n > 0) {
            j->in_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return;
        } else {
            /* EPIPE: the program stopped reading; its exit status tells why */
            log_debug(SUB, "%s: stdin closed after %zu of %zu bytes", j->argv[0], j->in_off, j->in_len);
            break;
        }
    }
    io_close(j->l, io); /* EOF for the program */
    loop_timer_stop(j->l, &j->stdin_timer);
}

/* ---- timers ---- */

static void on_stdin_timeout(struct loop_timer *t)
{
    struct ipt_job *j = container_of(t, struct ipt_job, stdin_timer);
    ka_err e;
    if (j->in_io.fd < 0)
        return;
    ka_fail(&e, KA_INTERNAL,
            "timeout waiting for stdin writer to complete (%s read %zu of %zu bytes in %d s)", j->argv[0],
            j->in_off, j->in_len, IPT_STDIN_TIMEOUT_S);
    finish(j, &e);
}

static void on_run_timeout(struct loop_timer *t)
{
    struct ipt_job *j = container_of(t, struct ipt_job, run_timer);
    ka_err e;
    ka_fail(&e, KA_DEADLINE_EXCEEDED, "%s did not finish within %d s: killed", j->argv[0], IPT_RUN_TIMEOUT_S);
    finish(j, &e);
}

/* ---- exit ---- */

static void on_exited(struct loop_child *c, int status)
{
    struct ipt_job *j = container_of(c, struct ipt_job, child);
    ka_err e;
    char text[ERR_TAIL * 2 + 8];
    j->running = false;
    /* everything it wrote is in the pipes now (a grandchild keeping them open is not waited for) */
    if (j->out_io.fd >= 0 && read_out(j, 0) == RD_OVERFLOW) {
        fail_overflow(j);
        return;
    }
    if (j->err_io.fd >= 0)
        read_err(j, ERR_DRAIN_MAX);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        finish(j, NULL);
        return;
    }
    err_text(j, text, sizeof(text));
    if (WIFSIGNALED(status))
        ka_fail(&e, KA_INTERNAL, "%s failed (killed by signal %d)%s%s", j->argv[0], WTERMSIG(status),
                *text ? ": " : "", text);
    else
        ka_fail(&e, KA_INTERNAL, "%s failed (exit status %d)%s%s", j->argv[0], WEXITSTATUS(status),
                *text ? ": " : "", text);
    finish(j, &e);
}

/* ---- spawning ---- */

static void child_exec(char *const argv[], int in_r, int out_w, int err_w)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* the loop blocks signals for its signalfd */
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
            signal(sig, SIG_DFL); /* SIGPIPE is ignored by the agent */
    }
    setpgid(0, 0);
    in_r = fcntl(in_r, F_DUPFD_CLOEXEC, 3);
    out_w = fcntl(out_w, F_DUPFD_CLOEXEC, 3);
    err_w = fcntl(err_w, F_DUPFD_CLOEXEC, 3);
    if (in_r < 0 || out_w < 0 || err_w < 0 || dup2(in_r, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
        _exit(126);
    close_range(3, ~0U, 0);
    static char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL};
    execve(argv[0], argv, envp);
    dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static void close_pair(int p[2])
{
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    p[0] = p[1] = -1;
}

/* in[1], out[0], err[0] non-blocking; stdin is /dev/null (in[0] only) when there is nothing to feed. */
static int open_pipes(bool feed, int in[2], int out[2], int err[2], ka_err *e)
{
    in[0] = in[1] = out[0] = out[1] = err[0] = err[1] = -1;
    if (feed ? pipe2(in, O_CLOEXEC) < 0 : (in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        return ka_fail_errno(e, errno, "stdin for iptables");
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        int er = errno;
        close_pair(in);
        close_pair(out);
        return ka_fail_errno(e, er, "pipe");
    }
    if (in[1] >= 0)
        fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    return 0;
}

static int watch(struct ipt_job *j, struct loop_io *io, int fd, uint32_t events,
                 void (*cb)(struct loop_io *io, uint32_t revents), ka_err *e)
{
    io->fd = fd;
    io->events = events;
    io->cb = cb;
    if (loop_io_add(j->l, io, e) < 0) {
        close(fd);
        io->fd = -1;
        return -1;
    }
    return 0;
}

static int spawn(struct ipt_job *j, ka_err *e)
{
    int in[2], out[2], err[2];
    if (open_pipes(j->in_len > 0, in, out, err, e) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0)
        child_exec(j->argv, in[0], out[1], err[1]);
    int fork_errno = errno;
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (pid < 0) {
        if (in[1] >= 0)
            close(in[1]);
        close(out[0]);
        close(err[0]);
        return ka_fail_errno(e, fork_errno, "fork %s", j->argv[0]);
    }
    setpgid(pid, pid);
    j->child.pid = pid;
    j->child.exited = on_exited;
    loop_child_watch(j->l, &j->child);
    j->running = true;
    log_debug(SUB, "%s started (pid %d, %zu bytes of input)", j->argv[0], (int)pid, j->in_len);
    int rc = watch(j, &j->out_io, out[0], EPOLLIN, on_out, e);
    rc = rc < 0 ? (close(err[0]), -1) : watch(j, &j->err_io, err[0], EPOLLIN, on_err, e);
    if (in[1] >= 0)
        rc = rc < 0 ? (close(in[1]), -1) : watch(j, &j->in_io, in[1], EPOLLOUT, on_in, e);
    return rc;
}

struct ipt_job *ipt_run_async(struct loop *l, char *const argv[], const uint8_t *in, size_t in_len,
                              ipt_done_cb done, void *arg, ka_err *e)
{
    struct ipt_job *j = calloc(1, sizeof(*j));
    if (!j) {
        ka_fail_errno(e, ENOMEM, "iptables job");
        return NULL;
    }
    j->l = l;
    j->done = done;
    j->arg = arg;
    j->in_io.fd = j->out_io.fd = j->err_io.fd = -1;
    loop_timer_init(&j->stdin_timer, on_stdin_timeout);
    loop_timer_init(&j->run_timer, on_run_timeout);
    j->argv = argv_dup(argv);
    if (in && in_len && (j->in = malloc(in_len)))
        memcpy(j->in, in, in_len);
    if (!j->argv || (in && in_len && !j->in)) {
        ka_fail_errno(e, ENOMEM, "iptables job");
        job_free(j);
        return NULL;
    }
    j->in_len = j->in ? in_len : 0;
    if (spawn(j, e) < 0) {
        job_free(j);
        return NULL;
    }
    if (j->in_len)
        loop_timer_start(l, &j->stdin_timer, (uint64_t)IPT_STDIN_TIMEOUT_S * 1000000000ull);
    loop_timer_start(l, &j->run_timer, (uint64_t)IPT_RUN_TIMEOUT_S * 1000000000ull);
    return j;
}

void ipt_cancel(struct ipt_job *j)
{
    if (j)
        job_free(j);
}

/* ---- iptables ---- */

int ipt_binary(bool ipv6, bool restore, char *out, size_t outsz, ka_err *e)
{
    static const char *const dirs[] = {"/usr/sbin", "/sbin"};
    char name[32];
    snprintf(name, sizeof(name), "%s-%s", ipv6 ? "ip6tables" : "iptables", restore ? "restore" : "save");
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        snprintf(out, outsz, "%s/%s", dirs[i], name);
        if (access(out, X_OK) == 0)
            return 0;
    }
    return ka_fail(e, KA_INTERNAL, "%s not found in /usr/sbin or /sbin", name);
}

struct ipt_job *ipt_save_async(struct loop *l, bool ipv6, ipt_done_cb done, void *arg, ka_err *e)
{
    char path[64];
    if (ipt_binary(ipv6, false, path, sizeof(path), e) < 0)
        return NULL;
    char *const argv[] = {path, NULL};
    return ipt_run_async(l, argv, NULL, 0, done, arg, e);
}

struct ipt_job *ipt_restore_async(struct loop *l, bool ipv6, const uint8_t *data, size_t len,
                                  ipt_done_cb done, void *arg, ka_err *e)
{
    char path[64], flag[] = "--wait", secs[] = "5";
    if (ipt_binary(ipv6, true, path, sizeof(path), e) < 0)
        return NULL;
    char *const argv[] = {path, flag, secs, NULL};
    return ipt_run_async(l, argv, data, len, done, arg, e);
}
