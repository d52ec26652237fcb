/* OCI hooks: fork/exec with the state JSON on stdin, output tail capture and timeouts; async and sync
 * runners. */
#include "hooks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../util/buf.h"
#include "../util/cleanup.h"
#include "../util/log.h"

#define HOOK_DEFAULT_TIMEOUT_S 10
#define HOOK_MAX_TIMEOUT_S     (365LL * 24 * 3600)
#define HOOK_TAIL_MAX          4096
#define HOOK_LOG_TAIL          1536 /* output logged (a log record is 4 KiB, escaping may double it) */
#define HOOK_READ_ROUNDS       16   /* reads of 4 KiB per wake-up, so a chatty hook cannot starve the loop */
#define HOOK_FINAL_ROUNDS      256  /* after exit: up to 1 MiB, the default pipe-max-size */
#define HOOK_EXEC_FD           3    /* in the child: CLOEXEC pipe that reports an execve failure */
#define SYNC_POLL_MS           20   /* sync runner without a pidfd: waitpid polling period */
#define NS_PER_S               1000000000ull

/* ---- JSON ---- */

/* Length of the valid UTF-8 sequence at p (1 for ASCII), 0 when the byte starts no valid sequence. */
static size_t utf8_seq_len(const unsigned char *p, size_t left)
{
    unsigned char c = p[0];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
        n = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

struct jw {
    struct kbuf b;
    bool oom;
};

static void jw_put(struct jw *w, const void *p, size_t n)
{
    if (!w->oom && kbuf_append(&w->b, p, n) < 0)
        w->oom = true;
}

static void jw_lit(struct jw *w, const char *s)
{
    jw_put(w, s, strlen(s));
}

static void jw_ctl(struct jw *w, unsigned char c)
{
    static const char short_esc[] = {['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
    char esc[8];
    if (c < sizeof(short_esc) && short_esc[c]) {
        esc[0] = '\\';
        esc[1] = short_esc[c];
        jw_put(w, esc, 2);
        return;
    }
    snprintf(esc, sizeof(esc), "\\u%04x", c);
    jw_put(w, esc, 6);
}

/* A JSON string; invalid UTF-8 bytes become U+FFFD. */
static void jw_str(struct jw *w, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t left = strlen((const char *)p);
    jw_put(w, "\"", 1);
    while (left) {
        size_t n = utf8_seq_len(p, left);
        if (n == 0) {
            jw_lit(w, "\\ufffd");
            n = 1;
        } else if (*p == '"' || *p == '\\') {
            jw_put(w, "\\", 1);
            jw_put(w, p, 1);
        } else if (*p < 0x20) {
            jw_ctl(w, *p);
        } else {
            jw_put(w, p, n);
        }
        p += n;
        left -= n;
    }
    jw_put(w, "\"", 1);
}

static void jw_field(struct jw *w, const char *key, const char *val, bool first)
{
    if (!first)
        jw_put(w, ",", 1);
    jw_str(w, key);
    jw_put(w, ":", 1);
    jw_str(w, val);
}

char *hooks_state_json(const char *oci_version, const char *id, const char *status, pid_t pid,
                       const char *bundle, Grpc__Spec__AnnotationsEntry *const *annotations,
                       size_t n_annotations)
{
    struct jw w = {0};
    char num[32];
    jw_put(&w, "{", 1);
    jw_field(&w, "ociVersion", oci_version, true);
    jw_field(&w, "id", id, false);
    jw_field(&w, "status", status, false);
    snprintf(num, sizeof(num), ",\"pid\":%d", (int)pid);
    jw_lit(&w, num);
    jw_field(&w, "bundle", bundle, false);
    jw_lit(&w, ",\"annotations\":{");
    for (size_t i = 0, k = 0; i < n_annotations; i++)
        if (annotations[i])
            jw_field(&w, annotations[i]->key, annotations[i]->value, k++ == 0);
    jw_put(&w, "}}", 3); /* with the NUL */
    if (w.oom) {
        kbuf_free(&w.b);
        return NULL;
    }
    return (char *)w.b.data;
}

/* ---- commands: what to exec, prepared before fork ---- */

struct hook_cmd {
    char *path;
    char **argv;
    char **envp;
    unsigned timeout_s;
};

static void strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

static char **strv_copy(char *const *src, size_t n)
{
    char **v = calloc(n + 1, sizeof(*v));
    for (size_t i = 0; v && i < n; i++) {
        v[i] = strdup(src[i] ? src[i] : "");
        if (!v[i]) {
            strv_free(v);
            return NULL;
        }
    }
    return v;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void trim(const char **s, size_t *n)
{
    while (*n && is_space(**s))
        (*s)++, (*n)--;
    while (*n && is_space((*s)[*n - 1]))
        (*n)--;
}

/* "key=value" with key and value trimmed; NULL with *invalid for an entry without '=' or key. */
static char *env_entry(const char *s, bool *invalid)
{
    const char *eq = strchr(s, '=');
    *invalid = true;
    if (!eq)
        return NULL;
    const char *k = s, *v = eq + 1;
    size_t kn = (size_t)(eq - s), vn = strlen(v);
    trim(&k, &kn);
    trim(&v, &vn);
    if (!kn)
        return NULL;
    *invalid = false;
    char *out = NULL;
    if (asprintf(&out, "%.*s=%.*s", (int)kn, k, (int)vn, v) < 0)
        return NULL;
    return out;
}

/* Put entry into the NULL-terminated env of *n entries; a later entry replaces one with the same key. */
static void env_put(char **env, size_t *n, char *entry)
{
    size_t klen = (size_t)(strchr(entry, '=') - entry) + 1;
    for (size_t i = 0; i < *n; i++) {
        if (strncmp(env[i], entry, klen) == 0) {
            free(env[i]);
            env[i] = entry;
            return;
        }
    }
    env[(*n)++] = entry;
}

static char **env_build(char *const *src, size_t n_src)
{
    char **env = calloc(n_src + 1, sizeof(*env));
    size_t n = 0;
    for (size_t i = 0; env && i < n_src; i++) {
        bool invalid;
        char *entry = src[i] ? env_entry(src[i], &invalid) : NULL;
        if (entry)
            env_put(env, &n, entry);
        else if (src[i] && !invalid) {
            strv_free(env);
            return NULL;
        }
    }
    return env;
}

static void hook_cmd_free(struct hook_cmd *c)
{
    free(c->path);
    strv_free(c->argv);
    strv_free(c->envp);
    memset(c, 0, sizeof(*c));
}

static int hook_cmd_build(struct hook_cmd *c, const Grpc__Hook *h, ka_err *e)
{
    char *path_only[1] = {h->path};
    memset(c, 0, sizeof(*c));
    c->path = strdup(h->path ? h->path : "");
    c->argv = h->n_args ? strv_copy(h->args, h->n_args) : strv_copy(path_only, 1);
    c->envp = env_build(h->env, h->n_env);
    if (h->timeout > 0)
        c->timeout_s = (unsigned)(h->timeout < HOOK_MAX_TIMEOUT_S ? h->timeout : HOOK_MAX_TIMEOUT_S);
    else
        c->timeout_s = HOOK_DEFAULT_TIMEOUT_S;
    if (c->path && c->argv && c->envp)
        return 0;
    hook_cmd_free(c);
    return ka_fail_errno(e, ENOMEM, "hook %s", h->path ? h->path : "");
}

/* ---- the child ---- */

static void child_reset_signals(void)
{
    struct sigaction sa = {.sa_handler = SIG_DFL};
    sigset_t none;
    sigemptyset(&sa.sa_mask);
    for (int s = 1; s < NSIG; s++)
        sigaction(s, &sa, NULL); /* KILL, STOP and libc-reserved ones fail: fine */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void child_close_from(unsigned first)
{
    if (syscall(SYS_close_range, first, ~0U, 0) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = first; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
        close((int)fd);
}

/* stdin = in, stdout = stderr = out, HOOK_EXEC_FD = ex (CLOEXEC), nothing else. */
static int child_fds(int in, int out, int ex)
{
    /* above stdio first, so that dup2 onto 0-2 never clobbers a source */
    int hin = fcntl(in, F_DUPFD_CLOEXEC, 3), hout = fcntl(out, F_DUPFD_CLOEXEC, 3);
    int hex = fcntl(ex, F_DUPFD_CLOEXEC, 3);
    if (hin < 0 || hout < 0 || hex < 0)
        return -1;
    if (dup2(hin, 0) < 0 || dup2(hout, 1) < 0 || dup2(hout, 2) < 0)
        return -1;
    if (hex != HOOK_EXEC_FD && dup3(hex, HOOK_EXEC_FD, O_CLOEXEC) < 0)
        return -1;
    child_close_from(HOOK_EXEC_FD + 1);
    return 0;
}

static void __attribute__((noreturn)) child_exec(const struct hook_cmd *c, int in, int out, int ex)
{
    setpgid(0, 0); /* its own group: a timeout kills the hook and everything it started */
    child_reset_signals();
    int rc = child_fds(in, out, ex);
    if (rc == 0)
        execve(c->path, c->argv, c->envp);
    int err = errno;
    (void)!write(rc == 0 ? HOOK_EXEC_FD : ex, &err, sizeof(err));
    _exit(127);
}

/* ---- a running hook process (shared by both runners) ---- */

struct hook_proc {
    pid_t pid; /* 0 once reaped */
    int in_fd, out_fd, exec_fd;
    const char *state;
    size_t state_len, state_off;
    bool timed_out;
    size_t out_total; /* output bytes seen; the last HOOK_TAIL_MAX are in tail (a ring) */
    char tail[HOOK_TAIL_MAX];
};

static void proc_init(struct hook_proc *p, const char *state, size_t state_len)
{
    p->pid = 0;
    p->in_fd = p->out_fd = p->exec_fd = -1;
    p->state = state;
    p->state_len = state_len;
    p->state_off = 0;
    p->timed_out = false;
    p->out_total = 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void proc_close(struct hook_proc *p)
{
    close_fd(&p->in_fd);
    close_fd(&p->out_fd);
    close_fd(&p->exec_fd);
}

static void proc_kill(struct hook_proc *p)
{
    if (p->pid <= 0)
        return;
    kill(-p->pid, SIGKILL);
    kill(p->pid, SIGKILL); /* in case it has not reached setpgid yet */
}

static void close_pair(int fds[2])
{
    close_fd(&fds[0]);
    close_fd(&fds[1]);
}

static int make_pipes(int in[2], int out[2], int ex[2])
{
    if (pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0 && pipe2(ex, O_CLOEXEC) == 0)
        return 0;
    int err = errno;
    close_pair(in);
    close_pair(out);
    close_pair(ex);
    errno = err;
    return -1;
}

static int proc_spawn(struct hook_proc *p, const struct hook_cmd *c, ka_err *e)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, ex[2] = {-1, -1};
    if (c->path[0] != '/')
        return ka_fail(e, KA_INVALID_ARGUMENT, "hook %s: path is not absolute", c->path);
    if (make_pipes(in, out, ex) < 0)
        return ka_fail_errno(e, errno, "hook %s: pipe", c->path);
    pid_t pid = fork();
    if (pid == 0)
        child_exec(c, in[0], out[1], ex[1]);
    int err = errno;
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&ex[1]);
    if (pid < 0) {
        close_pair(in);
        close_pair(out);
        close_pair(ex);
        return ka_fail_errno(e, err, "hook %s: fork", c->path);
    }
    setpgid(pid, pid); /* also done by the child; whichever comes first (EACCES after exec is fine) */
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(ex[0], F_SETFL, O_NONBLOCK);
    p->pid = pid;
    p->in_fd = in[1];
    p->out_fd = out[0];
    p->exec_fd = ex[0];
    log_debug("hooks", "hook %s started as pid %d", c->path, (int)pid);
    return 0;
}

/* write() that cannot raise SIGPIPE, whatever the process' disposition of it. */
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

/* Feed the state to the hook's stdin. True when finished: all written, or the hook does not read (EPIPE). */
static bool proc_feed(struct hook_proc *p)
{
    while (p->state_off < p->state_len) {
        ssize_t n = write_nosigpipe(p->in_fd, p->state + p->state_off, p->state_len - p->state_off);
        if (n > 0)
            p->state_off += (size_t)n;
        else if (n < 0 && errno == EAGAIN)
            return false;
        else if (!(n < 0 && errno == EINTR))
            return true;
    }
    return true;
}

static void tail_add(struct hook_proc *p, const char *d, size_t n)
{
    if (n > HOOK_TAIL_MAX) {
        p->out_total += n - HOOK_TAIL_MAX;
        d += n - HOOK_TAIL_MAX;
        n = HOOK_TAIL_MAX;
    }
    size_t pos = p->out_total % HOOK_TAIL_MAX;
    size_t first = n < HOOK_TAIL_MAX - pos ? n : HOOK_TAIL_MAX - pos;
    memcpy(p->tail + pos, d, first);
    memcpy(p->tail, d + first, n - first);
    p->out_total += n;
}

/* Read up to rounds chunks of the hook's output into the tail. True at EOF or error (the fd can be closed).
 */
static bool proc_drain(struct hook_proc *p, int rounds)
{
    char buf[4096];
    while (rounds > 0) {
        ssize_t n = read(p->out_fd, buf, sizeof(buf));
        if (n > 0) {
            tail_add(p, buf, (size_t)n);
            rounds--;
        } else if (!(n < 0 && errno == EINTR)) {
            return !(n < 0 && errno == EAGAIN);
        }
    }
    return false;
}

static size_t tail_copy(const struct hook_proc *p, char *raw)
{
    if (p->out_total <= HOOK_TAIL_MAX) {
        memcpy(raw, p->tail, p->out_total);
        return p->out_total;
    }
    size_t pos = p->out_total % HOOK_TAIL_MAX;
    memcpy(raw, p->tail + pos, HOOK_TAIL_MAX - pos);
    memcpy(raw + HOOK_TAIL_MAX - pos, p->tail, pos);
    return HOOK_TAIL_MAX;
}

/* The end of the output as text (at most outsz - 1 bytes): trimmed, valid UTF-8, controls as '?'. */
static void tail_text(const struct hook_proc *p, char *out, size_t outsz)
{
    char raw[HOOK_TAIL_MAX];
    size_t len = tail_copy(p, raw), o = 0;
    size_t start = len > outsz - 1 ? len - (outsz - 1) : 0;
    while (start < len && (((unsigned char)raw[start] & 0xc0) == 0x80 || is_space(raw[start])))
        start++;
    while (len > start && is_space(raw[len - 1]))
        len--;
    for (size_t i = start; i < len;) {
        unsigned char c = (unsigned char)raw[i];
        size_t n = utf8_seq_len((const unsigned char *)raw + i, len - i);
        if (n == 0 || (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
            out[o++] = '?', n = 1;
        else
            memcpy(out + o, raw + i, n), o += n;
        i += n;
    }
    out[o] = '\0';
}

static int proc_exec_errno(struct hook_proc *p)
{
    int err = 0;
    if (p->exec_fd >= 0 && read(p->exec_fd, &err, sizeof(err)) != (ssize_t)sizeof(err))
        err = 0;
    return err;
}

static void describe_status(const struct hook_proc *p, const struct hook_cmd *c, int status, char *buf,
                            size_t n)
{
    if (p->timed_out)
        snprintf(buf, n, "killed after %u s timeout", c->timeout_s);
    else if (WIFEXITED(status))
        snprintf(buf, n, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(buf, n, "wait status %#x", (unsigned)status);
}

/* After the hook was reaped: 0 for success, else -1 with e = "hook <path>: <what>[: <output tail>]". */
static int proc_result(struct hook_proc *p, const struct hook_cmd *c, int status, ka_err *e)
{
    char what[96], text[HOOK_LOG_TAIL];
    /* what it wrote before exiting is in the pipe (at most pipe-max-size); no waiting for descendants */
    if (p->out_fd >= 0)
        proc_drain(p, HOOK_FINAL_ROUNDS);
    tail_text(p, text, sizeof(text)); /* what fits in one log record, escaped */
    if (text[0])
        log_debug("hooks", "hook %s output: %s", c->path, text);
    int err = proc_exec_errno(p);
    if (err) {
        ka_fail_errno(e, err, "hook %s: exec", c->path);
        e->status = err == ENOENT ? KA_NOT_FOUND : KA_INTERNAL;
        return -1;
    }
    if (!p->timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    describe_status(p, c, status, what, sizeof(what));
    ka_fail(e, p->timed_out ? KA_DEADLINE_EXCEEDED : KA_INTERNAL, "hook %s: %s", c->path, what);
    size_t used = strlen(e->msg);
    if (text[0] && used + 3 < sizeof(e->msg)) {
        tail_text(p, text, sizeof(e->msg) - used - 2);
        memcpy(e->msg + used, ": ", 2);
        memcpy(e->msg + used + 2, text, strlen(text) + 1); /* fits: tail_text was given the room */
    }
    return -1;
}

static uint64_t timeout_ns(const struct hook_cmd *c)
{
    return (uint64_t)c->timeout_s * NS_PER_S;
}

/* ---- asynchronous runner ---- */

struct hooks_run {
    struct loop *l;
    struct hook_cmd *cmds;
    size_t n, cur;
    char *state;
    void (*done)(void *arg, const ka_err *err);
    void *arg;
    struct hook_proc proc;
    struct loop_child child;
    struct loop_io in_io, out_io;
    struct loop_timer timer;
    struct loop_defer finish;
    bool failed;
    ka_err err;
};

static void run_close_in(struct hooks_run *r)
{
    if (r->in_io.fd >= 0)
        loop_io_del(r->l, &r->in_io);
    r->in_io.fd = -1;
    close_fd(&r->proc.in_fd);
}

static void run_close_out(struct hooks_run *r)
{
    if (r->out_io.fd >= 0)
        loop_io_del(r->l, &r->out_io);
    r->out_io.fd = -1;
    close_fd(&r->proc.out_fd);
}

/* Stop watching the current hook's fds and timer and close everything. */
static void run_release_proc(struct hooks_run *r)
{
    run_close_in(r);
    run_close_out(r);
    loop_timer_stop(r->l, &r->timer);
    proc_close(&r->proc);
}

static void run_free(struct hooks_run *r)
{
    run_release_proc(r);
    loop_defer_cancel(&r->finish);
    for (size_t i = 0; i < r->n; i++)
        hook_cmd_free(&r->cmds[i]);
    free(r->cmds);
    free(r->state);
    free(r);
}

static void run_finish(struct hooks_run *r, bool failed)
{
    r->failed = failed;
    loop_defer(r->l, &r->finish);
}

static void on_finish(struct loop_defer *d)
{
    struct hooks_run *r = container_of(d, struct hooks_run, finish);
    void (*done)(void *, const ka_err *) = r->done;
    void *arg = r->arg;
    bool failed = r->failed;
    ka_err err = r->err;
    run_free(r);
    if (done)
        done(arg, failed ? &err : NULL);
}

static void on_stdin(struct loop_io *io, uint32_t revents)
{
    (void)revents;
    struct hooks_run *r = container_of(io, struct hooks_run, in_io);
    if (proc_feed(&r->proc))
        run_close_in(r);
}

static void on_output(struct loop_io *io, uint32_t revents)
{
    (void)revents;
    struct hooks_run *r = container_of(io, struct hooks_run, out_io);
    if (proc_drain(&r->proc, HOOK_READ_ROUNDS))
        run_close_out(r);
}

static void on_timeout(struct loop_timer *t)
{
    struct hooks_run *r = container_of(t, struct hooks_run, timer);
    log_warn("hooks", "hook %s: timeout after %u s, killing pid %d", r->cmds[r->cur].path,
             r->cmds[r->cur].timeout_s, (int)r->proc.pid);
    r->proc.timed_out = true;
    proc_kill(&r->proc);
}

/* Register fd with the loop; if that fails, close it (the hook sees EOF / EPIPE) rather than block. */
static void run_watch_fd(struct hooks_run *r, struct loop_io *io, int *fd, uint32_t events)
{
    ka_err e;
    io->fd = *fd;
    io->events = events;
    if (loop_io_add(r->l, io, &e) == 0)
        return;
    log_warn("hooks", "hook %s: %s", r->cmds[r->cur].path, e.msg);
    io->fd = -1;
    close_fd(fd);
}

static void run_next(struct hooks_run *r);

static void on_hook_exit(struct loop_child *c, int status)
{
    struct hooks_run *r = container_of(c, struct hooks_run, child);
    r->proc.pid = 0;
    loop_timer_stop(r->l, &r->timer);
    run_close_in(r);
    int rc = proc_result(&r->proc, &r->cmds[r->cur], status, &r->err);
    run_release_proc(r);
    if (rc < 0) {
        run_finish(r, true);
        return;
    }
    r->cur++;
    run_next(r);
}

/* Start hook r->cur, or finish when there is none left. */
static void run_next(struct hooks_run *r)
{
    if (r->cur == r->n) {
        run_finish(r, false);
        return;
    }
    const struct hook_cmd *c = &r->cmds[r->cur];
    proc_init(&r->proc, r->state, strlen(r->state));
    if (proc_spawn(&r->proc, c, &r->err) < 0) {
        run_finish(r, true);
        return;
    }
    r->child.pid = r->proc.pid;
    loop_child_watch(r->l, &r->child);
    loop_timer_start(r->l, &r->timer, timeout_ns(c));
    run_watch_fd(r, &r->in_io, &r->proc.in_fd, EPOLLOUT);
    run_watch_fd(r, &r->out_io, &r->proc.out_fd, EPOLLIN);
}

static struct hooks_run *run_alloc(const struct hook_list *list, const char *state_json, ka_err *e)
{
    struct hooks_run *r = calloc(1, sizeof(*r));
    if (!r || !(r->state = strdup(state_json ? state_json : ""))) {
        free(r);
        ka_fail_errno(e, ENOMEM, "hooks");
        return NULL;
    }
    proc_init(&r->proc, r->state, 0);
    r->in_io = (struct loop_io){.fd = -1, .cb = on_stdin};
    r->out_io = (struct loop_io){.fd = -1, .cb = on_output};
    r->child.exited = on_hook_exit;
    list_init(&r->child.link);
    loop_timer_init(&r->timer, on_timeout);
    loop_defer_init(&r->finish, on_finish);
    size_t n = list ? list->n : 0;
    r->cmds = calloc(n ? n : 1, sizeof(*r->cmds));
    if (!r->cmds) {
        run_free(r);
        ka_fail_errno(e, ENOMEM, "hooks");
        return NULL;
    }
    for (; r->n < n; r->n++) {
        if (hook_cmd_build(&r->cmds[r->n], list->hooks[r->n], e) < 0) {
            run_free(r);
            return NULL;
        }
    }
    return r;
}

struct hooks_run *hooks_run_async(struct loop *l, const struct hook_list *list, const char *state_json,
                                  void (*done)(void *arg, const ka_err *err), void *arg, ka_err *e)
{
    struct hooks_run *r = run_alloc(list, state_json, e);
    if (!r)
        return NULL;
    r->l = l;
    r->done = done;
    r->arg = arg;
    run_next(r);
    return r;
}

void hooks_run_cancel(struct hooks_run *r)
{
    if (!r)
        return;
    if (r->proc.pid > 0) {
        /* the loop still reaps it, as a child nobody watches */
        loop_child_unwatch(&r->child);
        proc_kill(&r->proc);
        log_debug("hooks", "hook %s cancelled", r->cmds[r->cur].path);
    }
    run_free(r);
}

/* ---- synchronous runner ---- */

static int poll_ms(uint64_t deadline, bool have_pidfd, bool timed_out)
{
    uint64_t now = loop_now_ns();
    if (timed_out || !have_pidfd)
        return SYNC_POLL_MS;
    uint64_t left = deadline > now ? deadline - now : 0;
    uint64_t ms = (left + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* One poll round over stdin, output and pidfd; feeds and drains. */
static void sync_poll(struct hook_proc *p, int pidfd, int ms)
{
    struct pollfd fds[3] = {
        {.fd = p->in_fd, .events = POLLOUT},
        {.fd = p->out_fd, .events = POLLIN},
        {.fd = pidfd, .events = POLLIN},
    };
    if (poll(fds, 3, ms) <= 0)
        return;
    if (fds[0].revents && proc_feed(p))
        close_fd(&p->in_fd);
    if (fds[1].revents && proc_drain(p, HOOK_READ_ROUNDS))
        close_fd(&p->out_fd);
}

/* Wait for the hook, feeding stdin and reading output; kill it at the deadline. */
static int sync_wait(struct hook_proc *p, const struct hook_cmd *c, int *status, ka_err *e)
{
    int pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0); /* -1 on old kernels: poll periodically */
    uint64_t deadline = loop_now_ns() + timeout_ns(c);
    for (;;) {
        pid_t w = waitpid(p->pid, status, WNOHANG);
        if (w == p->pid)
            break;
        if (w < 0 && errno != EINTR) { /* ECHILD: reaped elsewhere (SIGCHLD ignored?); do not kill a pid */
            int err = errno;
            p->pid = 0;
            close_fd(&pidfd);
            return ka_fail_errno(e, err, "hook %s: waitpid", c->path);
        }
        if (!p->timed_out && loop_now_ns() >= deadline) {
            p->timed_out = true;
            proc_kill(p);
        }
        sync_poll(p, pidfd, poll_ms(deadline, pidfd >= 0, p->timed_out));
    }
    p->pid = 0;
    close_fd(&pidfd);
    return 0;
}

static int sync_one(const Grpc__Hook *h, const char *state, size_t state_len, ka_err *e)
{
    struct hook_cmd c;
    struct hook_proc p;
    int status = 0, rc = -1;
    if (hook_cmd_build(&c, h, e) < 0)
        return -1;
    proc_init(&p, state, state_len);
    if (proc_spawn(&p, &c, e) == 0 && sync_wait(&p, &c, &status, e) == 0) {
        close_fd(&p.in_fd);
        rc = proc_result(&p, &c, status, e);
    }
    proc_close(&p);
    hook_cmd_free(&c);
    return rc;
}

int hooks_run_sync(const struct hook_list *list, const char *state_json, ka_err *e)
{
    const char *state = state_json ? state_json : "";
    for (size_t i = 0; list && i < list->n; i++)
        if (sync_one(list->hooks[i], state, strlen(state), e) < 0)
            return -1;
    return 0;
}

/* ---- guest hooks ---- */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_hook_file(int dfd, const char *name)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return false;
    return S_ISREG(st.st_mode) && (st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH));
}

static void names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Names of the hook files in d, unsorted. */
static int scan_names(DIR *d, char ***out, size_t *n_out)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((errno = 0, de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !is_hook_file(dirfd(d), de->d_name))
            continue;
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? cap * 2 : 8) * sizeof(*nn));
            if (!nn)
                goto fail;
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name)))
            goto fail;
        n++;
    }
    if (errno)
        goto fail;
    *out = names;
    *n_out = n;
    return 0;
fail:
    names_free(names, n);
    return -1;
}

static void hook_free(Grpc__Hook *h)
{
    if (!h)
        return;
    free(h->path);
    for (size_t i = 0; i < h->n_args; i++)
        free(h->args[i]);
    free(h->args);
    for (size_t i = 0; i < h->n_env; i++)
        free(h->env[i]);
    free(h->env);
    free(h);
}

static Grpc__Hook *guest_hook_new(const char *tdir, const char *name, const char *type)
{
    Grpc__Hook *h = malloc(sizeof(*h));
    if (!h)
        return NULL;
    grpc__hook__init(h);
    h->path = NULL;
    h->args = calloc(2, sizeof(*h->args));
    if (asprintf(&h->path, "%s/%s", tdir, name) < 0)
        h->path = NULL;
    if (h->args) {
        h->n_args = 2;
        h->args[0] = strdup(name);
        h->args[1] = strdup(type);
    }
    if (h->path && h->args && h->args[0] && h->args[1])
        return h;
    hook_free(h);
    return NULL;
}

static int build_guest_hooks(const char *tdir, const char *type, char **names, size_t n,
                             struct hook_list *out)
{
    out->hooks = calloc(n ? n : 1, sizeof(*out->hooks));
    if (!out->hooks)
        return -1;
    for (; out->n < n; out->n++)
        if (!(out->hooks[out->n] = guest_hook_new(tdir, names[out->n], type)))
            return -1;
    return 0;
}

int hooks_scan_guest(const char *dir, const char *type, struct hook_list *out, ka_err *e)
{
    char tdir[PATH_MAX];
    char **names = NULL;
    size_t n = 0;
    out->n = 0;
    out->hooks = NULL;
    if ((size_t)snprintf(tdir, sizeof(tdir), "%s/%s", dir, type) >= sizeof(tdir))
        return ka_fail(e, KA_INVALID_ARGUMENT, "hook directory %s/%s: name too long", dir, type);
    DIR *d = opendir(tdir);
    if (!d)
        return errno == ENOENT ? 0 : ka_fail_errno(e, errno, "hook directory %s", tdir);
    int rc = scan_names(d, &names, &n);
    int err = errno;
    closedir(d);
    if (rc < 0)
        return ka_fail_errno(e, err, "scan hook directory %s", tdir);
    qsort(names, n, sizeof(*names), cmp_names);
    rc = build_guest_hooks(tdir, type, names, n, out);
    names_free(names, n);
    if (rc == 0)
        return 0;
    hooks_list_free(out);
    return ka_fail_errno(e, ENOMEM, "hook directory %s", tdir);
}

void hooks_list_free(struct hook_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        hook_free(l->hooks[i]);
    free(l->hooks);
    l->hooks = NULL;
    l->n = 0;
}
