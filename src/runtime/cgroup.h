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
 * update=true for UpdateContainer. NULL res is a no-op. */
int cgroup_apply(struct cgroup *cg, const Grpc__LinuxResources *res, bool update, ka_err *e);
/* Directory fd of the v2 cgroup, for clone3(CLONE_INTO_CGROUP); -1 on v1. Owned by cg. */
int cgroup_v2_dirfd(const struct cgroup *cg);
/* Move pid into the cgroup (cgroup.procs of every hierarchy). */
int cgroup_enter(struct cgroup *cg, pid_t pid, ka_err *e);
/* Pids in the cgroup (recursive). *pids malloc'd. */
int cgroup_pids(struct cgroup *cg, pid_t **pids, size_t *n, ka_err *e);
/* Freeze or thaw; returns only once the state is reached (v1 freezer.state FROZEN/THAWED, v2
 * cgroup.freeze + cgroup.events frozen 1/0), or fails after ~2 s. */
int cgroup_freeze(struct cgroup *cg, bool frozen, ka_err *e);
/* Send sig to every process in the cgroup: freeze, signal each, thaw (v2 with SIGKILL: cgroup.kill). */
int cgroup_signal_all(struct cgroup *cg, int sig, ka_err *e);
/* rmdir in every hierarchy (children first). EBUSY while processes remain -> error naming the cgroup. */
int cgroup_destroy(struct cgroup *cg, ka_err *e);
void cgroup_free(struct cgroup *cg);
const char *cgroup_get_path(const struct cgroup *cg);
/* Directory of one controller for this cgroup ("memory", "pids", "cpu", ...; on v2 any name gives the
 * unified directory). For the container's cgroup mounts, stats and tests. NULL if absent. */
const char *cgroup_controller_dir(const struct cgroup *cg, const char *controller);
/* Every (controller hierarchy name, directory) pair of this cgroup, for bind-mounting into a container's
 * /sys/fs/cgroup on v1 (name is the mount point basename, e.g. "cpu,cpuacct" or "memory"). */
size_t cgroup_hierarchies(const struct cgroup *cg, const char *const **names, const char *const **dirs);
