/* GetMetrics (spec §3.21, §5.7): the Prometheus text exposition (format 0.0.4) of the agent process
 * (/proc/self: CPU time, memory, threads, fds, I/O) and of the guest (/proc: load, tasks, CPU time, vmstat,
 * netdev, diskstats, meminfo) with upstream's metric names, labels and HELP texts. Families are sorted by
 * name and samples by labels, as the Rust prometheus encoder does; an unreadable source is skipped (logged),
 * as upstream. Reading /proc is fast, so this is synchronous. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "../util/err.h"

/* The text must fit a reply: a 4 MiB frame minus room for the envelope. */
#define METRICS_MAX ((size_t)(4u << 20) - (64u << 10))
/* Samples kept per family (interfaces, disks, CPUs, vmstat keys are host/guest-sized). */
#define METRICS_FAMILY_MAX 32768

/* proc_root is "/proc" (tests use a fake tree); scrape_count is the value of kata_agent_scrape_count.
 * *out is malloc'd and NUL-terminated. RESOURCE_EXHAUSTED when the text would exceed METRICS_MAX. */
int metrics_render(const char *proc_root, uint64_t scrape_count, char **out, size_t *len, ka_err *e);
