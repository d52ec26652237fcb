/* The container's root file system, set up in the child inside its new mount namespace (OCI order, spec
 * §4.7): propagation, the rootfs bind, every spec mount (bind/rbind with propagation flags, proc, sysfs,
 * tmpfs, devpts, mqueue, cgroup/cgroup2, overlay, ...), /dev (default nodes, symlinks, spec devices),
 * pivot_root (or MS_MOVE + chroot when / is an initramfs), masked paths (files and directories), read-only
 * paths, read-only root, sysctls. Destinations are resolved inside the rootfs without following symlinks
 * out of it (openat2 RESOLVE_IN_ROOT) and mounts target /proc/self/fd/N. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "oci.pb-c.h"
#include "../util/err.h"

struct rootfs_ctx {
    const Grpc__Spec *spec;
    const char *rootfs; /* absolute path of the container rootfs (the bundle's rootfs bind) */
    bool no_pivot;      /* / is an initramfs: MS_MOVE + chroot instead of pivot_root */
    bool in_userns;     /* devices are bind-mounted from the host instead of mknod'ed */
    bool cgroup_ns;     /* the container has its own cgroup namespace */
    bool cgroup_v2;     /* the agent uses cgroup v2 */
    /* v1: the container's cgroup directory per hierarchy, to bind under <dest>/<name> for "cgroup" mounts */
    size_t n_cgroups;
    const char *const *cgroup_names; /* "memory", "cpu,cpuacct", ... */
    const char *const *cgroup_dirs;
};

/* Spec checks that need no side effects, run in the agent before spawning (INVALID_ARGUMENT naming the
 * offending mount, device, path or sysctl): destinations absolute without "..", known mount types and
 * options, device types/paths under /dev, masked/readonly paths absolute, sysctls allowed by the
 * namespaces (spec 4.4: kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.* need ipc; net.* always;
 * kernel.domainname/hostname need uts; anything else is refused). */
int rootfs_validate(const Grpc__Spec *spec, ka_err *e);
/* Before the prestart hooks: propagation of /, the rootfs bind, every spec mount, /dev. */
int rootfs_prepare(const struct rootfs_ctx *ctx, ka_err *e);
/* After the prestart hooks: pivot (or move + chroot), then masked/readonly paths, /dev read-only if asked,
 * read-only root, sysctls, umask 022, cwd "/". */
int rootfs_finish(const struct rootfs_ctx *ctx, ka_err *e);
/* Mount flags parsing shared with the storage handlers: known options set/clear MS_* flags and propagation
 * flags; anything else is appended to data ("a,b"). data must have room for datasz bytes. */
int mount_options_parse(char **opts, size_t n_opts, unsigned long *flags, unsigned long *propagation,
                        char *data, size_t datasz, ka_err *e);
