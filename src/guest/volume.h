/* Volumes: GetVolumeStats (spec §3.32: statfs of a guest path) and ResizeVolume (§3.33, which upstream
 * leaves unimplemented): grow the ext2/3/4 or xfs file system mounted at a guest path to the size of its
 * (already grown) block device, with resize2fs or xfs_growfs run as a child process watched by the loop. */
#pragma once
#include <stdint.h>
#include <sys/types.h>

#include "../loop/loop.h"
#include "../util/err.h"

struct volume_stats {
    uint64_t bytes_total, bytes_available, bytes_used;
    uint64_t inodes_total, inodes_available, inodes_used;
};

/* statfs of an absolute path (opened O_PATH, so a FIFO cannot block): available bytes are f_bavail (what
 * unprivileged writers can use, as df shows), used = total - f_bfree as upstream. Relative path:
 * INVALID_ARGUMENT; missing: NOT_FOUND. */
int volume_get_stats(const char *path, struct volume_stats *out, ka_err *e);

/* One /proc/self/mountinfo entry (mount point and source unescaped). */
struct volume_mount {
    unsigned major, minor;
    char mount_point[4096];
    char source[4096];
    char fstype[64];
};

/* The mount of device major:minor that holds path (canonical): the entry with that device whose mount point
 * is the longest component-wise prefix of path, else the first entry with that device. NOT_FOUND if none. */
int volume_find_mount(const char *mountinfo, unsigned major, unsigned minor, const char *path,
                      struct volume_mount *out, ka_err *e);

struct volume_resize_opts {
    const char
        *tool_dirs; /* where resize2fs / xfs_growfs are looked up; NULL = "/sbin:/usr/sbin:/bin:/usr/bin" */
    const char *sysfs; /* NULL = "/sys" (DEVNAME of a device the mount table does not name) */
};

struct volume_resize;
/* Grow the file system at path (absolute) to its block device's size. size, when not 0, is the size the host
 * gave the device: a device still smaller is FAILED_PRECONDITION (the host has not grown it yet). A block
 * device path needs nothing (done(NULL) is deferred). done(arg, NULL | err) is called exactly once from the
 * loop. NULL with e set when nothing started (done not called). */
struct volume_resize *volume_resize_async(struct loop *l, const struct volume_resize_opts *o,
                                          const char *path, uint64_t size,
                                          void (*done)(void *arg, const ka_err *err), void *arg, ka_err *e);
/* Kill the tool (its process group) and forget the resize; done is not called. */
void volume_resize_cancel(struct volume_resize *r);
