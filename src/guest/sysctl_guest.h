/* Guest control (spec §3.24, §3.25, §3.27, §3.28): onlining hot-plugged CPUs and memory blocks through sysfs
 * (retried from a loop timer, in small batches so the loop never stalls), widening the containers' cpusets
 * to the online CPUs, memory hot-add by probe, reseeding the kernel RNG and setting the clock.
 * sysfs paths are under a root: "/sys", or a fake tree in tests (--sysfs-root). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../loop/loop.h"
#include "../util/err.h"

struct sandbox;

#define GUEST_ONLINE_RETRIES 100 /* rounds over the CPUs, as upstream */
#define GUEST_ONLINE_WAIT_MS 50  /* between rounds */
#define GUEST_PROBE_MAX      65536
#define GUEST_ENTROPY_MAX    (1u << 20)
#define GUEST_TIME_SEC_MAX   8276644036LL /* the kernel's TIME_SETTOD_SEC_MAX (year 2232) */

/* done(arg, NULL | err): called exactly once, from a loop callback (never from the starting function). */
typedef void (*guest_done_cb)(void *arg, const ka_err *err);

struct guest_online;
/* OnlineCPUMem: if nb_cpus > 0, write "1" to <sysfs>/devices/system/cpu/cpuN/online files reading "0" until
 * nb_cpus were onlined, in up to 100 rounds 50 ms apart ("failed to online N CPU(s) after 100 retries");
 * unless cpu_only, every offline <sysfs>/devices/system/memory/memoryN/online gets "1" (errors skipped);
 * then, if nb_cpus > 0 and sb is not NULL, the containers' cpusets are widened to
 * <sysfs>/devices/system/cpu/online (guest_cpuset_widen). */
struct guest_online *guest_online_async(struct loop *l, const char *sysfs, struct sandbox *sb,
                                        uint32_t nb_cpus, bool cpu_only, guest_done_cb done, void *arg,
                                        ka_err *e);
void guest_online_cancel(struct guest_online *o);

/* The online CPU list, e.g. "0-3,5" (trimmed, malloc'd). */
int guest_online_cpus(const char *sysfs, char **out, ka_err *e);
/* For every container with a cgroup: each ancestor cgroup below the hierarchy root whose cpuset.cpus is
 * set gets cpus (top down); then the container gets its spec's Resources.CPU.Cpus if set, else cpus
 * (cgroup_apply). Every container is attempted; the first error is returned. */
int guest_cpuset_widen(struct sandbox *sb, const char *cpus, ka_err *e);

struct guest_probe;
/* MemHotplugByProbe: each address, formatted "0x1A0000000" (guest_probe_format), written to
 * <sysfs>/devices/system/memory/probe, a few per loop pass; stops at the first error. */
struct guest_probe *guest_probe_async(struct loop *l, const char *sysfs, const uint64_t *addrs, size_t n,
                                      guest_done_cb done, void *arg, ka_err *e);
void guest_probe_cancel(struct guest_probe *p);
/* Rust's {:#X}: lower-case 0x, upper-case hex digits. */
void guest_probe_format(uint64_t addr, char *buf, size_t n);

/* ReseedRandomDev: RNDADDENTROPY of data into dev ("/dev/random"), then RNDRESEEDCRNG. Empty data is
 * INVALID_ARGUMENT "missing entropy data"; more than GUEST_ENTROPY_MAX bytes too. */
int guest_reseed_random(const char *dev, const uint8_t *data, size_t len, ka_err *e);

/* SetGuestDateTime: sec in [0, GUEST_TIME_SEC_MAX) and usec in [0, 999999], not both 0 (an empty request),
 * else INVALID_ARGUMENT; then settimeofday. */
int guest_set_time_check(int64_t sec, int64_t usec, ka_err *e);
int guest_set_time(int64_t sec, int64_t usec, ka_err *e);
