/* The sandbox: CreateSandbox (hostname, DNS, storages, modules, guest hooks, shared namespaces) and
 * DestroySandbox (every container, then the sandbox's own mounts and namespaces). */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "container.h"
#include "../guest/kmod.h"
#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/log.h"

static const char *const hook_dirs[HOOK_KINDS] = {"prestart", "poststart", "poststop"};

int sandbox_init(struct sandbox *sb, struct loop *l, const struct runtime_config *cfg, ka_err *e)
{
    memset(sb, 0, sizeof(*sb));
    sb->loop = l;
    sb->cfg = *cfg;
    sb->ipc_ns_fd = sb->uts_ns_fd = sb->pidns_fd = -1;
    list_init(&sb->containers);
    storage_set_init(&sb->storages, cfg->base_dir);
    sb->storages.sysfs_root = cfg->sysfs_root;
    sb->storages.loop = l;
    sb->refs.sandbox = true;
    return cgroup_env_detect(cfg->cgroup_root, cfg->unified_cgroup, &sb->cgenv, e);
}

struct container *sandbox_find(struct sandbox *sb, const char *id)
{
    list_for_each (pos, &sb->containers) {
        struct container *c = container_of(pos, struct container, link);
        if (strcmp(c->id, id) == 0)
            return c;
    }
    return NULL;
}

/* ---- shared namespaces ---- */

/* A short-lived child creates the IPC and UTS namespaces (and sets the hostname in the UTS one); the
 * agent keeps them alive by bind-mounting their ns files under ns_dir, so its own namespaces never change. */
static int make_shared_namespaces(struct sandbox *sb, ka_err *e)
{
    int ready[2];
    if (fs_mkdir_p(sb->cfg.ns_dir, 0755, e) < 0)
        return -1;
    if (pipe2(ready, O_CLOEXEC) < 0)
        return ka_fail_errno(e, errno, "pipe");
    pid_t pid = fork();
    if (pid < 0) {
        close(ready[0]);
        close(ready[1]);
        return ka_fail_errno(e, errno, "fork");
    }
    if (pid == 0) {
        char ok = 1;
        if (unshare(CLONE_NEWIPC | CLONE_NEWUTS) < 0 ||
            (sb->hostname && sethostname(sb->hostname, strlen(sb->hostname)) < 0))
            ok = 0;
        (void)!write(ready[1], &ok, 1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    char ok = 0;
    ssize_t n = read(ready[0], &ok, 1); /* the child only unshares: this is a short wait */
    close(ready[0]);
    int rc = 0;
    if (n != 1 || !ok) {
        rc = ka_fail(e, KA_INTERNAL, "Failed to setup persistent IPC and UTS namespaces");
    } else {
        static const char *const kinds[] = {"ipc", "uts"};
        int *fds[] = {&sb->ipc_ns_fd, &sb->uts_ns_fd};
        for (int i = 0; i < 2 && rc == 0; i++) {
            char src[64], dst[512];
            snprintf(src, sizeof(src), "/proc/%d/ns/%s", pid, kinds[i]);
            snprintf(dst, sizeof(dst), "%s/%s", sb->cfg.ns_dir, kinds[i]);
            int fd = open(dst, O_CREAT | O_RDONLY | O_CLOEXEC, 0444);
            if (fd >= 0)
                close(fd);
            if (fd < 0 || mount(src, dst, NULL, MS_BIND, NULL) < 0) {
                rc = ka_fail_errno(e, errno, "bind the sandbox %s namespace to %s", kinds[i], dst);
                break;
            }
            *fds[i] = open(dst, O_RDONLY | O_CLOEXEC);
            if (*fds[i] < 0)
                rc = ka_fail_errno(e, errno, "open %s", dst);
        }
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0); /* reaped here, before the loop's SIGCHLD handler looks */
    return rc;
}

static void drop_shared_namespaces(struct sandbox *sb)
{
    static const char *const kinds[] = {"ipc", "uts"};
    int *fds[] = {&sb->ipc_ns_fd, &sb->uts_ns_fd};
    for (int i = 0; i < 2; i++) {
        if (*fds[i] < 0)
            continue;
        close(*fds[i]);
        *fds[i] = -1;
        char dst[512];
        snprintf(dst, sizeof(dst), "%s/%s", sb->cfg.ns_dir, kinds[i]);
        if (umount2(dst, MNT_DETACH) < 0)
            log_warn("sandbox", "umount %s: %s", dst, strerror(errno));
        unlink(dst);
    }
    rmdir(sb->cfg.ns_dir);
}

/* ---- DNS ---- */

static int setup_dns(struct sandbox *sb, char **dns, size_t n, ka_err *e)
{
    struct stat st;
    if (n == 0)
        return 0;
    if (stat(sb->cfg.resolv_conf, &st) < 0)
        return 0; /* as upstream: no resolv.conf in the guest, nothing to cover */
    if (S_ISDIR(st.st_mode))
        return ka_fail(e, KA_INVALID_ARGUMENT, "%s is a directory", sb->cfg.resolv_conf);
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/sandbox", sb->cfg.base_dir);
    snprintf(path, sizeof(path), "%s/resolv.conf", dir);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem)
        return ka_fail_errno(e, ENOMEM, "resolv.conf");
    for (size_t i = 0; i < n; i++) {
        if (strchr(dns[i], '\n')) {
            fclose(mem);
            free(text);
            return ka_fail(e, KA_INVALID_ARGUMENT, "DNS entry %zu contains a newline", i);
        }
        fprintf(mem, "%s\n", dns[i]);
    }
    fclose(mem);
    int rc = fs_mkdir_p(dir, 0755, e);
    if (rc == 0)
        rc = fs_create_file(path, text, len, 0644, e);
    free(text);
    if (rc < 0)
        return -1;
    if (mount(path, sb->cfg.resolv_conf, NULL, MS_BIND, NULL) < 0)
        return ka_fail_errno(e, errno, "bind %s over %s", path, sb->cfg.resolv_conf);
    sb->resolv_mounted = true;
    return 0;
}

/* ---- create / destroy ---- */

static void create_done(void *arg, const ka_err *err)
{
    struct sandbox *sb = arg;
    sb->kmod = NULL;
    if (!err) {
        sb->created = true;
        log_info("sandbox", "sandbox %s created", sb->id ? sb->id : "");
    }
    rt_done_cb done = sb->pending_done;
    void *darg = sb->pending_arg;
    sb->pending_done = NULL;
    if (done)
        done(darg, err);
}

static int scan_guest_hooks(struct sandbox *sb, const char *path, ka_err *e)
{
    if (!path || !path[0])
        return 0;
    for (int k = 0; k < HOOK_KINDS; k++) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s", path);
        if (hooks_scan_guest(dir, hook_dirs[k], &sb->guest_hooks[k], e) < 0)
            return ka_wrap(e, "guest hooks in %s", path);
    }
    return 0;
}

static int set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src && src[0] ? strdup(src) : NULL;
    return src && src[0] && !*dst ? -1 : 0;
}

int sandbox_create(struct sandbox *sb, const Grpc__CreateSandboxRequest *req, rt_done_cb done, void *arg,
                   ka_err *e)
{
    if (sb->created || sb->pending_done)
        return ka_fail(e, KA_ALREADY_EXISTS, "the sandbox was already created");
    if (strlen(req->hostname) > 64)
        return ka_fail(e, KA_INVALID_ARGUMENT, "hostname '%s' is longer than 64 characters", req->hostname);
    if (set_str(&sb->id, req->sandbox_id) < 0 || set_str(&sb->hostname, req->hostname) < 0)
        return ka_fail_errno(e, ENOMEM, "sandbox");
    sb->want_sandbox_pidns = req->sandbox_pidns;
    if (fs_mkdir_p(sb->cfg.base_dir, 0755, e) < 0 || scan_guest_hooks(sb, req->guest_hook_path, e) < 0)
        goto fail;
    if (storage_add(&sb->storages, req->storages, req->n_storages, &sb->refs, e) < 0)
        goto fail;
    if (make_shared_namespaces(sb, e) < 0 || setup_dns(sb, req->dns, req->n_dns, e) < 0)
        goto fail;
    sb->pending_done = done;
    sb->pending_arg = arg;
    sb->kmod = kmod_load_async(sb->loop, sb->cfg.modprobe, req->kernel_modules, req->n_kernel_modules,
                               create_done, sb, e);
    if (!sb->kmod) {
        sb->pending_done = NULL;
        goto fail;
    }
    return 0;
fail : {
    ka_err e2;
    if (sb->resolv_mounted && umount2(sb->cfg.resolv_conf, MNT_DETACH) == 0)
        sb->resolv_mounted = false;
    drop_shared_namespaces(sb);
    if (storage_release(&sb->storages, &sb->refs, &e2) < 0)
        log_warn("sandbox", "%s", e2.msg);
    for (int k = 0; k < HOOK_KINDS; k++)
        hooks_list_free(&sb->guest_hooks[k]);
}
    return ka_wrap(e, "create sandbox");
}

/* Everything of the sandbox itself, once its containers are gone. */
static int release_sandbox(struct sandbox *sb, ka_err *e)
{
    int rc = 0;
    if (sb->resolv_mounted) {
        if (umount2(sb->cfg.resolv_conf, MNT_DETACH) < 0)
            rc = ka_fail_errno(e, errno, "umount %s", sb->cfg.resolv_conf);
        else
            sb->resolv_mounted = false;
    }
    char path[600];
    snprintf(path, sizeof(path), "%s/sandbox/resolv.conf", sb->cfg.base_dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/sandbox", sb->cfg.base_dir);
    rmdir(path);
    drop_shared_namespaces(sb);
    if (sb->pidns_fd >= 0)
        close(sb->pidns_fd);
    sb->pidns_fd = -1;
    ka_err e2;
    if (storage_release(&sb->storages, &sb->refs, &e2) < 0 && rc == 0)
        rc = -1, *e = e2;
    if (storage_set_release_all(&sb->storages, &e2) < 0 && rc == 0)
        rc = -1, *e = e2;
    for (int k = 0; k < HOOK_KINDS; k++)
        hooks_list_free(&sb->guest_hooks[k]);
    return rc;
}

static void destroy_next(void *arg, const ka_err *err);

static void destroy_step(struct sandbox *sb)
{
    ka_err e;
    while (!list_empty(&sb->containers)) {
        struct container *c = container_of(sb->containers.next, struct container, link);
        if (c->op) { /* something else is in progress on it: abandon that, removal wins */
            ctr_op_detach(c->op);
        }
        if (container_remove(c, 0, destroy_next, sb, NULL, &e) == 0)
            return;
        /* busy: try again shortly */
        log_warn("sandbox", "%s", e.msg);
        destroy_next(sb, &e);
        return;
    }
    int rc = release_sandbox(sb, &e);
    sb->created = false;
    sb->destroying = false;
    rt_done_cb done = sb->pending_done;
    void *darg = sb->pending_arg;
    sb->pending_done = NULL;
    if (done)
        done(darg, rc < 0 ? &e : NULL);
}

static void destroy_next(void *arg, const ka_err *err)
{
    struct sandbox *sb = arg;
    if (err) {
        ka_err e = *err;
        rt_done_cb done = sb->pending_done;
        void *darg = sb->pending_arg;
        sb->pending_done = NULL;
        sb->destroying = false;
        ka_wrap(&e, "destroy sandbox");
        if (done)
            done(darg, &e);
        return;
    }
    destroy_step(sb);
}

int sandbox_destroy(struct sandbox *sb, rt_done_cb done, void *arg, ka_err *e)
{
    if (sb->destroying || sb->pending_done)
        return ka_fail(e, KA_FAILED_PRECONDITION, "the sandbox is busy");
    sb->destroying = true;
    sb->pending_done = done;
    sb->pending_arg = arg;
    destroy_step(sb);
    return 0;
}

void sandbox_detach(struct sandbox *sb)
{
    sb->pending_done = NULL;
}

void sandbox_fini(struct sandbox *sb)
{
    if (sb->kmod)
        kmod_load_cancel(sb->kmod);
    ka_err e;
    if (release_sandbox(sb, &e) < 0)
        log_warn("sandbox", "%s", e.msg);
    cgroup_env_free(sb->cgenv);
    free(sb->id);
    free(sb->hostname);
}
