/* Sandbox and container storages (agent.proto Storage): "ephemeral" (tmpfs, keeping its options such as
 * size and mode, which upstream drops; "fsgid=N" chowns the mount point to group N and adds the setgid bit),
 * hugetlbfs "ephemeral" storages ("pagesize=N,size=M" in bytes: the pool of that page size grows by M/N pages
 * while the storage is mounted, and shrinks back after), "local" (a directory: "mode=0777" and "fsgid=N"
 * options), bind mounts ("bind" fstype or a "bind"/"rbind"
 * option, any driver whose source is a guest path), shared filesystems ("virtio-fs", "9p", "overlayfs":
 * mount(source, fstype, options)) and disks ("blk", "scsi", "nvdimm", "mmioblk": the source must be a block
 * device — devices.c has already turned PCI paths and SCSI addresses into the guest's /dev path), and
 * "watchable-bind" (a container's only: a copy of a guest path on a tmpfs over the watchable directory, kept
 * in sync every 2 s by watchable.c, or a bind mount of the source when it is too large to copy).
 * Storages are refcounted by mount point: a second use of the same mount point takes a reference instead
 * of mounting again (and is released with that container). Mount points must be absolute and stay inside
 * the allowed base directory (/run/kata-containers by default): they are resolved with openat2
 * RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS, created component by component, and mounted through
 * /proc/self/fd/N. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "agent.pb-c.h"
#include "watchable.h"
#include "../util/err.h"
#include "../util/list.h"

struct storage_set {
    struct list mounts;     /* struct storage_mount, refcounted */
    char *base;             /* mount points must stay inside this directory */
    const char *sysfs_root; /* "/sys" (hugepage pools); not owned */
    struct loop *loop;      /* the agent's loop (watchable-bind timer); not owned */
    struct watchable watchable;
};

void storage_set_init(struct storage_set *s, const char *base);
/* Unmount and forget everything (DestroySandbox). */
int storage_set_release_all(struct storage_set *s, ka_err *e);

/* What one sandbox or container holds: the mount points it took a reference on. */
struct storage_refs {
    size_t n;
    char **mount_points;
    bool sandbox; /* the sandbox's own storages: watchable-bind is refused (upstream: a container's only) */
};

/* Mount (or reference) each storage in order. On failure, what this call did is undone, e is set
 * ("storage 2 (ephemeral at /run/kata-containers/sandbox/shm): mount: EINVAL") and refs is unchanged.
 * Unknown drivers: UNIMPLEMENTED "storage driver <d> is not supported yet". watchable-bind needs s->loop. */
int storage_add(struct storage_set *s, Grpc__Storage *const *storages, size_t n, struct storage_refs *refs,
                ka_err *e);
/* After a remount (UpdateEphemeralMounts): the mount point's options become these, "remount" dropped, so
 * that later users asking for the new options share it. */
int storage_set_options(struct storage_set *s, const char *mount_point, char *const *options, size_t n,
                        ka_err *e);
/* Drop the references (unmounting, and removing the mount point directory the agent created, when the
 * last reference goes). Errors are collected, everything is attempted. */
int storage_release(struct storage_set *s, struct storage_refs *refs, ka_err *e);
