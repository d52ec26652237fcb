/* OCI hooks: the state JSON, the command (args, env, timeout) of each hook, and the async and sync runners of
 * the hook processes (spawned by src/loop/child_run.c). */
#include "hooks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../loop/child_run.h"
#include "../util/buf.h"
#include "../util/cleanup.h"
#include "../util/jsonw.h"
#include "../util/log.h"

#define HOOK_DEFAULT_TIMEOUT_S 10
#define HOOK_MAX_TIMEOUT_S     (365LL * 24 * 3600)
#define HOOK_TAIL_MAX          CHILD_TAIL_MAX
#define HOOK_LOG_TAIL          1536 /* output logged (a log record is 4 KiB, escaping may double it) */
#define SYNC_POLL_MS           20   /* sync runner without a pidfd: waitpid polling period */
#define NS_PER_S               1000000000ull

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
    jw_put(&w, "}}", 2);
    return jw_finish(&w);
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

/* ---- a hook process (shared by both runners) ---- */

static uint64_t timeout_ns(const struct hook_cmd *c)
{
    return (uint64_t)c->timeout_s * NS_PER_S;
}

/* What to run for c: the state on stdin, stdout and stderr in one tail, an exec failure as an errno. */
static int hook_spec(const struct hook_cmd *c, const char *state, struct child_spec *s, ka_err *e)
{
    if (c->path[0] != '/')
        return ka_fail(e, KA_INVALID_ARGUMENT, "hook %s: path is not absolute", c->path);
    *s = (struct child_spec){.path = c->path,
                             .argv = c->argv,
                             .envp = c->envp,
                             .in = state,
                             .in_len = strlen(state),
                             .out_tail = HOOK_TAIL_MAX,
                             .merge_err = true,
                             .quiet_exec_error = true,
                             .timeout_ns = timeout_ns(c)};
    return 0;
}

/* The end of the output as text (at most outsz - 1 bytes): trimmed, valid UTF-8, controls as '?'. */
static void tail_text(const struct child_out *t, char *out, size_t outsz)
{
    const char *raw = t->tail;
    size_t len = t->len, o = 0;
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

static void describe_status(const struct child_run *p, const struct hook_cmd *c, int status, char *buf,
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

/* After the hook was reaped and collected: 0 for success, else -1 with e = "hook <path>: <what>[: <output
 * tail>]". */
static int hook_result(const struct child_run *p, const struct hook_cmd *c, int status, ka_err *e)
{
    char what[96], text[HOOK_LOG_TAIL];
    tail_text(&p->out, text, sizeof(text)); /* what fits in one log record, escaped */
    if (text[0])
        log_debug("hooks", "hook %s output: %s", c->path, text);
    if (p->exec_errno) {
        ka_fail_errno(e, p->exec_errno, "hook %s: exec", c->path);
        e->status = p->exec_errno == ENOENT ? KA_NOT_FOUND : KA_INTERNAL;
        return -1;
    }
    if (!p->timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    describe_status(p, c, status, what, sizeof(what));
    ka_fail(e, p->timed_out ? KA_DEADLINE_EXCEEDED : KA_INTERNAL, "hook %s: %s", c->path, what);
    size_t used = strlen(e->msg);
    if (text[0] && used + 3 < sizeof(e->msg)) {
        tail_text(&p->out, text, sizeof(e->msg) - used - 2);
        memcpy(e->msg + used, ": ", 2);
        memcpy(e->msg + used + 2, text, strlen(text) + 1); /* fits: tail_text was given the room */
    }
    return -1;
}

/* ---- asynchronous runner ---- */

struct hooks_run {
    struct loop *l;
    struct hook_cmd *cmds;
    size_t n, cur;
    char *state;
    void (*done)(void *arg, const ka_err *err);
    void *arg;
    struct child_run proc;
    struct loop_defer finish;
    bool failed;
    ka_err err;
};

static void run_free(struct hooks_run *r)
{
    child_run_cancel(&r->proc);
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

static void run_next(struct hooks_run *r);

static void on_hook_exit(struct child_run *p, int status)
{
    struct hooks_run *r = container_of(p, struct hooks_run, proc);
    const struct hook_cmd *c = &r->cmds[r->cur];
    if (p->timed_out)
        log_warn("hooks", "hook %s: timeout after %u s, killed pid %d", c->path, c->timeout_s, (int)p->pid);
    if (hook_result(p, c, status, &r->err) < 0) {
        run_finish(r, true);
        return;
    }
    r->cur++;
    run_next(r);
}

/* Start hook r->cur, or finish when there is none left. */
static void run_next(struct hooks_run *r)
{
    struct child_spec s;
    if (r->cur == r->n) {
        run_finish(r, false);
        return;
    }
    const struct hook_cmd *c = &r->cmds[r->cur];
    if (hook_spec(c, r->state, &s, &r->err) < 0) {
        run_finish(r, true);
        return;
    }
    if (child_run_start(r->l, &r->proc, &s, on_hook_exit, &r->err) < 0) {
        ka_wrap(&r->err, "hook %s", c->path);
        run_finish(r, true);
        return;
    }
    log_debug("hooks", "hook %s started as pid %d", c->path, (int)r->proc.pid);
}

static struct hooks_run *run_alloc(const struct hook_list *list, const char *state_json, ka_err *e)
{
    struct hooks_run *r = calloc(1, sizeof(*r));
    if (!r || !(r->state = strdup(state_json ? state_json : ""))) {
        free(r);
        ka_fail_errno(e, ENOMEM, "hooks");
        return NULL;
    }
    child_run_init(&r->proc);
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
    if (r->proc.running)
        log_debug("hooks", "hook %s cancelled", r->cmds[r->cur].path);
    run_free(r); /* kills it; the loop still reaps it, as a child nobody watches */
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
static void sync_poll(struct child_run *p, int pidfd, int ms)
{
    struct pollfd fds[3] = {
        {.fd = p->in.fd, .events = POLLOUT},
        {.fd = p->out.io.fd, .events = POLLIN},
        {.fd = pidfd, .events = POLLIN},
    };
    if (poll(fds, 3, ms) <= 0)
        return;
    if (fds[0].revents && child_feed(p))
        child_close_io(p, &p->in);
    if (fds[1].revents && child_read(&p->out, CHILD_READS_PER_WAKE))
        child_close_io(p, &p->out.io);
}

/* Wait for the hook, feeding stdin and reading output; kill it at the deadline. */
static int sync_wait(struct child_run *p, const struct hook_cmd *c, int *status, ka_err *e)
{
    int pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0); /* -1 on old kernels: poll periodically */
    uint64_t deadline = loop_now_ns() + timeout_ns(c);
    for (;;) {
        pid_t w = waitpid(p->pid, status, WNOHANG);
        if (w == p->pid)
            break;
        if (w < 0 && errno != EINTR) { /* ECHILD: reaped elsewhere (SIGCHLD ignored?); do not kill a pid */
            int err = errno;
            p->running = false;
            if (pidfd >= 0)
                close(pidfd);
            return ka_fail_errno(e, err, "hook %s: waitpid", c->path);
        }
        if (!p->timed_out && loop_now_ns() >= deadline) {
            p->timed_out = true;
            child_kill(p);
        }
        sync_poll(p, pidfd, poll_ms(deadline, pidfd >= 0, p->timed_out));
    }
    p->running = false;
    if (pidfd >= 0)
        close(pidfd);
    return 0;
}

static int sync_one(const Grpc__Hook *h, const char *state, ka_err *e)
{
    struct hook_cmd c;
    struct child_spec s;
    struct child_run p;
    int status = 0, rc = -1;
    if (hook_cmd_build(&c, h, e) < 0)
        return -1;
    child_run_init(&p);
    if (hook_spec(&c, state, &s, e) < 0)
        goto out;
    if (child_spawn(&p, &s, e) < 0) {
        ka_wrap(e, "hook %s", c.path);
        goto out;
    }
    log_debug("hooks", "hook %s started as pid %d", c.path, (int)p.pid);
    if (sync_wait(&p, &c, &status, e) == 0) {
        child_collect(&p);
        rc = hook_result(&p, &c, status, e);
    }
out:
    child_run_cancel(&p);
    hook_cmd_free(&c);
    return rc;
}

int hooks_run_sync(const struct hook_list *list, const char *state_json, ka_err *e)
{
    const char *state = state_json ? state_json : "";
    for (size_t i = 0; list && i < list->n; i++)
        if (sync_one(list->hooks[i], state, e) < 0)
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
