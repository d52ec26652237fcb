/* watchable-bind storages (spec §4.2): a copy of a guest path (a Kubernetes configmap or secret on the
 * host-shared filesystem, which delivers no inotify events) kept on a tmpfs and synced again every 2 s, so
 * that inotify inside the container works on the copy.
 *
 * The copy engine is bounded — at most WATCHABLE_MAX_ENTRIES files and symlinks (and as many directories)
 * and WATCHABLE_MAX_BYTES of file data per storage — so that a sync can run on the event loop; a larger
 * source is reported as WATCHABLE_TOO_BIG and storage.c bind-mounts it instead. Nothing is followed: the
 * source root is opened as a bind source is, everything below it and everything in the destination with
 * O_NOFOLLOW / AT_SYMLINK_NOFOLLOW, and symlinks are copied as symlinks. Files inside a directory are written
 * under a temporary name and renamed into place, so a reader never sees half a file (a source that is itself
 * a file is rewritten in place: a bind mount of the mount point holds that inode). Only what differs (type,
 * size, mtime, mode, owner, link target) is copied; what the source no longer has is removed. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "../loop/loop.h"
#include "../util/err.h"
#include "../util/list.h"

#define WATCHABLE_MAX_ENTRIES 16
#define WATCHABLE_MAX_BYTES   (1u << 20)
#define WATCHABLE_INTERVAL_NS (2ull * 1000000000ull)

enum { WATCHABLE_SYNCED = 0, WATCHABLE_TOO_BIG = 1 };

/* Make dst_name in dst_dir a copy of source (an absolute path to a directory or a regular file; a
 * directory's dst_name must exist and be a directory, a file's a regular file). Returns WATCHABLE_SYNCED,
 * WATCHABLE_TOO_BIG (nothing written) when the source exceeds the limits, or -1 with e set (what was
 * copied before the failure stays). */
int watchable_sync(const char *source, int dst_dir, const char *dst_name, ka_err *e);
/* Remove everything inside the directory dst_name of dst_dir, never crossing into another filesystem (a
 * file or a missing dst_name: nothing to do). */
int watchable_clear(int dst_dir, const char *dst_name, ka_err *e);

/* The watched storages of one storage set and the timer that syncs them (armed only while one is watched). */
struct watchable {
    struct list watches; /* struct watch */
    struct loop *loop;
    struct loop_timer timer;
};

struct watch;
/* The source now exceeds the limits: the callee must watch_remove(w) (and bind-mount the source). */
typedef void (*watch_overflow_cb)(struct watchable *ws, struct watch *w, void *data);

void watchable_init(struct watchable *ws);
/* Sync source onto dst_name in dst_dir (the fd is duplicated) every WATCHABLE_INTERVAL_NS from now on; label
 * (the mount point) names it in logs. */
struct watch *watch_add(struct watchable *ws, struct loop *l, const char *source, int dst_dir,
                        const char *dst_name, const char *label, watch_overflow_cb overflow, void *data,
                        ka_err *e);
void watch_remove(struct watchable *ws, struct watch *w);
/* One round over every watch, as the timer does (tests). */
void watchable_sync_all(struct watchable *ws);
