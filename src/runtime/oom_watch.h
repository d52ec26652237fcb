/* Watching a container's memory cgroup for OOM kills (v2: inotify on memory.events, v1: an eventfd on
 * memory.oom_control via cgroup.event_control) and queueing one event per kill into the sandbox's OOM
 * queue for GetOOMEvent. Started when a container starts (not for the sandbox container), stopped when it
 * is removed. */
#pragma once
#include "../util/err.h"

struct container;
struct oom_watch;

/* 0, or -1 with e set (the caller logs it: a container without an OOM watch still runs). */
int oom_watch_start(struct container *c, struct oom_watch **out, ka_err *e);
void oom_watch_stop(struct oom_watch *w);
