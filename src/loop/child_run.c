/* Helper programs as children of the event loop: spawning, stdin feeding, output tails, timeout, reaping.
 * See child_run.h. */
#include "child_run.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../util/cleanup.h"

#define EXEC_FD     3     /* in the child: CLOEXEC pipe that reports a failed execve */
#define CHUNK       4096  /* one read into a tail */
#define WHOLE_CHUNK 65536 /* one read into out.all */
#define FINAL_READS 256   /* into a tail after the exit: up to 1 MiB, the default pipe-max-size */

/* ---- the child ---- */

void child_reset_signals(void)
{
    struct sigaction sa = {.sa_handler = SIG_DFL};
    sigset_t none;
    sigemptyset(&sa.sa_mask);
    for (int s = 1; s < NSIG; s++)
        sigaction(s, &sa, NULL); /* KILL, STOP and libc-reserved ones fail: fine */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* the loop blocks signals for its signalfd */
}

void child_close_from(unsigned first)
{
    if (syscall(SYS_close_range, first, ~0U, 0) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = first; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
        close((int)fd);
}

/* stdin = in (/dev/null when -1), stdout = out, stderr = err, EXEC_FD = ex (CLOEXEC), nothing else. */
static int child_fds(int in, int out, int err, int ex)
{
    if (in < 0 && (in = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        return -1;
    /* above stdio first, so that dup2 onto 0-2 never clobbers a source */
    int hin = fcntl(in, F_DUPFD_CLOEXEC, 3), hout = fcntl(out, F_DUPFD_CLOEXEC, 3);
    int herr = fcntl(err, F_DUPFD_CLOEXEC, 3), hex = fcntl(ex, F_DUPFD_CLOEXEC, 3);
    if (hin < 0 || hout < 0 || herr < 0 || hex < 0)
        return -1;
    if (dup2(hin, 0) < 0 || dup2(hout, 1) < 0 || dup2(herr, 2) < 0)
        return -1;
    if (hex != EXEC_FD && dup3(hex, EXEC_FD, O_CLOEXEC) < 0)
        return -1;
    child_close_from(EXEC_FD + 1);
    return 0;
}

static void __attribute__((noreturn))
child_exec(const struct child_spec *s, const char *path, int in, int out, int err, int ex)
{
    setpgid(0, 0); /* its own group: a kill reaches whatever it started */
    child_reset_signals();
    if (child_fds(in, out, err, ex) < 0) {
        int er = errno;
        (void)!write(ex, &er, sizeof(er));
        _exit(126);
    }
    execve(path, s->argv, s->envp ? s->envp : environ);
    int er = errno;
    (void)!write(EXEC_FD, &er, sizeof(er));
    if (!s->quiet_exec_error)
        dprintf(2, "exec %s: %s\n", path, strerror(er));
    _exit(127);
}

/* ---- spawning ---- */

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void out_reset(struct child_out *o, size_t cap, size_t max)
{
    o->io.fd = -1;
    o->io.events = EPOLLIN;
    o->cap = cap < CHILD_TAIL_MAX ? cap : CHILD_TAIL_MAX;
    o->max = max;
    o->len = o->total = 0;
    o->overflow = false;
    o->all.off = o->all.len = 0;
}

/* pipes[0] stdin (only with input), [1] stdout, [2] stderr (unless merged), [3] exec report; all CLOEXEC. */
static int open_pipes(const struct child_spec *s, int p[4][2])
{
    for (int i = 0; i < 4; i++) {
        if ((i == 0 && !s->in) || (i == 2 && s->merge_err))
            continue;
        if (pipe2(p[i], O_CLOEXEC) < 0)
            return -1;
    }
    return 0;
}

static void close_pipes(int p[4][2])
{
    int err = errno;
    for (int i = 0; i < 4; i++) {
        close_fd(&p[i][0]);
        close_fd(&p[i][1]);
    }
    errno = err;
}

int child_spawn(struct child_run *r, const struct child_spec *s, ka_err *e)
{
    int p[4][2] = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
    const char *path = s->path ? s->path : s->argv[0];
    out_reset(&r->out, s->out_tail, s->out_max);
    out_reset(&r->err, s->err_tail, 0);
    r->timed_out = false;
    r->exec_errno = 0;
    r->in_data = s->in;
    r->in_len = s->in ? s->in_len : 0;
    r->in_off = 0;
    if (open_pipes(s, p) < 0) {
        close_pipes(p);
        return ka_fail_errno(e, errno, "pipe");
    }
    int err_w = s->merge_err ? p[1][1] : p[2][1];
    pid_t pid = fork();
    if (pid == 0)
        child_exec(s, path, p[0][0], p[1][1], err_w, p[3][1]);
    int fork_errno = errno;
    close_fd(&p[0][0]);
    close_fd(&p[1][1]);
    close_fd(&p[2][1]);
    close_fd(&p[3][1]);
    if (pid < 0) {
        close_pipes(p);
        return ka_fail_errno(e, fork_errno, "fork %s", path);
    }
    setpgid(pid, pid); /* also done by the child; whichever comes first (EACCES after exec is fine) */
    r->pid = pid;
    r->running = true;
    r->in.fd = p[0][1];
    r->out.io.fd = p[1][0];
    r->err.io.fd = p[2][0];
    r->exec_fd = p[3][0];
    int fds[] = {r->in.fd, r->out.io.fd, r->err.io.fd, r->exec_fd};
    for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
        if (fds[i] >= 0)
            fcntl(fds[i], F_SETFL, O_NONBLOCK);
    return 0;
}

/* ---- stdin and outputs ---- */

/* write() that cannot raise SIGPIPE, whatever the process' disposition of it (the container child's). */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t len)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    bool was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    sigprocmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t n = write(fd, buf, len);
    int err = errno;
    if (n < 0 && err == EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return n;
}

bool child_feed(struct child_run *r)
{
    while (r->in_off < r->in_len) {
        ssize_t n = write_nosigpipe(r->in.fd, r->in_data + r->in_off, r->in_len - r->in_off);
        if (n > 0)
            r->in_off += (size_t)n;
        else if (n < 0 && errno == EAGAIN)
            return false;
        else if (!(n < 0 && errno == EINTR))
            return true; /* EPIPE: the program stopped reading; its exit status tells why */
    }
    return true;
}

/* One read into o: its result, as read() returns it. */
static ssize_t read_once(struct child_out *o)
{
    char chunk[CHUNK];
    if (o->max) {
        uint8_t *p = kbuf_reserve(&o->all, WHOLE_CHUNK);
        if (!p) {
            o->overflow = true; /* out of memory: as good as too much */
            return 0;
        }
        ssize_t n = read(o->io.fd, p, WHOLE_CHUNK);
        if (n > 0) {
            o->all.len += (size_t)n;
            o->total += (size_t)n;
            o->overflow = o->all.len > o->max;
        }
        return n;
    }
    ssize_t n = read(o->io.fd, chunk, sizeof(chunk));
    if (n > 0) {
        tail_append(o->tail, o->cap, &o->len, chunk, (size_t)n);
        o->total += (size_t)n;
    }
    return n;
}

bool child_read(struct child_out *o, int max_reads)
{
    for (int i = 0; max_reads == 0 || i < max_reads;) {
        ssize_t n = read_once(o);
        if (o->overflow)
            return true;
        if (n > 0)
            i++;
        else if (!(n < 0 && errno == EINTR))
            return !(n < 0 && errno == EAGAIN);
    }
    return false;
}

void child_kill(struct child_run *r)
{
    if (!r->running)
        return;
    kill(-r->pid, SIGKILL);
    kill(r->pid, SIGKILL);
}

void child_close_io(struct child_run *r, struct loop_io *io)
{
    if (io->fd < 0)
        return;
    if (r->l)
        loop_io_del(r->l, io);
    close_fd(&io->fd);
}

void child_collect(struct child_run *r)
{
    struct child_out *outs[] = {&r->out, &r->err};
    int err = 0;
    child_close_io(r, &r->in);
    for (size_t i = 0; i < ARRAY_SIZE(outs); i++) {
        if (outs[i]->io.fd >= 0 && !outs[i]->overflow)
            child_read(outs[i], outs[i]->max ? 0 : FINAL_READS);
        child_close_io(r, &outs[i]->io);
    }
    if (r->exec_fd >= 0 && read(r->exec_fd, &err, sizeof(err)) == (ssize_t)sizeof(err))
        r->exec_errno = err;
    close_fd(&r->exec_fd);
}

/* ---- with the loop ---- */

static void on_in(struct loop_io *io, uint32_t revents)
{
    struct child_run *r = container_of(io, struct child_run, in);
    (void)revents;
    if (child_feed(r))
        child_close_io(r, io); /* EOF for the program */
}

static void on_output(struct child_run *r, struct child_out *o)
{
    if (!child_read(o, CHILD_READS_PER_WAKE))
        return;
    child_close_io(r, &o->io);
    if (o->overflow)
        child_kill(r); /* reaped as usual; done sees out.overflow */
}

static void on_out(struct loop_io *io, uint32_t revents)
{
    struct child_out *o = container_of(io, struct child_out, io);
    (void)revents;
    on_output(container_of(o, struct child_run, out), o);
}

static void on_err(struct loop_io *io, uint32_t revents)
{
    struct child_out *o = container_of(io, struct child_out, io);
    (void)revents;
    on_output(container_of(o, struct child_run, err), o);
}

static void on_timeout(struct loop_timer *t)
{
    struct child_run *r = container_of(t, struct child_run, timer);
    r->timed_out = true;
    child_kill(r); /* reaped as usual; done sees timed_out */
}

static void on_exited(struct loop_child *c, int status)
{
    struct child_run *r = container_of(c, struct child_run, child);
    r->running = false;
    loop_timer_stop(r->l, &r->timer);
    child_collect(r);
    r->done(r, status); /* last: it may free r or start the next program */
}

void child_run_init(struct child_run *r)
{
    memset(r, 0, sizeof(*r));
    r->in.fd = r->out.io.fd = r->err.io.fd = r->exec_fd = -1;
    r->in.events = EPOLLOUT;
    r->in.cb = on_in;
    r->out.io.cb = on_out;
    r->err.io.cb = on_err;
    list_init(&r->child.link);
    r->child.exited = on_exited;
    loop_timer_init(&r->timer, on_timeout);
}

/* Register io if open; if that fails, close it (child_run_cancel does the rest). */
static int watch(struct child_run *r, struct loop_io *io, ka_err *e)
{
    if (io->fd < 0 || loop_io_add(r->l, io, e) == 0)
        return 0;
    close_fd(&io->fd);
    return -1;
}

int child_run_start(struct loop *l, struct child_run *r, const struct child_spec *s,
                    void (*done)(struct child_run *r, int status), ka_err *e)
{
    r->l = l;
    r->done = done;
    if (child_spawn(r, s, e) < 0)
        return -1;
    r->child.pid = r->pid;
    loop_child_watch(l, &r->child);
    if (watch(r, &r->out.io, e) < 0 || watch(r, &r->err.io, e) < 0 || watch(r, &r->in, e) < 0) {
        child_run_cancel(r);
        return -1;
    }
    if (s->timeout_ns)
        loop_timer_start(l, &r->timer, s->timeout_ns);
    return 0;
}

void child_run_cancel(struct child_run *r)
{
    child_kill(r);
    if (r->running && r->l)
        loop_child_unwatch(&r->child); /* the loop still reaps it */
    r->running = false;
    if (r->l)
        loop_timer_stop(r->l, &r->timer);
    child_close_io(r, &r->in);
    child_close_io(r, &r->out.io);
    child_close_io(r, &r->err.io);
    close_fd(&r->exec_fd);
    kbuf_free(&r->out.all);
    kbuf_free(&r->err.all);
}
