/* Spawning, parent side: clone3 into namespaces (and a v2 cgroup), then the sync-socket state machine. */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "process.h"
#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/log.h"

enum spawn_phase {
    PHASE_SETUP,    /* GO sent, waiting for PRESTART / READY / ERROR */
    PHASE_PRESTART, /* parent runs prestart hooks */
    PHASE_READY,    /* init parked, waiting for START */
    PHASE_STARTING, /* START sent, waiting for exec (EOF) or ERROR */
    PHASE_DONE,     /* no more talking */
};

struct spawn_state {
    struct process *p;
    struct loop *loop;
    struct loop_io io; /* the parent's end of the sync socket */
    enum spawn_phase phase;
    const struct spawn_ops *ops;
    void *ctx;
};

void *spawn_ctx(const struct process *p)
{
    return p->spawn ? p->spawn->ctx : NULL;
}

static void spawn_close(struct spawn_state *st)
{
    if (st->io.fd >= 0) {
        loop_io_del(st->loop, &st->io);
        close(st->io.fd);
        st->io.fd = -1;
    }
    st->phase = PHASE_DONE;
}

static int send_msg(int fd, enum sync_type type)
{
    struct sync_msg m = {.type = type};
    return send(fd, &m, offsetof(struct sync_msg, text), MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/* Report the end of a phase to the owner. */
static void finish(struct spawn_state *st, const ka_err *err)
{
    enum spawn_phase was = st->phase;
    if (err || was == PHASE_STARTING)
        spawn_close(st);
    if (was == PHASE_SETUP || was == PHASE_PRESTART) {
        if (!err)
            st->phase = st->p->init ? PHASE_READY : PHASE_DONE;
        if (!err && !st->p->init)
            spawn_close(st);
        st->ops->ready(st->p, err);
    } else if (was == PHASE_STARTING) {
        st->ops->started(st->p, err);
    }
}

/* One message, and the fd it may carry (SCM_RIGHTS). */
static ssize_t recv_msg(int fd, struct sync_msg *m, int *passed_fd)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m) - 1};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
    ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n <= 0)
        return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
            memcpy(passed_fd, CMSG_DATA(c), sizeof(int));
    return n;
}

/* Replace the agent's fallback pty by the one the child opened in the container. */
static void use_container_pty(struct process *p, int master)
{
    int wr = fcntl(master, F_DUPFD_CLOEXEC, 3);
    int fl = fcntl(master, F_GETFL);
    if (wr < 0 || fl < 0 || fcntl(master, F_SETFL, fl | O_NONBLOCK) < 0) {
        close(master);
        if (wr >= 0)
            close(wr);
        return;
    }
    close(p->out.fd);
    close(p->in.fd);
    p->out.fd = master;
    p->in.fd = wr;
}

static void on_sync(struct loop_io *io, uint32_t revents)
{
    struct spawn_state *st = container_of(io, struct spawn_state, io);
    struct sync_msg m;
    ka_err e;
    int passed_fd = -1;
    ssize_t n = recv_msg(io->fd, &m, &passed_fd);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        /* EOF: the socket is close-on-exec, so after START an EOF without ERROR means the workload was
         * exec'd (it may already have exited); before READY it means the child died during setup */
        if (st->phase == PHASE_STARTING) {
            finish(st, NULL);
        } else {
            ka_fail(&e, KA_INTERNAL, "container process exited during setup");
            finish(st, &e);
        }
        return;
    }
    (void)revents;
    ((char *)&m)[n] = '\0';
    switch (m.type) {
    case SYNC_PTY:
        if (passed_fd < 0 || st->phase != PHASE_SETUP || !st->p->tty)
            goto protocol;
        use_container_pty(st->p, passed_fd);
        return;
    case SYNC_PRESTART:
        if (st->phase != PHASE_SETUP)
            goto protocol;
        st->phase = PHASE_PRESTART;
        st->ops->prestart(st->p);
        return;
    case SYNC_READY:
        if (st->phase != PHASE_SETUP)
            goto protocol;
        finish(st, NULL);
        return;
    case SYNC_ERROR:
        ka_fail(&e, KA_INTERNAL, "%s",
                n > (ssize_t)offsetof(struct sync_msg, text) ? m.text : "setup failed");
        e.errnum = m.errnum;
        finish(st, &e);
        return;
    default:
        break;
    }
protocol:
    if (passed_fd >= 0)
        close(passed_fd);
    ka_fail(&e, KA_INTERNAL, "container process sent unexpected message %u", m.type);
    kill(st->p->pid, SIGKILL);
    finish(st, &e);
}

static void on_child_exit(struct loop_child *c, int status)
{
    struct process *p = container_of(c, struct process, child);
    struct spawn_state *st;
    /* first what the child said before dying (its error, or the EOF of its exec), then the exit; a
     * callback may abandon (free) the spawn state, so it is looked up again each time */
    while ((st = p->spawn) && st->io.fd >= 0 && st->phase != PHASE_READY && st->phase != PHASE_DONE)
        on_sync(&st->io, EPOLLIN);
    process_mark_exited(p, status);
}

static pid_t do_clone3(unsigned long flags, int cgroup_fd, int *pidfd)
{
    struct clone_args args = {0};
    args.flags = flags | CLONE_PIDFD;
    args.pidfd = (uint64_t)(uintptr_t)pidfd;
    args.exit_signal = SIGCHLD;
    if (cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

static int write_id_map(pid_t pid, const char *file, const Grpc__LinuxIDMapping *const *maps, size_t n,
                        ka_err *e)
{
    char buf[4096], path[64];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (!maps[i]->size)
            continue;
        int w = snprintf(buf + len, sizeof(buf) - len, "%u %u %u\n", maps[i]->containerid, maps[i]->hostid,
                         maps[i]->size);
        if (w < 0 || (size_t)w >= sizeof(buf) - len)
            return ka_fail(e, KA_INVALID_ARGUMENT, "too many %s entries", file);
        len += (size_t)w;
    }
    snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
    return fs_write_file(path, buf, len, e);
}

/* The parent's half of getting the child going: cgroup (v1), id maps, then GO. */
static int parent_setup(struct process *p, const struct spawn_cfg *cfg, int fd, ka_err *e)
{
    if (cfg->cg && cfg->cgroup_fd < 0 && cgroup_enter(cfg->cg, p->pid, e) < 0)
        return -1;
    if (cfg->clone_flags & CLONE_NEWUSER) {
        if (write_id_map(p->pid, "uid_map", cfg->uid_maps, cfg->n_uid_maps, e) < 0 ||
            write_id_map(p->pid, "gid_map", cfg->gid_maps, cfg->n_gid_maps, e) < 0)
            return -1;
    }
    if (send_msg(fd, SYNC_GO) < 0)
        return ka_fail_errno(e, errno, "sync with the container process");
    return 0;
}

int spawn_process(struct loop *l, struct process *p, const struct spawn_cfg *cfg, const struct spawn_ops *ops,
                  void *ctx, ka_err *e)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return ka_fail_errno(e, errno, "socketpair");
    struct spawn_state *st = calloc(1, sizeof(*st));
    if (!st) {
        close(sv[0]);
        close(sv[1]);
        return ka_fail_errno(e, ENOMEM, "spawn");
    }

    static int own_pidns = -1; /* to come back after joining a pid namespace for the child */
    if (cfg->pidns_fd >= 0 && own_pidns < 0)
        own_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
    if (cfg->pidns_fd >= 0 && (own_pidns < 0 || setns(cfg->pidns_fd, CLONE_NEWPID) < 0)) {
        ka_fail_errno(e, errno, "join the container's pid namespace");
        goto fail;
    }
    int pidfd = -1;
    pid_t pid = do_clone3(cfg->clone_flags, cfg->cgroup_fd, &pidfd);
    if (pid == 0) {
        close(sv[0]);
        child_main(cfg, sv[1]);
    }
    int clone_errno = errno;
    if (cfg->pidns_fd >= 0 && setns(own_pidns, CLONE_NEWPID) < 0)
        log_error("process", "cannot return to the agent's pid namespace: %s", strerror(errno));
    if (pid < 0) {
        ka_fail_errno(e, clone_errno, "clone3");
        goto fail;
    }
    close(sv[1]);
    sv[1] = -1;
    p->pid = pid;
    p->pidfd = pidfd;
    p->child.pid = pid;
    p->child.exited = on_child_exit;
    loop_child_watch(l, &p->child);

    st->p = p;
    st->loop = l;
    st->ops = ops;
    st->ctx = ctx;
    st->phase = PHASE_SETUP;
    st->io.fd = sv[0];
    st->io.events = EPOLLIN;
    st->io.cb = on_sync;
    p->spawn = st;
    if (parent_setup(p, cfg, sv[0], e) < 0 || loop_io_add(l, &st->io, e) < 0) {
        kill(pid, SIGKILL);
        spawn_close(st);
        st->ops = NULL;
        p->spawn = NULL;
        free(st);
        return -1; /* the child is reaped through p->child; the caller frees p after its exit */
    }
    return 0;
fail:
    close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    free(st);
    return -1;
}

void spawn_prestart_done(struct process *p, const ka_err *err)
{
    struct spawn_state *st = p->spawn;
    if (!st || st->phase != PHASE_PRESTART)
        return;
    if (err) {
        kill(p->pid, SIGKILL);
        ka_err e = *err;
        ka_wrap(&e, "prestart hook");
        finish(st, &e);
        return;
    }
    st->phase = PHASE_SETUP;
    if (send_msg(st->io.fd, SYNC_PRESTART_DONE) < 0) {
        ka_err e;
        ka_fail_errno(&e, errno, "sync with the container process");
        finish(st, &e);
    }
}

int spawn_rebind(struct process *p, const struct spawn_ops *ops, void *ctx)
{
    if (!p->spawn)
        return -1;
    p->spawn->ops = ops;
    p->spawn->ctx = ctx;
    return 0;
}

int spawn_start_exec(struct process *p, ka_err *e)
{
    struct spawn_state *st = p->spawn;
    if (!st || st->phase != PHASE_READY)
        return ka_fail(e, KA_FAILED_PRECONDITION, "container process is not waiting to be started");
    if (send_msg(st->io.fd, SYNC_START) < 0)
        return ka_fail_errno(e, errno, "release the container process");
    st->phase = PHASE_STARTING;
    return 0;
}

void spawn_abandon(struct process *p)
{
    struct spawn_state *st = p->spawn;
    if (!st)
        return;
    spawn_close(st);
    p->spawn = NULL;
    free(st);
}
