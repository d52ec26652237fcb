/* The sandbox: what CreateSandbox sets up (hostname, DNS, storages, kernel modules, guest hooks, the shared
 * IPC and UTS namespaces, the shared pid namespace) and the containers it holds. All state is in memory. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "agent.pb-c.h"
#include "hooks.h"
#include "../guest/storage.h"
#include "../loop/loop.h"
#include "../util/err.h"
#include "../util/list.h"

struct container;
struct cgroup_env;
struct kmod_load;
struct oom_queue;

struct runtime_config {
    const char *base_dir;    /* "/run/kata-containers": bundles, sandbox files */
    const char *ns_dir;      /* "/run/sandbox-ns": persistent ipc/uts namespace files */
    const char *cgroup_root; /* "/sys/fs/cgroup" */
    const char *modprobe;    /* "/sbin/modprobe" */
    const char *resolv_conf; /* "/etc/resolv.conf" */
    bool unified_cgroup;     /* agent.unified_cgroup_hierarchy */
    long pipe_size;          /* agent.container_pipe_size, 0 = kernel default */
    bool no_pivot;           /* "/" is an initramfs: MS_MOVE + chroot */
    const char *sysfs_root;  /* "/sys" (hugepage pools of hugetlbfs storages) */
};

enum { HOOK_PRESTART, HOOK_POSTSTART, HOOK_POSTSTOP, HOOK_KINDS };

#define SANDBOX_MAX_CONTAINERS 1024

typedef void (*rt_done_cb)(void *arg, const ka_err *err);

struct sandbox {
    struct loop *loop;
    struct runtime_config cfg;
    struct cgroup_env *cgenv;
    bool created; /* CreateSandbox succeeded */
    bool destroying;
    char *id;
    char *hostname;
    struct list containers;
    size_t n_containers;
    int ipc_ns_fd, uts_ns_fd; /* shared namespaces (also bind-mounted under ns_dir), -1 = none */
    int pidns_fd;             /* pid namespace shared with sandbox_pidns containers, -1 = none */
    bool want_sandbox_pidns;
    struct hook_list guest_hooks[HOOK_KINDS];
    struct storage_set storages;
    struct storage_refs refs;
    bool resolv_mounted;
    struct kmod_load *kmod;
    struct oom_queue *oom; /* where OOM watches queue their events (the agent's GetOOMEvent queue) */
    rt_done_cb pending_done;
    void *pending_arg;
};

int sandbox_init(struct sandbox *sb, struct loop *l, const struct runtime_config *cfg, ka_err *e);
/* Release what is left (agent exit). */
void sandbox_fini(struct sandbox *sb);
struct container *sandbox_find(struct sandbox *sb, const char *id);
/* CreateSandbox; done is called once (possibly before this returns 0). */
int sandbox_create(struct sandbox *sb, const Grpc__CreateSandboxRequest *req, rt_done_cb done, void *arg,
                   ka_err *e);
/* DestroySandbox: remove every container, then the sandbox's mounts and namespaces. */
int sandbox_destroy(struct sandbox *sb, rt_done_cb done, void *arg, ka_err *e);
/* Forget the callback of a pending create/destroy (the RPC was cancelled); the work goes on. */
void sandbox_detach(struct sandbox *sb);
