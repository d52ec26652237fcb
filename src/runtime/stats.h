/* Container management beyond the lifecycle: statistics (StatsContainer: cgroup v1/v2 files and the network
 * devices of the container's network namespace), live resource updates (UpdateContainer), pause/resume
 * through the freezer, and the two mount maintenance RPCs (UpdateEphemeralMounts: tmpfs remounts of the
 * sandbox's ephemeral storages; RemoveStaleVirtiofsShareMounts: stat of the virtio-fs share mounts in a
 * child process). The parsers of the cgroup and procfs file formats are exposed for the unit tests. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent.pb-c.h"
#include "../loop/loop.h"
#include "../util/err.h"

struct container;
struct sandbox;

/* Bounds on what one StatsContainer reply carries (every list is cut there, with a warning). */
#define STATS_MAX_ENTRIES  4096 /* per block I/O list, per-CPU values */
#define STATS_MAX_MEM_KEYS 512  /* memory.stat map */
#define STATS_MAX_IFACES   1024 /* network devices */
#define STATS_MAX_HUGE     16   /* huge page sizes */

/* ---- StatsContainer ---- */

struct ctr_stats; /* the reply and everything it points to */

/* Collect the container's statistics. A controller that is absent leaves its sub-message out (as upstream);
 * unreadable files read as 0. Fails only on ENOMEM. */
int stats_collect(struct container *c, struct ctr_stats **out, ka_err *e);
const Grpc__StatsContainerResponse *stats_reply(const struct ctr_stats *s);
void stats_free(struct ctr_stats *s);

/* ---- parsers (exposed for tests) ---- */

/* Value of `key` in "key value" lines (memory.stat, cpu.stat, cpuacct.stat, memory.events, oom_control). */
bool stats_kv(const char *text, const char *key, uint64_t *out);
/* "max" (or "-1") gives if_max, a number gives itself; anything else 0. */
uint64_t stats_u64_or_max(const char *text, uint64_t if_max);
/* Whitespace separated numbers (cpuacct.usage_percpu), at most max; *out malloc'd. -1 on ENOMEM. */
int stats_u64_list(const char *text, size_t max, uint64_t **out, size_t *n);
/* Every "key value" line, in file order, at most max; free with stats_kv_free. -1 on ENOMEM. */
int stats_kv_all(const char *text, size_t max, char ***keys, uint64_t **vals, size_t *n);
void stats_kv_free(char **keys, uint64_t *vals, size_t n);

struct stats_blkio {
    uint64_t major, minor, value;
    char op[8]; /* "read", "write", "sync", "async", "total", "rios", ... or "" */
};
/* v1 blkio files: "MAJ:MIN Op VALUE" lines (with_op; only Read/Write/Sync/Async/Total are kept, lower-cased,
 * as upstream; the device-less "Total N" line is skipped) or "MAJ:MIN VALUE" lines (time, sectors). */
int stats_parse_blkio_v1(const char *text, bool with_op, size_t max, struct stats_blkio **out, size_t *n);
/* v2 io.stat "MAJ:MIN rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6": one entry per key, ops "read",
 * "write", "rios", "wios", "dbytes", "dios" (upstream's mapping). */
int stats_parse_io_stat(const char *text, size_t max, struct stats_blkio **out, size_t *n);

struct stats_netdev {
    char name[16];
    uint64_t rx_bytes, rx_packets, rx_errors, rx_dropped, tx_bytes, tx_packets, tx_errors, tx_dropped;
};
/* /proc/<pid>/net/dev. */
int stats_parse_net_dev(const char *text, size_t max, struct stats_netdev **out, size_t *n);
/* "hugepages-2048kB" -> "2MB" (upstream's keys); false if the name is not of that form. */
bool stats_hugepage_name(const char *dirent, char *out, size_t n);
/* cpuacct.stat ticks to nanoseconds. */
uint64_t stats_ticks_to_ns(uint64_t ticks, long clk_tck);

/* ---- UpdateContainer (Pause/Resume live in container.c: container_pause/container_resume) ---- */

/* Apply res live (cgroup_apply update=true: everything validated before the first write), widen the cpuset
 * of the ancestors when the new cpus need it, then store a copy of res in the container's spec. */
int ctr_update_resources(struct container *c, const Grpc__LinuxResources *res, ka_err *e);

/* ---- UpdateEphemeralMounts, RemoveStaleVirtiofsShareMounts ---- */

#define EPHEMERAL_MAX_STORAGES 1024

/* Remount each storage (all of them; upstream stops after the first: BUG) with its new options. Each must
 * be an "ephemeral" tmpfs storage whose mount point the sandbox (or one of its containers) mounted;
 * every storage is checked before the first remount. Mount flags not named in the options are kept. */
int mounts_update_ephemeral(struct sandbox *sb, Grpc__Storage *const *storages, size_t n, ka_err *e);

#define VIRTIOFS_SHARE_PREFIX "/run/kata-containers/shared/containers/"

struct virtiofs_scan;
/* stat() every mount point below VIRTIOFS_SHARE_PREFIX (from mountinfo) in a child process, so that a stuck
 * virtio-fs daemon never blocks the loop; done(arg, err) runs from the loop when the child is finished
 * (killed after 10 s). Paths are from `mountinfo` (NULL = /proc/self/mountinfo). */
int virtiofs_scan_start(struct loop *l, const char *mountinfo, void (*done)(void *arg, const ka_err *err),
                        void *arg, struct virtiofs_scan **out, ka_err *e);
/* Forget the callback (the RPC was cancelled); the child still finishes and is reaped. */
void virtiofs_scan_detach(struct virtiofs_scan *s);
/* Mount points below prefix in mountinfo text (octal escapes decoded), at most max; *out malloc'd array of
 * malloc'd strings (free with stats_strv_free). */
int stats_mountinfo_below(const char *text, const char *prefix, size_t max, char ***out, size_t *n);
void stats_strv_free(char **v, size_t n);
