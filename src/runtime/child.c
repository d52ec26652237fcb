/* Spawning, child side: the OCI setup sequence of a container process (spec §4.6), then exec. Runs in the
 * freshly cloned child; failures are reported to the agent over the sync socket and end the child. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "spawn.h"
#include "../util/cleanup.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static int sync_fd = -1;

__attribute__((noreturn)) static void die_err(const ka_err *e)
{
    struct sync_msg m = {.type = SYNC_ERROR, .errnum = e->errnum};
    snprintf(m.text, sizeof(m.text), "%s", e->msg);
    (void)!send(sync_fd, &m, offsetof(struct sync_msg, text) + strlen(m.text) + 1, MSG_NOSIGNAL);
    _exit(e->errnum ? e->errnum : 1);
}

__attribute__((noreturn, format(printf, 2, 3))) static void die(int errnum, const char *fmt, ...)
{
    ka_err e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
    va_end(ap);
    if (errnum) {
        size_t n = strlen(e.msg);
        snprintf(e.msg + n, sizeof(e.msg) - n, ": %s", strerror(errnum));
    }
    e.errnum = errnum;
    die_err(&e);
}

static void send_type(enum sync_type t)
{
    struct sync_msg m = {.type = t};
    if (send(sync_fd, &m, offsetof(struct sync_msg, text), MSG_NOSIGNAL) < 0)
        _exit(1);
}

/* Block until the parent says t; EOF (the agent gave up on us) ends the child quietly. */
static void expect(enum sync_type t)
{
    struct sync_msg m;
    ssize_t n;
    do
        n = recv(sync_fd, &m, sizeof(m), 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0 || m.type != t)
        _exit(1);
}

static void reset_signals(void)
{
    sigset_t all;
    sigemptyset(&all);
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL); /* SIGPIPE was ignored by the agent; ignored dispositions survive exec */
    sigprocmask(SIG_SETMASK, &all, NULL);
}

static void join_namespaces(const struct spawn_cfg *cfg)
{
    if (cfg->join_pidfd >= 0 && cfg->join_pidfd_flags && setns(cfg->join_pidfd, cfg->join_pidfd_flags) < 0)
        die(errno, "join the container's namespaces");
    for (size_t i = 0; i < cfg->n_join; i++)
        if (setns(cfg->join_fds[i], cfg->join_types[i]) < 0)
            die(errno, "join namespace %zu", i);
}

static void send_fd(enum sync_type t, int fd)
{
    struct sync_msg m = {.type = t};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = {.iov_base = &m, .iov_len = offsetof(struct sync_msg, text)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    if (sendmsg(sync_fd, &mh, MSG_NOSIGNAL) < 0)
        die(errno, "send the terminal to the agent");
}

/* A terminal from the container's own devpts (so that tty/ttyname work inside), its master handed to the
 * agent; when the container has no /dev/ptmx the agent's pty (cfg->stdio) is used. Returns the slave or -1.
 */
static int container_pty(const struct spawn_cfg *cfg)
{
    int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        return -1;
    char name[128];
    int slave = -1;
    if (unlockpt(m) == 0 && ptsname_r(m, name, sizeof(name)) == 0)
        slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) {
        close(m);
        return -1;
    }
    const Grpc__Box *box = cfg->proc->consolesize;
    if (box && box->height && box->width) {
        struct winsize ws = {.ws_row = (unsigned short)box->height, .ws_col = (unsigned short)box->width};
        ioctl(slave, TIOCSWINSZ, &ws);
    }
    send_fd(SYNC_PTY, m);
    close(m);
    return slave;
}

static void setup_stdio(const struct spawn_cfg *cfg)
{
    int hi[3];
    int pty = cfg->tty ? container_pty(cfg) : -1;
    for (int i = 0; i < 3; i++) {
        hi[i] = fcntl(pty >= 0 ? pty : cfg->stdio[i], F_DUPFD_CLOEXEC, 10);
        if (hi[i] < 0)
            die(errno, "stdio");
    }
    for (int i = 0; i < 3; i++)
        if (dup2(hi[i], i) < 0)
            die(errno, "stdio");
    if (cfg->tty) {
        if (setsid() < 0)
            die(errno, "setsid");
        if (ioctl(0, TIOCSCTTY, 0) < 0)
            die(errno, "set the controlling terminal");
    }
    /* a non-root user must be able to reopen its stdio (/dev/stdout) */
    if (cfg->creds.uid != 0)
        for (int i = 0; i < 3; i++)
            (void)!fchown(i, cfg->creds.uid, (gid_t)-1);
}

/* Effective := permitted, so a seccomp filter can be loaded without no_new_privs after a uid change. */
static void raise_effective(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) < 0)
        return;
    d[0].effective = d[0].permitted;
    d[1].effective = d[1].permitted;
    (void)syscall(SYS_capset, &h, d);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    char *end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
        *--end = '\0';
    return s;
}

/* Home directory of uid from the container's /etc/passwd, or "/". */
static const char *home_of(uid_t uid)
{
    static char home[512];
    FILE *f = fopen("/etc/passwd", "re");
    if (!f)
        return "/";
    char line[1024];
    const char *found = "/";
    while (fgets(line, sizeof(line), f)) {
        char *fields[7];
        int n = 0;
        char *save = NULL;
        for (char *tok = strtok_r(line, ":", &save); tok && n < 7; tok = strtok_r(NULL, ":", &save))
            fields[n++] = tok;
        if (n >= 6 && (uid_t)strtoul(fields[2], NULL, 10) == uid) {
            snprintf(home, sizeof(home), "%s", fields[5]);
            found = home;
            break;
        }
    }
    fclose(f);
    return found;
}

/* Environment as upstream builds it: KEY=VALUE entries with key and value trimmed, invalid ones skipped,
 * HOME added when missing. */
static char **build_env(const Grpc__Process *proc, uid_t uid)
{
    char **env = calloc(proc->n_env + 2, sizeof(char *));
    size_t n = 0;
    bool home = false;
    if (!env)
        die(ENOMEM, "environment");
    for (size_t i = 0; i < proc->n_env; i++) {
        char *kv = strdup(proc->env[i]);
        char *eq = kv ? strchr(kv, '=') : NULL;
        if (!eq)
            continue;
        *eq = '\0';
        char *k = trim(kv), *v = trim(eq + 1);
        if (!*k)
            continue;
        if (asprintf(&env[n], "%s=%s", k, v) < 0)
            die(ENOMEM, "environment");
        home |= strcmp(k, "HOME") == 0;
        n++;
    }
    if (!home && asprintf(&env[n++], "HOME=%s", home_of(uid)) < 0)
        die(ENOMEM, "environment");
    env[n] = NULL;
    return env;
}

static const char *env_get(char **env, const char *key)
{
    size_t k = strlen(key);
    for (; *env; env++)
        if (strncmp(*env, key, k) == 0 && (*env)[k] == '=')
            return *env + k + 1;
    return NULL;
}

/* args[0] resolved like execvp, but in the container's PATH, before the process parks: a missing binary
 * is reported by CreateContainer/ExecProcess, not discovered after StartContainer. */
static char *resolve_binary(const char *arg0, char **env)
{
    static char path[4096];
    if (strchr(arg0, '/')) {
        if (access(arg0, X_OK) == 0)
            return (char *)arg0;
        die(errno, "the file %s was not found or is not executable", arg0);
    }
    const char *p = env_get(env, "PATH");
    if (!p)
        p = DEFAULT_PATH;
    while (*p) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        snprintf(path, sizeof(path), "%.*s/%s", (int)len, len ? p : ".", arg0);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0)
            return path;
        p += len + (colon ? 1 : 0);
    }
    die(ENOENT, "the file %s was not found", arg0);
}

static void check(int rc, ka_err *e, const char *step)
{
    if (rc < 0) {
        ka_wrap(e, "%s", step);
        die_err(e);
    }
}

void child_main(const struct spawn_cfg *cfg, int fd)
{
    ka_err e;
    sync_fd = fd;
    reset_signals();
    expect(SYNC_GO);
    check(creds_apply_limits(&cfg->creds, &e), &e, "limits");
    /* in a new user namespace the maps are written now: become its root (the kernel gives the creator full
     * capabilities there), so files the setup creates belong to a mapped uid */
    if ((cfg->clone_flags & CLONE_NEWUSER) && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0))
        die(errno, "become root in the user namespace");

    join_namespaces(cfg);
    /* rooted at the container's cgroup: on v1 the parent moved us there before GO (on v2 we were born there)
     */
    if (cfg->late_cgroupns && unshare(CLONE_NEWCGROUP) < 0)
        die(errno, "unshare the cgroup namespace");
    if ((cfg->clone_flags & CLONE_NEWUTS) && cfg->hostname &&
        sethostname(cfg->hostname, strlen(cfg->hostname)) < 0)
        die(errno, "sethostname");
    if (cfg->do_rootfs) {
        check(rootfs_prepare(&cfg->rootfs, &e), &e, "rootfs");
        if (cfg->prestart) {
            send_type(SYNC_PRESTART);
            expect(SYNC_PRESTART_DONE);
        }
        if (cfg->create_hooks && cfg->create_hooks->n)
            check(hooks_run_sync(cfg->create_hooks, cfg->create_state_json, &e), &e, "createContainer hook");
        check(rootfs_finish(&cfg->rootfs, &e), &e, "rootfs");
    }
    const Grpc__Process *proc = cfg->proc;
    if (proc->cwd && *proc->cwd && chdir(proc->cwd) < 0)
        die(errno, "chdir to %s", proc->cwd);
    setup_stdio(cfg);

    check(creds_apply_ids(&cfg->creds, &e), &e, "user");
    if (cfg->seccomp && !cfg->creds.no_new_privs) {
        raise_effective();
        check(seccomp_prog_load(cfg->seccomp, &e), &e, "seccomp");
    }
    check(creds_apply_nnp(&cfg->creds, &e), &e, "no_new_privileges");
    if (cfg->have_caps)
        check(caps_apply(&cfg->caps, &e), &e, "capabilities");

    if (proc->n_args == 0)
        die(0, "the process has no arguments");
    char **env = build_env(proc, cfg->creds.uid);
    char *bin = resolve_binary(proc->args[0], env);
    char **argv = calloc(proc->n_args + 1, sizeof(char *));
    if (!argv)
        die(ENOMEM, "arguments");
    memcpy(argv, proc->args, proc->n_args * sizeof(char *));

    send_type(SYNC_READY);
    if (cfg->init) {
        expect(SYNC_START);
        if (cfg->start_hooks && cfg->start_hooks->n)
            check(hooks_run_sync(cfg->start_hooks, cfg->start_state_json, &e), &e, "startContainer hook");
    }
    if (cfg->seccomp && cfg->creds.no_new_privs)
        check(seccomp_prog_load(cfg->seccomp, &e), &e, "seccomp");
    execve(bin, argv, env);
    die(errno, "exec %s", bin);
}
