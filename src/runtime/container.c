/* Container lifecycle: create (bundle, namespaces, cgroup, stdio, parked init), start, exec, signal, remove.
 */
#include "container.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cgroup.h"
#include "oci_json.h"
#include "oom_watch.h"
#include "spawn.h"
#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/log.h"

#define MAX_ID_LEN     128
#define REMOVE_POLL_NS (5 * 1000000ull)
#define RMDIR_POLL_NS  (10 * 1000000ull)   /* a cgroup still busy just after its processes are gone */
#define RMDIR_WAIT_NS  (2000 * 1000000ull) /* ... is retried this long when the removal has no timeout */
#define RMDIR_GRACE_NS (300 * 1000000ull)  /* ... and at least this long (the rmdir retries of runc) */
#define PROCS_PER_CTR  4096

enum op_kind { OP_CREATE, OP_START, OP_EXEC, OP_REMOVE };

/* One asynchronous operation on a container. */
struct ctr_op {
    enum op_kind kind;
    struct container *c;
    struct process *p; /* the process being spawned (create, exec) */
    rt_done_cb done;
    void *arg;
    ka_err err; /* first error of a failing operation */
    struct hooks_run *hooks;
    struct loop_timer poll;  /* removal: waiting for the processes to be gone */
    uint64_t deadline_ns;    /* removal timeout, 0 = none */
    uint64_t rmdir_until_ns; /* removal: retry a busy cgroup until then, 0 = not retrying yet */
    struct spawn_cfg cfg;    /* kept alive while the child may still read it (it's a copy, but tidy) */
    int fds_to_close[8];
    size_t n_fds;
};

const char *container_status_name(enum container_status s)
{
    static const char *const names[] = {"creating", "created", "running", "paused", "stopped", "removing"};
    return names[s];
}

static void op_complete(struct ctr_op *op, const ka_err *err)
{
    rt_done_cb done = op->done;
    void *arg = op->arg;
    if (op->c && op->c->op == op)
        op->c->op = NULL;
    for (size_t i = 0; i < op->n_fds; i++)
        close(op->fds_to_close[i]);
    if (op->hooks)
        hooks_run_cancel(op->hooks);
    free(op);
    if (done)
        done(arg, err);
}

void ctr_op_detach(struct ctr_op *op)
{
    if (op)
        op->done = NULL;
}

static struct ctr_op *op_new(enum op_kind kind, struct container *c, rt_done_cb done, void *arg, ka_err *e)
{
    struct ctr_op *op = calloc(1, sizeof(*op));
    if (!op) {
        ka_fail_errno(e, ENOMEM, "container operation");
        return NULL;
    }
    op->kind = kind;
    op->c = c;
    op->done = done;
    op->arg = arg;
    return op;
}

/* ---- identity and lookup ---- */

static int validate_id(const char *id, const char *what, ka_err *e)
{
    size_t n = strlen(id);
    if (n < 2 || n > MAX_ID_LEN || !isalnum((unsigned char)id[0]))
        return ka_fail(e, KA_INVALID_ARGUMENT,
                       "invalid %s id '%s': want 2 to %d characters [A-Za-z0-9_.-] "
                       "starting with a letter or digit",
                       what, id, MAX_ID_LEN);
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]) && id[i] != '_' && id[i] != '.' && id[i] != '-')
            return ka_fail(e, KA_INVALID_ARGUMENT, "invalid %s id '%s': character '%c' not allowed", what, id,
                           id[i]);
    return 0;
}

struct process *container_find_process(struct container *c, const char *exec_id, ka_err *e)
{
    if (!exec_id[0] || strcmp(exec_id, c->id) == 0) {
        if (c->init)
            return c->init;
        ka_fail(e, KA_NOT_FOUND, "container %s: cannot find init process", c->id);
        return NULL;
    }
    list_for_each (pos, &c->procs) {
        struct process *p = container_of(pos, struct process, link);
        if (strcmp(p->exec_id, exec_id) == 0)
            return p;
    }
    ka_fail(e, KA_NOT_FOUND, "container %s: Invalid exec id %s", c->id, exec_id);
    return NULL;
}

/* ---- processes and stdio ---- */

static struct process *process_new(struct container *c, const char *exec_id, bool init, bool tty)
{
    struct process *p = calloc(1, sizeof(*p));
    if (!p || !(p->exec_id = strdup(exec_id))) {
        free(p);
        return NULL;
    }
    p->c = c;
    p->init = init;
    p->tty = tty;
    p->pidfd = -1;
    list_init(&p->exit_waiters);
    list_init(&p->link);
    loop_defer_init(&p->forget, NULL);
    struct loop *l = c->sb->loop;
    stream_init(&p->in, l, -1, EPOLLOUT);
    stream_init(&p->out, l, -1, EPOLLIN);
    stream_init(&p->err, l, -1, EPOLLIN);
    return p;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Pipes (or a pty) for p; the child's ends go to stdio[], the agent's into p's streams. */
static int make_stdio(struct container *c, struct process *p, const Grpc__Process *proc, int stdio[3],
                      ka_err *e)
{
    if (p->tty) {
        int master, slave;
        struct winsize ws = {0};
        if (proc->consolesize) {
            ws.ws_row = (unsigned short)proc->consolesize->height;
            ws.ws_col = (unsigned short)proc->consolesize->width;
        }
        if (openpty(&master, &slave, NULL, NULL, proc->consolesize ? &ws : NULL) < 0)
            return ka_fail_errno(e, errno, "openpty");
        fcntl(master, F_SETFD, FD_CLOEXEC);
        fcntl(slave, F_SETFD, FD_CLOEXEC);
        int wr = fcntl(master, F_DUPFD_CLOEXEC, 3); /* a second fd: epoll watches reads and writes apart */
        if (wr < 0 || set_nonblock(master) < 0) {
            close(master);
            close(slave);
            if (wr >= 0)
                close(wr);
            return ka_fail_errno(e, errno, "pty");
        }
        p->out.fd = master;
        p->in.fd = wr;
        stdio[0] = stdio[1] = stdio[2] = slave;
        return 0;
    }
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) < 0)
        return ka_fail_errno(e, errno, "pipe");
    if (pipe2(out, O_CLOEXEC) < 0) {
        close(in[0]);
        close(in[1]);
        return ka_fail_errno(e, errno, "pipe");
    }
    if (pipe2(err, O_CLOEXEC) < 0) {
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        return ka_fail_errno(e, errno, "pipe");
    }
    if (c->sb->cfg.pipe_size > 0) {
        fcntl(out[1], F_SETPIPE_SZ, (int)c->sb->cfg.pipe_size);
        fcntl(err[1], F_SETPIPE_SZ, (int)c->sb->cfg.pipe_size);
    }
    set_nonblock(in[1]);
    set_nonblock(out[0]);
    set_nonblock(err[0]);
    p->in.fd = in[1];
    p->out.fd = out[0];
    p->err.fd = err[0];
    stdio[0] = in[0];
    stdio[1] = out[1];
    stdio[2] = err[1];
    return 0;
}

static void close_child_stdio(int stdio[3])
{
    close(stdio[0]);
    if (stdio[1] != stdio[0])
        close(stdio[1]);
    if (stdio[2] != stdio[0] && stdio[2] != stdio[1])
        close(stdio[2]);
}

/* ---- hooks ---- */

static int hooks_join(struct hook_list *out, const Grpc__Hook *const *a, size_t na,
                      const struct hook_list *guest, ka_err *e)
{
    size_t ng = guest ? guest->n : 0;
    out->n = 0;
    out->hooks = NULL;
    if (na + ng == 0)
        return 0;
    out->hooks = calloc(na + ng, sizeof(*out->hooks));
    if (!out->hooks)
        return ka_fail_errno(e, ENOMEM, "hooks");
    for (size_t i = 0; i < na; i++)
        out->hooks[out->n++] = (Grpc__Hook *)a[i];
    for (size_t i = 0; i < ng; i++)
        out->hooks[out->n++] = guest->hooks[i];
    return 0;
}

static int prepare_hooks(struct container *c, ka_err *e)
{
    const Grpc__Hooks *h = c->spec->hooks;
    const struct hook_list *g = c->sb->guest_hooks;
    static const Grpc__Hook *const none[1];
#define HK(field) (h ? (const Grpc__Hook *const *)h->field : none), (h ? h->n_##field : 0)
    if (hooks_join(&c->hooks_prestart, HK(prestart), &g[HOOK_PRESTART], e) < 0 ||
        hooks_join(&c->hooks_poststart, HK(poststart), &g[HOOK_POSTSTART], e) < 0 ||
        hooks_join(&c->hooks_poststop, HK(poststop), &g[HOOK_POSTSTOP], e) < 0 ||
        hooks_join(&c->hooks_create_container, HK(createcontainer), NULL, e) < 0 ||
        hooks_join(&c->hooks_start_container, HK(startcontainer), NULL, e) < 0)
        return -1;
    /* createRuntime hooks run where prestart hooks run: in the agent, before pivot_root */
    if (h && h->n_createruntime) {
        struct hook_list pre = c->hooks_prestart;
        struct hook_list cr = {.n = h->n_createruntime, .hooks = h->createruntime};
        if (hooks_join(&c->hooks_prestart, (const Grpc__Hook *const *)cr.hooks, cr.n, &pre, e) < 0)
            return -1;
        free(pre.hooks);
    }
#undef HK
    return 0;
}

static void free_hooks(struct container *c)
{
    free(c->hooks_prestart.hooks);
    free(c->hooks_poststart.hooks);
    free(c->hooks_poststop.hooks);
    free(c->hooks_create_container.hooks);
    free(c->hooks_start_container.hooks);
}

static char *state_json(struct container *c, const char *status)
{
    pid_t pid = c->init && !c->init->exited ? c->init->pid : 0;
    return hooks_state_json(c->spec->version, c->id, status, pid, c->bundle, c->spec->annotations,
                            c->spec->n_annotations);
}

/* ---- namespaces ---- */

static int ns_flag(const char *type)
{
    static const struct {
        const char *name;
        int flag;
    } t[] = {
        {"mount", CLONE_NEWNS},  {"ipc", CLONE_NEWIPC},     {"uts", CLONE_NEWUTS},
        {"pid", CLONE_NEWPID},   {"network", CLONE_NEWNET}, {"cgroup", CLONE_NEWCGROUP},
        {"user", CLONE_NEWUSER},
    };
    for (size_t i = 0; i < ARRAY_SIZE(t); i++)
        if (strcmp(type, t[i].name) == 0)
            return t[i].flag;
    return 0;
}

static int add_join(struct ctr_op *op, int fd, int flag, ka_err *e)
{
    struct spawn_cfg *cfg = &op->cfg;
    if (cfg->n_join == SPAWN_MAX_JOIN || op->n_fds == ARRAY_SIZE(op->fds_to_close)) {
        close(fd);
        return ka_fail(e, KA_INVALID_ARGUMENT, "too many namespaces to join");
    }
    cfg->join_fds[cfg->n_join] = fd;
    cfg->join_types[cfg->n_join++] = flag;
    op->fds_to_close[op->n_fds++] = fd;
    return 0;
}

/* Namespaces of an init process: new ones by default; ipc and uts join the sandbox's; the pid namespace
 * is always new unless sandbox_pidns asks for the sandbox's; entries with a path are joined. */
static int plan_namespaces(struct ctr_op *op, const Grpc__CreateContainerRequest *req, ka_err *e)
{
    struct container *c = op->c;
    struct sandbox *sb = c->sb;
    const Grpc__Linux *lx = c->spec->linux;
    struct spawn_cfg *cfg = &op->cfg;
    bool have_mount = false;
    cfg->pidns_fd = -1;
    for (size_t i = 0; i < lx->n_namespaces; i++) {
        const Grpc__LinuxNamespace *ns = lx->namespaces[i];
        int flag = ns_flag(ns->type);
        if (!flag)
            return ka_fail(e, KA_INVALID_ARGUMENT, "invalid namespace type '%s'", ns->type);
        if (flag == CLONE_NEWPID)
            continue;
        if (flag == CLONE_NEWNS)
            have_mount = true;
        int shared = flag == CLONE_NEWIPC ? sb->ipc_ns_fd : flag == CLONE_NEWUTS ? sb->uts_ns_fd : -1;
        if (ns->path && ns->path[0]) {
            if (flag == CLONE_NEWNS)
                return ka_fail(e, KA_INVALID_ARGUMENT,
                               "joining an existing mount namespace is not supported");
            int fd = open(ns->path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                return ka_fail_errno(e, errno, "open %s namespace %s", ns->type, ns->path);
            if (add_join(op, fd, flag, e) < 0)
                return -1;
        } else if (shared >= 0) {
            int fd = fcntl(shared, F_DUPFD_CLOEXEC, 3);
            if (fd < 0 || add_join(op, fd, flag, e) < 0)
                return fd < 0 ? ka_fail_errno(e, errno, "dup") : -1;
        } else {
            cfg->clone_flags |= (unsigned long)flag;
        }
    }
    if (!have_mount)
        return ka_fail(e, KA_INVALID_ARGUMENT, "the spec has no mount namespace");
    if (req->sandbox_pidns) {
        if (sb->pidns_fd < 0)
            return ka_fail(e, KA_FAILED_PRECONDITION, "sandbox does not have a shared pid namespace yet");
        cfg->pidns_fd = sb->pidns_fd;
    } else {
        cfg->clone_flags |= CLONE_NEWPID;
    }
    if (cfg->clone_flags & CLONE_NEWUSER) {
        if (!lx->n_uidmappings || !lx->n_gidmappings)
            return ka_fail(e, KA_INVALID_ARGUMENT, "a user namespace needs uid and gid mappings");
        cfg->uid_maps = (const Grpc__LinuxIDMapping *const *)lx->uidmappings;
        cfg->n_uid_maps = lx->n_uidmappings;
        cfg->gid_maps = (const Grpc__LinuxIDMapping *const *)lx->gidmappings;
        cfg->n_gid_maps = lx->n_gidmappings;
    }
    return 0;
}

/* ---- pause, resume and whole-container signals: freezer operations from the loop ---- */

enum fz_kind { FZ_PAUSE, FZ_RESUME, FZ_SIGNAL };

/* A PauseContainer, ResumeContainer or whole-container signal in progress (c->freezing). */
struct ctr_freeze {
    enum fz_kind kind;
    struct container *c;
    struct cgroup_freeze_op *fop; /* pause, resume */
    struct cgroup_signal_op *sop; /* signal */
    rt_done_cb done;
    void *arg;
};

static const char *const fz_names[] = {"pause", "resume", "signal"};

static struct ctr_freeze *fz_new(struct container *c, enum fz_kind kind, rt_done_cb done, void *arg,
                                 ka_err *e)
{
    struct ctr_freeze *op = calloc(1, sizeof(*op));
    if (!op) {
        ka_fail_errno(e, ENOMEM, "container %s", c->id);
        return NULL;
    }
    op->kind = kind;
    op->c = c;
    op->done = done;
    op->arg = arg;
    return op;
}

static void fz_end(struct ctr_freeze *op, const ka_err *err)
{
    rt_done_cb done = op->done;
    void *arg = op->arg;
    op->c->freezing = NULL;
    free(op);
    if (done)
        done(arg, err);
}

/* Back to the state it was paused in: an init still parked before exec (paused while created) is created
 * again, so StartContainer works (upstream would call it running). */
static void set_resumed(struct container *c)
{
    c->status = c->init && c->init->spawn && !c->init->exited ? CTR_CREATED : CTR_RUNNING;
}

static void fz_frozen(void *arg, const ka_err *err)
{
    struct ctr_freeze *op = arg;
    struct container *c = op->c;
    op->fop = NULL;
    if (err) {
        ka_err e = *err;
        ka_wrap(&e, "%s container %s", fz_names[op->kind], c->id);
        fz_end(op, &e);
        return;
    }
    if (op->kind == FZ_PAUSE) {
        c->status = CTR_PAUSED;
        log_info("container", "container %s paused", c->id);
    } else {
        set_resumed(c);
        log_info("container", "container %s resumed (%s)", c->id, container_status_name(c->status));
    }
    fz_end(op, NULL);
}

static int fz_start_freeze(struct container *c, enum fz_kind kind, rt_done_cb done, void *arg,
                           struct ctr_freeze **opp, ka_err *e)
{
    struct ctr_freeze *op = fz_new(c, kind, done, arg, e);
    if (!op)
        return -1;
    op->fop = cgroup_freeze_async(c->sb->loop, c->cg, kind == FZ_PAUSE, fz_frozen, op, e);
    if (!op->fop) {
        free(op);
        return ka_wrap(e, "%s container %s", fz_names[kind], c->id);
    }
    c->freezing = op;
    *opp = op;
    return 0;
}

int container_pause(struct container *c, rt_done_cb done, void *arg, struct ctr_freeze **opp, ka_err *e)
{
    if (c->status != CTR_RUNNING && c->status != CTR_CREATED)
        return ka_fail(e, KA_FAILED_PRECONDITION, "failed to pause container %s: current status is: %s",
                       c->id, container_status_name(c->status));
    if (c->op || c->freezing)
        return ka_fail(e, KA_FAILED_PRECONDITION, "failed to pause container %s: an operation is in progress",
                       c->id);
    if (!c->cg)
        return ka_fail(e, KA_FAILED_PRECONDITION, "container %s has no cgroup", c->id);
    return fz_start_freeze(c, FZ_PAUSE, done, arg, opp, e);
}

int container_resume(struct container *c, rt_done_cb done, void *arg, struct ctr_freeze **opp, ka_err *e)
{
    if (c->status != CTR_PAUSED)
        return ka_fail(e, KA_FAILED_PRECONDITION, "container %s status is: %s, not paused", c->id,
                       container_status_name(c->status));
    if (c->op || c->freezing)
        return ka_fail(e, KA_FAILED_PRECONDITION,
                       "failed to resume container %s: an operation is in progress", c->id);
    if (!c->cg)
        return ka_fail(e, KA_FAILED_PRECONDITION, "container %s has no cgroup", c->id);
    return fz_start_freeze(c, FZ_RESUME, done, arg, opp, e);
}

void container_freeze_cancel(struct ctr_freeze *op)
{
    if (!op)
        return;
    struct container *c = op->c;
    cgroup_freeze_cancel(op->fop);
    cgroup_signal_cancel(op->sop);
    if (op->kind == FZ_RESUME)
        set_resumed(c);
    log_info("container", "container %s: %s cancelled, the container is %s", c->id, fz_names[op->kind],
             container_status_name(c->status));
    op->done = NULL;
    fz_end(op, NULL);
}

/* Removal wins over a pause, resume or signal in progress: stopped as if cancelled, its RPC answered. */
static void fz_abort(struct container *c)
{
    struct ctr_freeze *op = c->freezing;
    if (!op)
        return;
    rt_done_cb done = op->done;
    void *arg = op->arg;
    enum fz_kind kind = op->kind;
    container_freeze_cancel(op);
    ka_err e;
    ka_fail(&e, KA_ABORTED, "%s container %s: the container is being removed", fz_names[kind], c->id);
    if (done)
        done(arg, kind == FZ_SIGNAL ? NULL : &e);
}

/* ---- removal (also the unwinding of a failed create) ---- */

static bool all_gone(struct container *c)
{
    list_for_each (pos, &c->procs) {
        struct process *p = container_of(pos, struct process, link);
        if (!p->exited)
            return false;
    }
    if (c->cg) {
        pid_t *pids = NULL;
        size_t n = 0;
        ka_err e;
        if (cgroup_pids(c->cg, &pids, &n, &e) == 0) {
            free(pids);
            if (n)
                return false;
        }
    }
    return true;
}

static void kill_all(struct container *c)
{
    ka_err e;
    list_for_each (pos, &c->procs) {
        struct process *p = container_of(pos, struct process, link);
        if (!p->exited)
            kill(p->pid, SIGKILL);
    }
    if (c->cg && cgroup_signal_all(c->cg, SIGKILL, &e) < 0)
        log_debug("container", "container %s: %s", c->id, e.msg);
}

/* Release everything the container acquired; the processes are gone. *busy: the only failure is a cgroup
 * still busy (EBUSY: its last tasks may still be exiting), worth another try. Safe to call again. */
static int release(struct container *c, bool *busy, ka_err *e)
{
    int rc = 0, cg_rc = 0;
    ka_err e2, cg_err;
    if (c->rootfs_mounted) {
        if (umount2(c->rootfs, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
            rc = ka_fail_errno(e, errno, "umount %s", c->rootfs);
        } else {
            c->rootfs_mounted = false;
        }
    }
    if (!c->rootfs_mounted && c->bundle && fs_remove_tree(c->bundle, &e2) < 0 && rc == 0)
        rc = -1, *e = e2;
    if (c->cg && (cg_rc = cgroup_destroy(c->cg, &cg_err)) == 0) {
        cgroup_free(c->cg);
        c->cg = NULL;
    }
    bool cg_first = rc == 0 && cg_rc < 0; /* the cgroup's error is the one reported */
    if (cg_first)
        rc = -1, *e = cg_err;
    if (storage_release(&c->sb->storages, &c->refs, &e2) < 0) {
        if (rc == 0)
            *e = e2;
        rc = -1, cg_first = false;
    }
    *busy = cg_first && cg_err.errnum == EBUSY;
    return rc;
}

static void container_free(struct container *c)
{
    fz_abort(c);
    oom_watch_stop(c->oom);
    c->oom = NULL;
    while (!list_empty(&c->procs)) {
        struct process *p = container_of(c->procs.next, struct process, link);
        list_del(&p->link);
        spawn_abandon(p);
        process_free(p);
    }
    if (!list_empty(&c->link) || c->sb) {
        list_del(&c->link);
        c->sb->n_containers--;
    }
    if (c->cg)
        cgroup_free(c->cg);
    seccomp_prog_free(c->seccomp);
    free_hooks(c);
    if (c->spec)
        protobuf_c_message_free_unpacked(&c->spec->base, NULL);
    free(c->state_json);
    free(c->bundle);
    free(c->rootfs);
    free(c->id);
    free(c);
}

static void remove_finish(struct ctr_op *op);

static void release_retry(struct loop_timer *t)
{
    remove_finish(container_of(t, struct ctr_op, poll));
}

/* The cgroup is still busy: try again shortly, until the removal timeout (or RMDIR_WAIT_NS without one), but
 * for RMDIR_GRACE_NS at least. */
static bool release_later(struct ctr_op *op)
{
    uint64_t now = loop_now_ns();
    if (!op->rmdir_until_ns) {
        uint64_t until = op->deadline_ns ? op->deadline_ns : now + RMDIR_WAIT_NS;
        op->rmdir_until_ns = until > now + RMDIR_GRACE_NS ? until : now + RMDIR_GRACE_NS;
    }
    if (now >= op->rmdir_until_ns)
        return false;
    loop_timer_init(&op->poll, release_retry);
    loop_timer_start(op->c->sb->loop, &op->poll, RMDIR_POLL_NS);
    return true;
}

static void remove_finish(struct ctr_op *op)
{
    struct container *c = op->c;
    ka_err e;
    bool busy = false;
    if (release(c, &busy, &e) < 0) {
        if (busy && release_later(op))
            return;
        /* keep the container so that a later RemoveContainer can retry */
        c->status = CTR_STOPPED;
        ka_wrap(&e, "remove container %s", c->id);
        op_complete(op, &e);
        return;
    }
    log_info("container", "container %s removed", c->id);
    op->c = NULL;
    c->op = NULL;
    bool failed_create = op->kind == OP_CREATE;
    ka_err create_err = op->err;
    container_free(c);
    op_complete(op, failed_create ? &create_err : NULL);
}

static void poststop_done(void *arg, const ka_err *err)
{
    struct ctr_op *op = arg;
    op->hooks = NULL;
    if (err)
        log_warn("container", "container %s: poststop hook: %s", op->c->id, err->msg);
    remove_finish(op);
}

static void removal_poll(struct loop_timer *t)
{
    struct ctr_op *op = container_of(t, struct ctr_op, poll);
    struct container *c = op->c;
    if (!all_gone(c)) {
        if (op->deadline_ns && loop_now_ns() >= op->deadline_ns) {
            ka_err e;
            c->status = CTR_STOPPED;
            ka_fail(&e, KA_DEADLINE_EXCEEDED,
                    "container %s: processes still running after the removal timeout", c->id);
            op_complete(op, &e);
            return;
        }
        kill_all(c);
        loop_timer_start(c->sb->loop, &op->poll, REMOVE_POLL_NS);
        return;
    }
    /* poststop hooks only for a container that existed (not for a failed create) */
    if (op->kind == OP_REMOVE && c->hooks_poststop.n) {
        cleanup_free char *state = state_json(c, "stopped");
        ka_err e;
        op->hooks =
            hooks_run_async(c->sb->loop, &c->hooks_poststop, state ? state : "{}", poststop_done, op, &e);
        if (op->hooks)
            return;
        log_warn("container", "container %s: poststop hooks: %s", c->id, e.msg);
    }
    remove_finish(op);
}

/* Kill, wait for every process to be gone, poststop hooks, release, free. */
static void teardown(struct ctr_op *op)
{
    struct container *c = op->c;
    fz_abort(c); /* before the kill: a pause in progress would keep v1 processes from dying */
    c->status = CTR_REMOVING;
    c->op = op;
    list_for_each (pos, &c->procs) {
        struct process *p = container_of(pos, struct process, link);
        spawn_abandon(p);
    }
    kill_all(c);
    loop_timer_init(&op->poll, removal_poll);
    removal_poll(&op->poll);
}

int container_remove(struct container *c, uint32_t timeout_s, rt_done_cb done, void *arg, struct ctr_op **opp,
                     ka_err *e)
{
    if (c->op)
        return ka_fail(e, KA_FAILED_PRECONDITION, "container %s is busy (%s)", c->id,
                       container_status_name(c->status));
    struct ctr_op *op = op_new(OP_REMOVE, c, done, arg, e);
    if (!op)
        return -1;
    if (timeout_s)
        op->deadline_ns = loop_now_ns() + (uint64_t)timeout_s * 1000000000ull;
    if (opp)
        *opp = op;
    teardown(op);
    return 0;
}

/* ---- create ---- */

static void create_failed(struct ctr_op *op, const ka_err *err)
{
    struct container *c = op->c;
    op->err = *err;
    ka_wrap(&op->err, "create container %s", c->id);
    log_warn("container", "%s", op->err.msg);
    teardown(op);
}

static void prestart_done(void *arg, const ka_err *err)
{
    struct ctr_op *op = arg;
    op->hooks = NULL;
    spawn_prestart_done(op->p, err);
}

static void create_prestart(struct process *p)
{
    struct ctr_op *op = spawn_ctx(p);
    struct container *c = op->c;
    ka_err e;
    cleanup_free char *state = state_json(c, "creating");
    op->hooks = hooks_run_async(c->sb->loop, &c->hooks_prestart, state ? state : "{}", prestart_done, op, &e);
    if (!op->hooks)
        spawn_prestart_done(p, &e);
}

static void create_ready(struct process *p, const ka_err *err)
{
    struct ctr_op *op = spawn_ctx(p);
    struct container *c = op->c;
    if (err) {
        create_failed(op, err);
        return;
    }
    c->status = CTR_CREATED;
    struct sandbox *sb = c->sb;
    if (sb->pidns_fd < 0 && (op->cfg.clone_flags & CLONE_NEWPID)) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/ns/pid", p->pid);
        sb->pidns_fd = open(path, O_RDONLY | O_CLOEXEC); /* the first container's pid ns is the sandbox's */
    }
    log_info("container", "container %s created (init pid %d)", c->id, p->pid);
    op_complete(op, NULL);
}

static void spawn_unused_started(struct process *p, const ka_err *err)
{
    (void)p;
    (void)err;
}

static const struct spawn_ops create_ops = {
    .prestart = create_prestart,
    .ready = create_ready,
    .started = spawn_unused_started,
};

static Grpc__Spec *copy_spec(const Grpc__Spec *spec, ka_err *e)
{
    size_t n = protobuf_c_message_get_packed_size(&spec->base);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        ka_fail_errno(e, ENOMEM, "spec");
        return NULL;
    }
    protobuf_c_message_pack(&spec->base, buf);
    Grpc__Spec *copy = grpc__spec__unpack(NULL, n, buf);
    free(buf);
    if (!copy)
        ka_fail_errno(e, ENOMEM, "spec");
    return copy;
}

static int check_spec(const Grpc__Spec *spec, ka_err *e)
{
    if (!spec->process)
        return ka_fail(e, KA_INVALID_ARGUMENT, "the spec has no process");
    if (!spec->root || !spec->root->path[0])
        return ka_fail(e, KA_INVALID_ARGUMENT, "the spec has no root path");
    if (!spec->linux)
        return ka_fail(e, KA_INVALID_ARGUMENT, "Spec does not contain linux field");
    if (spec->root->path[0] != '/')
        return ka_fail(e, KA_INVALID_ARGUMENT, "root path %s is not absolute", spec->root->path);
    struct stat st;
    if (stat(spec->root->path, &st) < 0 || !S_ISDIR(st.st_mode))
        return ka_fail(e, KA_INVALID_ARGUMENT, "rootfs %s does not exist or is not a directory",
                       spec->root->path);
    if (spec->process->n_args == 0)
        return ka_fail(e, KA_INVALID_ARGUMENT, "the process has no arguments");
    return rootfs_validate(spec, e);
}

/* <bundle>/config.json with root.path = <bundle>/rootfs, as upstream writes it (hooks may read it). */
static int write_config_json(struct container *c, ka_err *e)
{
    char *spec_root = c->spec->root->path;
    c->spec->root->path = c->rootfs;
    cleanup_free char *json = oci_config_json(c->spec);
    c->spec->root->path = spec_root;
    cleanup_free char *path = NULL;
    if (!json || asprintf(&path, "%s/config.json", c->bundle) < 0)
        return ka_fail_errno(e, ENOMEM, "config.json");
    cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    size_t len = strlen(json);
    if (fd < 0 || write(fd, json, len) != (ssize_t)len)
        return ka_fail_errno(e, errno ? errno : EIO, "write %s", path);
    return 0;
}

static int make_bundle(struct container *c, ka_err *e)
{
    if (asprintf(&c->bundle, "%s/%s", c->sb->cfg.base_dir, c->id) < 0 ||
        asprintf(&c->rootfs, "%s/rootfs", c->bundle) < 0)
        return ka_fail_errno(e, ENOMEM, "bundle");
    struct stat st;
    if (lstat(c->bundle, &st) == 0)
        return ka_fail(e, KA_ALREADY_EXISTS, "bundle directory %s already exists", c->bundle);
    if (fs_mkdir_p(c->rootfs, 0711, e) < 0)
        return -1;
    if (mount(c->spec->root->path, c->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
        return ka_fail_errno(e, errno, "bind %s to %s", c->spec->root->path, c->rootfs);
    c->rootfs_mounted = true;
    return write_config_json(c, e);
}

static int setup_cgroup(struct container *c, struct ctr_op *op, ka_err *e)
{
    cleanup_free char *path = NULL;
    if (cgroup_path_for(c->spec->linux->cgroupspath, c->id, &path, e) < 0 ||
        cgroup_create(c->sb->cgenv, path, &c->cg, e) < 0 ||
        cgroup_apply(c->cg, c->spec->linux->resources, false, e) < 0)
        return -1;
    op->cfg.cgroup_fd = cgroup_v2_dirfd(c->cg);
    op->cfg.cg = c->cg;
    if ((op->cfg.clone_flags & CLONE_NEWCGROUP) && op->cfg.cgroup_fd < 0) {
        /* a cgroup namespace is rooted where the process is when it is created: on v1 the child enters
         * its cgroup only after clone, so it unshares the namespace itself afterwards */
        op->cfg.clone_flags &= ~(unsigned long)CLONE_NEWCGROUP;
        op->cfg.late_cgroupns = true;
    }
    return 0;
}

static void fill_rootfs_ctx(struct container *c, struct spawn_cfg *cfg)
{
    struct rootfs_ctx *r = &cfg->rootfs;
    r->spec = c->spec;
    r->rootfs = c->rootfs;
    r->no_pivot = c->sb->cfg.no_pivot;
    r->in_userns = (cfg->clone_flags & CLONE_NEWUSER) != 0;
    r->cgroup_ns = (cfg->clone_flags & CLONE_NEWCGROUP) != 0 || cfg->late_cgroupns;
    r->cgroup_v2 = cgroup_env_mode(c->sb->cgenv) == CGROUP_V2;
    const char *const *names, *const *dirs;
    r->n_cgroups = c->cg ? cgroup_hierarchies(c->cg, &names, &dirs) : 0;
    r->cgroup_names = r->n_cgroups ? names : NULL;
    r->cgroup_dirs = r->n_cgroups ? dirs : NULL;
}

static int create_steps(struct ctr_op *op, const Grpc__CreateContainerRequest *req, ka_err *e)
{
    struct container *c = op->c;
    struct spawn_cfg *cfg = &op->cfg;
    const Grpc__Process *proc = c->spec->process;
    cfg->init = true;
    cfg->proc = proc;
    cfg->join_pidfd = -1;
    cfg->cgroup_fd = -1;
    if (creds_prepare(proc, &cfg->creds, e) < 0 || caps_prepare(proc->capabilities, &cfg->caps, e) < 0 ||
        seccomp_compile(c->spec->linux->seccomp, &c->seccomp, e) < 0 || prepare_hooks(c, e) < 0)
        return -1;
    cfg->have_caps = proc->capabilities != NULL;
    cfg->seccomp = c->seccomp;
    if (storage_add(&c->sb->storages, req->storages, req->n_storages, &c->refs, e) < 0)
        return -1;
    if (plan_namespaces(op, req, e) < 0 || make_bundle(c, e) < 0 || setup_cgroup(c, op, e) < 0)
        return -1;
    cfg->hostname = c->spec->hostname[0] ? c->spec->hostname : c->sb->hostname;
    cfg->do_rootfs = true;
    fill_rootfs_ctx(c, cfg);
    cfg->prestart = c->hooks_prestart.n > 0;
    c->state_json = state_json(c, "created");
    cfg->create_hooks = &c->hooks_create_container;
    cfg->create_state_json = c->state_json;
    cfg->start_hooks = &c->hooks_start_container;
    cfg->start_state_json = c->state_json;

    struct process *p = process_new(c, c->id, true, proc->terminal);
    if (!p)
        return ka_fail_errno(e, ENOMEM, "process");
    list_add_tail(&c->procs, &p->link);
    c->init = p;
    op->p = p;
    int stdio[3];
    if (make_stdio(c, p, proc, stdio, e) < 0)
        return -1;
    memcpy(cfg->stdio, stdio, sizeof(stdio));
    cfg->tty = p->tty;
    int rc = spawn_process(c->sb->loop, p, cfg, &create_ops, op, e);
    close_child_stdio(stdio);
    return rc;
}

int container_create(struct sandbox *sb, const Grpc__CreateContainerRequest *req, rt_done_cb done, void *arg,
                     struct ctr_op **opp, ka_err *e)
{
    if (validate_id(req->container_id, "container", e) < 0)
        return -1;
    if (sandbox_find(sb, req->container_id))
        return ka_fail(e, KA_ALREADY_EXISTS, "container %s already exists", req->container_id);
    if (!req->oci)
        return ka_fail(e, KA_INVALID_ARGUMENT, "CreateContainerRequest has no OCI spec");
    if (sb->n_containers >= SANDBOX_MAX_CONTAINERS)
        return ka_fail(e, KA_RESOURCE_EXHAUSTED, "the sandbox already has %d containers",
                       SANDBOX_MAX_CONTAINERS);
    if (check_spec(req->oci, e) < 0)
        return ka_wrap(e, "container %s", req->container_id);

    struct container *c = calloc(1, sizeof(*c));
    if (!c || !(c->id = strdup(req->container_id))) {
        free(c);
        return ka_fail_errno(e, ENOMEM, "container");
    }
    c->sb = sb;
    list_init(&c->procs);
    c->status = CTR_CREATING;
    list_add_tail(&sb->containers, &c->link);
    sb->n_containers++;
    struct ctr_op *op = op_new(OP_CREATE, c, done, arg, e);
    if (!op) {
        container_free(c);
        return -1;
    }
    c->op = op;
    c->spec = copy_spec(req->oci, e);
    if (!c->spec || create_steps(op, req, e) < 0) {
        ka_wrap(e, "create container %s", c->id);
        /* undo synchronously what was done; a child that was started is killed and reaped by the loop */
        op->done = NULL;
        op->err = *e;
        if (c->init && c->init->pid > 0 && !c->init->exited) {
            teardown(op); /* finishes from the loop; the RPC gets the error now */
            return -1;
        }
        ka_err e2;
        bool busy;
        if (release(c, &busy, &e2) < 0)
            log_warn("container", "%s", e2.msg);
        c->op = NULL;
        op->c = NULL;
        op_complete(op, NULL);
        container_free(c);
        return -1;
    }
    if (opp)
        *opp = op;
    return 0;
}

/* ---- start ---- */

static void poststart_done(void *arg, const ka_err *err)
{
    struct ctr_op *op = arg;
    op->hooks = NULL;
    if (err) /* OCI: a poststart failure is only a warning */
        log_warn("container", "container %s: poststart hook: %s", op->c->id, err->msg);
    op_complete(op, NULL);
}

static void start_started(struct process *p, const ka_err *err)
{
    struct ctr_op *op = spawn_ctx(p);
    struct container *c = op->c;
    spawn_abandon(p);
    if (err) {
        c->status = CTR_STOPPED;
        ka_err e = *err;
        ka_wrap(&e, "start container %s", c->id);
        op_complete(op, &e);
        return;
    }
    c->status = CTR_RUNNING;
    log_info("container", "container %s started", c->id);
    if (!c->sb->id || strcmp(c->id, c->sb->id) != 0) { /* the sandbox container gets no OOM watch */
        ka_err oe;
        if (oom_watch_start(c, &c->oom, &oe) < 0)
            log_warn("container", "container %s: no OOM events: %s", c->id, oe.msg);
    }
    if (c->hooks_poststart.n) {
        cleanup_free char *state = state_json(c, "running");
        ka_err e;
        op->hooks =
            hooks_run_async(c->sb->loop, &c->hooks_poststart, state ? state : "{}", poststart_done, op, &e);
        if (op->hooks)
            return;
        log_warn("container", "container %s: poststart hooks: %s", c->id, e.msg);
    }
    op_complete(op, NULL);
}

static void spawn_unused_prestart(struct process *p)
{
    (void)p;
}

static void spawn_unused_ready(struct process *p, const ka_err *err)
{
    (void)p;
    (void)err;
}

static const struct spawn_ops start_ops = {
    .prestart = spawn_unused_prestart,
    .ready = spawn_unused_ready,
    .started = start_started,
};

int container_start(struct container *c, rt_done_cb done, void *arg, struct ctr_op **opp, ka_err *e)
{
    if (c->op || c->freezing)
        return ka_fail(e, KA_FAILED_PRECONDITION, "container %s is busy (%s)", c->id,
                       container_status_name(c->status));
    if (c->status != CTR_CREATED || !c->init || c->init->exited)
        return ka_fail(e, KA_FAILED_PRECONDITION, "container %s is %s, not created", c->id,
                       c->init && c->init->exited ? "stopped" : container_status_name(c->status));
    struct ctr_op *op = op_new(OP_START, c, done, arg, e);
    if (!op)
        return -1;
    /* the parked init's spawn state now reports to the start operation */
    if (spawn_rebind(c->init, &start_ops, op) < 0 || spawn_start_exec(c->init, e) < 0) {
        free(op);
        return -1;
    }
    c->op = op;
    op->p = c->init;
    if (opp)
        *opp = op;
    return 0;
}

/* ---- exec ---- */

static void exec_ready(struct process *p, const ka_err *err)
{
    struct ctr_op *op = spawn_ctx(p);
    struct container *c = op->c;
    spawn_abandon(p);
    if (err) {
        ka_err e = *err;
        ka_wrap(&e, "exec %s in container %s", p->exec_id, c->id);
        if (p->exited) {
            list_del(&p->link);
            process_free(p);
        } else {
            kill(p->pid, SIGKILL); /* reaped by the loop; the entry goes with the container or a wait */
        }
        op_complete(op, &e);
        return;
    }
    op_complete(op, NULL);
}

static const struct spawn_ops exec_ops = {
    .prestart = spawn_unused_prestart,
    .ready = exec_ready,
    .started = spawn_unused_started,
};

/* The namespaces of the init that differ from the agent's, for setns(pidfd, flags). */
static int init_ns_flags(pid_t pid)
{
    static const struct {
        const char *name;
        int flag;
    } t[] = {{"mnt", CLONE_NEWNS},  {"ipc", CLONE_NEWIPC},       {"uts", CLONE_NEWUTS},
             {"net", CLONE_NEWNET}, {"cgroup", CLONE_NEWCGROUP}, {"user", CLONE_NEWUSER}};
    int flags = 0;
    for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
        char a[64], b[64];
        struct stat sa, sb;
        snprintf(a, sizeof(a), "/proc/self/ns/%s", t[i].name);
        snprintf(b, sizeof(b), "/proc/%d/ns/%s", pid, t[i].name);
        if (stat(a, &sa) == 0 && stat(b, &sb) == 0 && (sa.st_ino != sb.st_ino || sa.st_dev != sb.st_dev))
            flags |= t[i].flag;
    }
    return flags;
}

static size_t count_procs(struct container *c)
{
    size_t n = 0;
    list_for_each (pos, &c->procs)
        n++;
    return n;
}

int container_exec(struct container *c, const Grpc__ExecProcessRequest *req, rt_done_cb done, void *arg,
                   struct ctr_op **opp, ka_err *e)
{
    ka_err e2;
    if (!req->process)
        return ka_fail(e, KA_INVALID_ARGUMENT, "Unable to parse process from ExecProcessRequest");
    if (!req->process->n_args)
        return ka_fail(e, KA_INVALID_ARGUMENT, "the process has no arguments");
    if (validate_id(req->exec_id, "exec", e) < 0)
        return -1;
    if (strcmp(req->exec_id, c->id) == 0 || container_find_process(c, req->exec_id, &e2))
        return ka_fail(e, KA_ALREADY_EXISTS, "container %s already has a process %s", c->id, req->exec_id);
    if (c->status != CTR_RUNNING && c->status != CTR_CREATED)
        return ka_fail(e, KA_FAILED_PRECONDITION, "container %s is %s", c->id,
                       container_status_name(c->status));
    if (c->freezing && c->freezing->kind == FZ_PAUSE)
        return ka_fail(e, KA_FAILED_PRECONDITION, "container %s is being paused", c->id);
    if (!c->init || c->init->exited || c->init->pidfd < 0)
        return ka_fail(e, KA_FAILED_PRECONDITION, "container %s: its init process is not running", c->id);
    if (count_procs(c) >= PROCS_PER_CTR)
        return ka_fail(e, KA_RESOURCE_EXHAUSTED, "container %s has %d processes", c->id, PROCS_PER_CTR);

    struct ctr_op *op = op_new(OP_EXEC, c, done, arg, e);
    if (!op)
        return -1;
    struct spawn_cfg *cfg = &op->cfg;
    const Grpc__Process *proc = req->process;
    /* the runtime sends no capabilities for an exec: the container's apply (upstream) */
    const Grpc__LinuxCapabilities *caps =
        proc->capabilities ? proc->capabilities : c->spec->process->capabilities;
    cfg->proc = proc;
    cfg->join_pidfd = c->init->pidfd;
    cfg->join_pidfd_flags = init_ns_flags(c->init->pid);
    cfg->pidns_fd = c->init->pidfd;
    cfg->cgroup_fd = c->cg ? cgroup_v2_dirfd(c->cg) : -1;
    cfg->cg = c->cg;
    cfg->seccomp = c->seccomp;
    cfg->have_caps = caps != NULL;
    if (creds_prepare(proc, &cfg->creds, e) < 0 || caps_prepare(caps, &cfg->caps, e) < 0)
        goto fail;
    /* the exec'd process must not be killed by the (possibly protected) oom_score_adj of the agent */
    struct process *p = process_new(c, req->exec_id, false, proc->terminal);
    if (!p) {
        ka_fail_errno(e, ENOMEM, "process");
        goto fail;
    }
    int stdio[3];
    if (make_stdio(c, p, proc, stdio, e) < 0) {
        process_free(p);
        goto fail;
    }
    memcpy(cfg->stdio, stdio, sizeof(stdio));
    cfg->tty = p->tty;
    list_add_tail(&c->procs, &p->link);
    op->p = p;
    int rc = spawn_process(c->sb->loop, p, cfg, &exec_ops, op, e);
    close_child_stdio(stdio);
    if (rc < 0) {
        list_del(&p->link);
        if (p->pid > 0 && !p->exited) {
            list_add_tail(&c->procs, &p->link); /* killed by spawn; forgotten when the container goes */
        } else {
            process_free(p);
        }
        goto fail;
    }
    if (opp)
        *opp = op;
    return 0;
fail:
    free(op);
    return ka_wrap(e, "exec %s in container %s", req->exec_id, c->id);
}

/* ---- signals ---- */

/* Upstream: SIGTERM to an init that neither blocks, ignores nor catches it would be ignored by the kernel
 * (pid 1 of its namespace), so SIGKILL is sent instead. */
static bool handles_sigterm(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return true;
    bool handled = false;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "SigBlk:", 7) && strncmp(line, "SigIgn:", 7) && strncmp(line, "SigCgt:", 7))
            continue;
        unsigned long long mask = strtoull(line + 7, NULL, 16);
        if (mask & (1ull << (SIGTERM - 1)))
            handled = true;
    }
    fclose(f);
    return handled;
}

static int signal_process(struct process *p, int sig, ka_err *e)
{
    if (p->exited)
        return 0;
    int rc = p->pidfd >= 0 ? (int)syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) : kill(p->pid, sig);
    if (rc < 0 && errno != ESRCH)
        return ka_fail_errno(e, errno, "signal %d to process %s", sig, p->exec_id);
    return 0;
}

int container_signal(struct container *c, const char *exec_id, uint32_t sig, ka_err *e)
{
    if (sig == 0 || sig >= 65)
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid signal %u", sig);
    struct process *p = container_find_process(c, exec_id, e);
    if (!p)
        return -1;
    int s = (int)sig;
    if (p->init && s == SIGTERM && !p->exited && !handles_sigterm(p->pid))
        s = SIGKILL;
    return signal_process(p, s, e);
}

static void fz_signalled(void *arg, const ka_err *err)
{
    struct ctr_freeze *op = arg;
    op->sop = NULL;
    if (!err) {
        fz_end(op, NULL);
        return;
    }
    ka_err e = *err;
    ka_wrap(&e, "container %s", op->c->id);
    fz_end(op, &e);
}

int container_signal_all(struct container *c, uint32_t sig, rt_done_cb done, void *arg,
                         struct ctr_freeze **opp, ka_err *e)
{
    if (container_signal(c, "", sig, e) < 0)
        return -1;
    if (!c->cg)
        return 1;
    /* at once: SIGKILL needs no freezing; another operation owns the container (and its cgroup) meanwhile */
    if (sig == SIGKILL || c->op || c->freezing)
        return cgroup_signal_all(c->cg, (int)sig, e) < 0 ? ka_wrap(e, "container %s", c->id) : 1;
    struct ctr_freeze *op = fz_new(c, FZ_SIGNAL, done, arg, e);
    if (!op)
        return -1;
    op->sop = cgroup_signal_all_async(c->sb->loop, c->cg, (int)sig, fz_signalled, op, e);
    if (!op->sop) {
        free(op);
        return ka_wrap(e, "container %s", c->id);
    }
    c->freezing = op;
    *opp = op;
    return 0;
}

static void forget_now(struct loop_defer *d)
{
    struct process *p = container_of(d, struct process, forget);
    list_del(&p->link);
    process_free(p);
}

void container_forget_after_wait(struct process *p)
{
    if (p->init)
        return;
    p->forget.cb = forget_now;
    loop_defer(p->c->sb->loop, &p->forget);
}
