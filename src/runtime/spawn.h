/* Spawning container processes with clone3: the parent side (an asynchronous state machine driven by the
 * event loop over a SOCK_SEQPACKET sync socket) and the child side (the OCI setup sequence, spec §4.6, in
 * child.c). No re-exec: the child is a copy of the single-threaded agent and execs the workload at the end.
 *
 * Protocol (parent -> child / child -> parent):
 *   GO            parent has put the child in its v1 cgroup and written its uid/gid maps
 *   PRESTART      child: rootfs prepared, run the prestart hooks     -> PRESTART_DONE (or the child is
 * killed) READY         child: fully set up, binary found; exec processes exec right away, an init waits for
 * START START         parent: StartContainer                              -> the child execs (the sync socket
 *                 closes on exec: that EOF is "started")
 *   PTY + fd      child (terminal processes): the pty master, allocated inside the container's devpts so
 *                 that ttyname() works there; the agent's own pty is the fallback when it has none
 *   ERROR errno text   child: a step failed; it exits */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "creds.h"
#include "hooks.h"
#include "oci.pb-c.h"
#include "rootfs.h"
#include "seccomp.h"
#include "../loop/loop.h"
#include "../util/err.h"

#define SPAWN_MAX_JOIN 8

struct cgroup;
struct process;

struct spawn_cfg {
    bool init;
    const Grpc__Process *proc;
    unsigned long clone_flags; /* CLONE_NEW* namespaces to create */
    bool late_cgroupns;        /* v1: unshare the cgroup namespace after GO, once in the container's cgroup */
    size_t n_join;             /* namespaces to join in the child (not pid) */
    int join_fds[SPAWN_MAX_JOIN];
    int join_types[SPAWN_MAX_JOIN];
    int join_pidfd; /* exec: setns(pidfd, join_pidfd_flags) into the init's namespaces, -1 if none */
    int join_pidfd_flags;
    int pidns_fd;         /* pid namespace for the child (set by the parent around clone3), -1 = none */
    int cgroup_fd;        /* v2 cgroup dir for CLONE_INTO_CGROUP, -1 = none */
    struct cgroup *cg;    /* v1: entered by the parent before GO */
    const char *hostname; /* set when a new UTS namespace is created */
    bool do_rootfs;       /* new mount namespace: rootfs_prepare/finish with .rootfs */
    struct rootfs_ctx rootfs;
    bool prestart; /* ask the parent to run prestart hooks between prepare and finish */
    const struct hook_list *create_hooks; /* createContainer hooks: in the container, before pivot_root */
    const char *create_state_json;
    const Grpc__LinuxIDMapping *const *uid_maps, *const *gid_maps;
    size_t n_uid_maps, n_gid_maps;
    struct creds creds;
    struct caps_sets caps;
    bool have_caps;
    const struct seccomp_prog *seccomp;
    int stdio[3]; /* child ends */
    bool tty;
    const struct hook_list *start_hooks; /* startContainer hooks, run in the container before exec */
    const char *start_state_json;
};

struct spawn_ops {
    /* The child asks for the prestart hooks; call spawn_prestart_done() when they finished. */
    void (*prestart)(struct process *p);
    /* Setup finished (err NULL) or failed. For an exec process this is the end of spawning. */
    void (*ready)(struct process *p, const ka_err *err);
    /* After spawn_start_exec: the workload was exec'd (err NULL) or could not be. */
    void (*started)(struct process *p, const ka_err *err);
};

/* Clone the process described by cfg into p (p->pid, p->pidfd, p->child set) and drive its setup.
 * Returns -1 with e set if nothing could be started (then no callback runs). */
int spawn_process(struct loop *l, struct process *p, const struct spawn_cfg *cfg, const struct spawn_ops *ops,
                  void *ctx, ka_err *e);
void spawn_prestart_done(struct process *p, const ka_err *err);
/* Send the next callbacks to other ops/ctx (CreateContainer parks the init, StartContainer releases it). */
int spawn_rebind(struct process *p, const struct spawn_ops *ops, void *ctx);
/* Release a parked init (StartContainer). */
int spawn_start_exec(struct process *p, ka_err *e);
/* Stop talking to the child (it is being killed) and forget the callbacks. */
void spawn_abandon(struct process *p);
/* The context pointer given to spawn_process. */
void *spawn_ctx(const struct process *p);

/* Child side (child.c): runs the setup and execs; never returns. */
__attribute__((noreturn)) void child_main(const struct spawn_cfg *cfg, int sync_fd);

enum sync_type {
    SYNC_GO = 1,
    SYNC_PRESTART,
    SYNC_PRESTART_DONE,
    SYNC_READY,
    SYNC_START,
    SYNC_ERROR,
    SYNC_PTY, /* child: the master of a pty opened in the container's devpts (fd attached) */
};

struct sync_msg {
    uint32_t type;
    int32_t errnum;
    char text[1024];
};
