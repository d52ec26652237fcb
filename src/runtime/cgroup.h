/* cgroups v1 and v2 behind one interface: layout detection, per-container cgroups, resources, process
 * lists, freezing, killing and removal. Runs in the agent (parent) process; all writes are to cgroupfs.
 *
 * Layouts: v2 when /sys/fs/cgroup is cgroup2; v1 (per-controller hierarchies under /sys/fs/cgroup/<ctl>)
 * otherwise. On a hybrid host (v1 controllers plus cgroup2 at /sys/fs/cgroup/unified) the v1 controllers
 * are used, unless prefer_unified (agent.unified_cgroup_hierarchy) is set, in which case the cgroup2
 * hierarchy at /sys/fs/cgroup/unified is used with whatever controllers it has. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "oci.pb-c.h"
#include "../util/err.h"

enum cgroup_mode {
    CGROUP_V1,
    CGROUP_V2,
};

struct cgroup_env; /* the detected layout (mount points per controller) */
struct cgroup;     /* one container's cgroup in every hierarchy */
struct cgroup_freeze_op;
struct cgroup_signal_op;
struct loop;
typedef void (*cgroup_done_cb)(void *arg, const ka_err *err);

/* root: where cgroupfs is mounted ("/sys/fs/cgroup"; tests may pass another root). */
int cgroup_env_detect(const char *root, bool prefer_unified, struct cgroup_env **env, ka_err *e);
void cgroup_env_free(struct cgroup_env *env);
enum cgroup_mode cgroup_env_mode(const struct cgroup_env *env);

/* Container cgroup path from Linux.CgroupsPath, as upstream's cgroupfs driver: "" -> "/<cid>"; otherwise
 * every
 * ':' becomes '/' ("kubepods:besteffort:c1" -> "/kubepods/besteffort/c1"), and a leading '/' is added.
 * Rejects "..", empty components and control characters. *out is malloc'd. */
int cgroup_path_for(const char *cgroups_path, const char *container_id, char **out, ka_err *e);

/* Create (mkdir -p) path in every hierarchy; v2: enable the needed controllers in the parents'
 * cgroup.subtree_control. An already existing directory is an error (ALREADY_EXISTS): two containers never
 * share a cgroup. */
int cgroup_create(struct cgroup_env *env, const char *path, struct cgroup **out, ka_err *e);
/* Validate everything first (no partial change on an invalid value: INVALID_ARGUMENT naming the field),
 * then write: memory (limit, reservation, swap, swappiness, kernel, kernel TCP, disable OOM killer), cpu
 * (shares or v2 weight, quota, period, realtime, cpus, mems), pids, block I/O weights and throttles, hugetlb,
 * network class/priorities (v1), devices (v1 devices.allow/deny with the default rules; v2 an eBPF
 * BPF_PROG_TYPE_CGROUP_DEVICE program attached to the cgroup, replacing any earlier one).
 * Zero values mean "leave alone" except where the OCI/proto3 rules of the spec (4.9.2, 3.1.a) say otherwise.
 * update=true for UpdateContainer: if the kernel refuses a write part-way, the single-value files already
 * written get their previous values back. NULL res is a no-op. */
int cgroup_apply(struct cgroup *cg, const Grpc__LinuxResources *res, bool update, ka_err *e);
/* Directory fd of the v2 cgroup, for clone3(CLONE_INTO_CGROUP); -1 on v1. Owned by cg. */
int cgroup_v2_dirfd(const struct cgroup *cg);
/* Move pid into the cgroup (cgroup.procs of every hierarchy). */
int cgroup_enter(struct cgroup *cg, pid_t pid, ka_err *e);
/* Pids in the cgroup (recursive). *pids malloc'd. */
int cgroup_pids(struct cgroup *cg, pid_t **pids, size_t *n, ka_err *e);
/* Freeze or thaw, blocking: returns only once the state is reached (v1 freezer.state FROZEN/THAWED, v2
 * cgroup.freeze + cgroup.events frozen 1/0), or fails after ~2 s (a freeze is then undone). It sleeps: not
 * for the agent's loop (tests only; the agent uses cgroup_freeze_async). */
int cgroup_freeze(struct cgroup *cg, bool frozen, ka_err *e);

/* The same without blocking: writes the state, checks it, and checks again from a loop timer (after 1, 2, 4,
 * 8, then every 10 ms; v1 rewrites FROZEN every 100 ms). done(arg, err) is called exactly once, from the loop
 * (deferred when the state is reached at once); on success cg's frozen flag follows. After 2 s: DEADLINE_
 * EXCEEDED, and a freeze is undone (thawed). NULL with e set if nothing could be started (done is then never
 * called); FAILED_PRECONDITION while another freeze or thaw of cg is in progress. */
struct cgroup_freeze_op *cgroup_freeze_async(struct loop *l, struct cgroup *cg, bool frozen,
                                             cgroup_done_cb done, void *arg, ka_err *e);
/* Stop an operation before its done ran (done is never called; NULL is a no-op). The cgroup is left as
 * before a freeze (thawed again, not waited for, unless it was frozen already) and thawed after a thaw (the
 * state stays written; the frozen flag is cleared). Call it before cgroup_destroy/cgroup_free. */
void cgroup_freeze_cancel(struct cgroup_freeze_op *op);
/* True once a freeze of cg succeeded, until a thaw (or a SIGKILL through cgroup_signal_all) undid it. */
bool cgroup_is_frozen(const struct cgroup *cg);

/* Send sig to every process of the cgroup now, without freezing; never blocks. SIGKILL: cgroup.kill on v2
 * (Linux 5.14+), otherwise every listed pid, and then a frozen cgroup is thawed (written, not waited for: v1
 * tasks die only once thawed). A process forked meanwhile may escape: a caller that needs every process gone
 * checks again (container removal polls). Errors: only a failure to list the processes. */
int cgroup_signal_all(struct cgroup *cg, int sig, ka_err *e);
/* Signal every process with the cgroup frozen, without blocking: freeze (cgroup_freeze_async), signal each
 * pid, thaw; done(arg, err) once from the loop when the whole sequence is over. A cgroup frozen already (a
 * paused container) is signalled at once and stays frozen: only a freeze made here is undone. SIGKILL, a
 * cgroup busy with another freeze, or a freeze that fails (logged): signalled at once without freezing
 * (cgroup_signal_all), done deferred. NULL with e set on ENOMEM. */
struct cgroup_signal_op *cgroup_signal_all_async(struct loop *l, struct cgroup *cg, int sig,
                                                 cgroup_done_cb done, void *arg, ka_err *e);
/* Finish now without waiting (done is never called; NULL is a no-op): processes not signalled yet are
 * signalled at once, a freeze made here is undone (thaw written, not waited for), a thaw in progress stays
 * written. */
void cgroup_signal_cancel(struct cgroup_signal_op *op);

/* rmdir in every hierarchy (children first), one attempt each, no waiting: EBUSY while processes remain (or
 * are still exiting just after a kill) -> error naming the cgroup with errnum EBUSY; the caller retries. */
int cgroup_destroy(struct cgroup *cg, ka_err *e);
void cgroup_free(struct cgroup *cg);
const char *cgroup_get_path(const struct cgroup *cg);
/* Directory of one controller for this cgroup ("memory", "pids", "cpu", ...; on v2 any name gives the
 * unified directory). For the container's cgroup mounts, stats and tests. NULL if absent. */
const char *cgroup_controller_dir(const struct cgroup *cg, const char *controller);
/* Every (controller hierarchy name, directory) pair of this cgroup, for bind-mounting into a container's
 * /sys/fs/cgroup on v1 (name is the mount point basename, e.g. "cpu,cpuacct" or "memory"). */
size_t cgroup_hierarchies(const struct cgroup *cg, const char *const **names, const char *const **dirs);
