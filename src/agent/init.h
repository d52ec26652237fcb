/* PID 1 duties of the agent when it is the VM's init: the early mounts (proc, sysfs, devtmpfs, /dev/shm,
 * /dev/pts, /run, cgroups), /dev/ptmx, the controlling terminal, PATH, the hostname and the loopback link. */
#pragma once
#include <stdbool.h>

#include "../util/err.h"

/* Before the configuration is read (it may be on the kernel command line in /proc). */
int init_early_mounts(ka_err *e);
/* After it: cgroups (v2 when unified, else one v1 hierarchy per enabled controller), console, hostname, lo.
 */
int init_setup(bool unified_cgroup, ka_err *e);
