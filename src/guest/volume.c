/* Volumes: statfs for GetVolumeStats, and ResizeVolume through resize2fs / xfs_growfs children of the loop.
 */
#include "volume.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../loop/child_run.h"
#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/log.h"

#define SUB       "volume"
#define TAIL_MAX  512
#define TOOL_DIRS "/sbin:/usr/sbin:/bin:/usr/bin"

/* ---- stats ---- */

static int open_volume(const char *path, ka_err *e)
{
    if (!path || path[0] != '/')
        return ka_fail(e, KA_INVALID_ARGUMENT, "volume path \"%s\" is not absolute", path ? path : "");
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? ka_fail(e, KA_NOT_FOUND, "volume path %s does not exist", path)
                               : ka_fail_errno(e, errno, "open %s", path);
    return fd;
}

int volume_get_stats(const char *path, struct volume_stats *out, ka_err *e)
{
    cleanup_close int fd = open_volume(path, e);
    struct statfs st;
    if (fd < 0)
        return -1;
    if (fstatfs(fd, &st) < 0)
        return ka_fail_errno(e, errno, "statfs %s", path);
    uint64_t bsize = (uint64_t)st.f_bsize;
    out->bytes_total = (uint64_t)st.f_blocks * bsize;
    out->bytes_available = (uint64_t)st.f_bavail * bsize;
    out->bytes_used = ((uint64_t)st.f_blocks - (uint64_t)st.f_bfree) * bsize;
    out->inodes_total = (uint64_t)st.f_files;
    out->inodes_available = (uint64_t)st.f_ffree;
    out->inodes_used = (uint64_t)st.f_files - (uint64_t)st.f_ffree;
    return 0;
}

/* ---- mount table ---- */

/* Copy a mountinfo field, decoding the \ooo escapes of space, tab, newline and backslash. */
static void unescape(char *dst, size_t cap, const char *src, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap; i++) {
        if (src[i] == '\\' && i + 3 < len && src[i + 1] >= '0' && src[i + 1] <= '3' && src[i + 2] >= '0' &&
            src[i + 2] <= '7' && src[i + 3] >= '0' && src[i + 3] <= '7') {
            dst[n++] = (char)((src[i + 1] - '0') * 64 + (src[i + 2] - '0') * 8 + (src[i + 3] - '0'));
            i += 3;
            continue;
        }
        dst[n++] = src[i];
    }
    dst[n] = '\0';
}

/* Field i (0-based, space separated) of [s, end): start and length; false if missing. */
static bool field(const char *s, const char *end, int i, const char **f, size_t *len)
{
    for (int k = 0;; k++) {
        while (s < end && *s == ' ')
            s++;
        if (s >= end)
            return false;
        const char *b = s;
        while (s < end && *s != ' ')
            s++;
        if (k == i) {
            *f = b;
            *len = (size_t)(s - b);
            return true;
        }
    }
}

static bool parse_line(const char *line, const char *end, struct volume_mount *m)
{
    const char *f, *dash = NULL;
    size_t len;
    for (const char *p = line; p + 3 <= end; p++) {
        if (p[0] == ' ' && p[1] == '-' && p[2] == ' ') {
            dash = p;
            break;
        }
    }
    if (!dash || !field(line, dash, 2, &f, &len) || sscanf(f, "%u:%u", &m->major, &m->minor) != 2)
        return false;
    if (!field(line, dash, 4, &f, &len))
        return false;
    unescape(m->mount_point, sizeof(m->mount_point), f, len);
    if (!field(dash + 3, end, 0, &f, &len))
        return false;
    unescape(m->fstype, sizeof(m->fstype), f, len);
    if (!field(dash + 3, end, 1, &f, &len))
        len = 0;
    unescape(m->source, sizeof(m->source), f, len);
    return true;
}

/* Length of mount point mp if it is a component-wise prefix of path, else -1. */
static long prefix_len(const char *mp, const char *path)
{
    size_t n = strlen(mp);
    if (strcmp(mp, "/") == 0)
        return 1;
    if (strncmp(mp, path, n) != 0 || (path[n] != '/' && path[n] != '\0'))
        return -1;
    return (long)n;
}

int volume_find_mount(const char *mountinfo, unsigned major, unsigned minor, const char *path,
                      struct volume_mount *out, ka_err *e)
{
    struct volume_mount *m = malloc(sizeof(*m));
    if (!m)
        return ka_fail_errno(e, ENOMEM, "mountinfo");
    long best = -2;
    for (const char *line = mountinfo; *line;) {
        const char *end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        if (parse_line(line, end, m) && m->major == major && m->minor == minor) {
            long pl = prefix_len(m->mount_point, path);
            if (pl > best) {
                best = pl;
                *out = *m;
            }
        }
        line = *end ? end + 1 : end;
    }
    free(m);
    if (best == -2)
        return ka_fail(e, KA_NOT_FOUND, "no mount of device %u:%u holds %s", major, minor, path);
    return 0;
}

/* ---- the block device ---- */

static bool is_dev(const char *path, dev_t dev)
{
    struct stat st;
    return path[0] == '/' && stat(path, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == dev;
}

/* The device node: the mount's source, else /dev/block/M:m, else /dev/<DEVNAME from sysfs>. */
static int find_device(const struct volume_mount *m, const char *sysfs, char *out, size_t cap, ka_err *e)
{
    dev_t dev = makedev(m->major, m->minor);
    if (is_dev(m->source, dev)) {
        snprintf(out, cap, "%s", m->source);
        return 0;
    }
    snprintf(out, cap, "/dev/block/%u:%u", m->major, m->minor);
    if (is_dev(out, dev))
        return 0;
    char uevent[512];
    cleanup_free char *text = NULL;
    ka_err ignored;
    snprintf(uevent, sizeof(uevent), "%s/dev/block/%u:%u/uevent", sysfs, m->major, m->minor);
    if (fs_read_file(uevent, &text, NULL, &ignored) == 0) {
        char *p = strstr(text, "DEVNAME=");
        if (p) {
            p += strlen("DEVNAME=");
            p[strcspn(p, "\n")] = '\0';
            snprintf(out, cap, "/dev/%s", p);
            if (!strstr(p, "..") && is_dev(out, dev))
                return 0;
        }
    }
    return ka_fail(e, KA_FAILED_PRECONDITION, "no device node for %u:%u (mounted from %s)", m->major,
                   m->minor, m->source);
}

static int device_size(const char *dev, uint64_t *size, ka_err *e)
{
    cleanup_close int fd = open(dev, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return ka_fail_errno(e, errno, "open %s", dev);
    if (ioctl(fd, BLKGETSIZE64, size) < 0)
        return ka_fail_errno(e, errno, "size of %s", dev);
    return 0;
}

static int find_tool(const char *dirs, const char *name, char *out, size_t cap, ka_err *e)
{
    const char *d = dirs;
    while (*d) {
        size_t n = strcspn(d, ":");
        snprintf(out, cap, "%.*s/%s", (int)n, d, name);
        if (n && access(out, X_OK) == 0)
            return 0;
        d += n + (d[n] == ':');
    }
    return ka_fail(e, KA_FAILED_PRECONDITION, "%s is not installed in the guest (looked in %s)", name, dirs);
}

/* ---- the resize child ---- */

struct volume_resize {
    struct loop *l;
    struct child_run run;     /* stdout and stderr in one pipe */
    char what[PATH_MAX + 64]; /* "resize2fs /dev/vdb" for messages */
    struct loop_defer defer;
    void (*done)(void *arg, const ka_err *err);
    void *arg;
};

static void resize_free(struct volume_resize *r)
{
    child_run_cancel(&r->run);
    loop_defer_cancel(&r->defer);
    free(r);
}

static void finish(struct volume_resize *r, const ka_err *err)
{
    void (*done)(void *arg, const ka_err *err) = r->done;
    void *arg = r->arg;
    ka_err copy;
    if (err)
        copy = *err;
    resize_free(r);
    done(arg, err ? &copy : NULL);
}

static void on_defer(struct loop_defer *d)
{
    finish(container_of(d, struct volume_resize, defer), NULL);
}

static void on_exited(struct child_run *run, int status)
{
    struct volume_resize *r = container_of(run, struct volume_resize, run);
    const struct child_out *o = &run->out;
    size_t len = o->len;
    while (len && (o->tail[len - 1] == '\n' || o->tail[len - 1] == ' '))
        len--;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        log_info(SUB, "%s: done", r->what);
        finish(r, NULL);
        return;
    }
    ka_err e;
    const char *cut = o->total > o->len ? "..." : "";
    if (WIFSIGNALED(status))
        ka_fail(&e, KA_INTERNAL, "%s: killed by signal %d: %s%.*s", r->what, WTERMSIG(status), cut, (int)len,
                o->tail);
    else
        ka_fail(&e, KA_INTERNAL, "%s: exit status %d: %s%.*s", r->what, WEXITSTATUS(status), cut, (int)len,
                o->tail);
    finish(r, &e);
}

static int spawn(struct volume_resize *r, char *const argv[], ka_err *e)
{
    struct child_spec s = {.argv = argv, .merge_err = true, .out_tail = TAIL_MAX};
    if (child_run_start(r->l, &r->run, &s, on_exited, e) < 0)
        return -1;
    log_info(SUB, "%s (pid %d)", r->what, (int)r->run.pid);
    return 0;
}

static struct volume_resize *resize_new(struct loop *l, void (*done)(void *, const ka_err *), void *arg,
                                        ka_err *e)
{
    struct volume_resize *r = calloc(1, sizeof(*r));
    if (!r) {
        ka_fail_errno(e, ENOMEM, "resize");
        return NULL;
    }
    r->l = l;
    child_run_init(&r->run);
    r->done = done;
    r->arg = arg;
    loop_defer_init(&r->defer, on_defer);
    return r;
}

/* The mount holding the (open) volume. */
static int volume_mount_of(int fd, const char *path, struct volume_mount *m, ka_err *e)
{
    struct stat st;
    char real[PATH_MAX], proc[64];
    cleanup_free char *mountinfo = NULL;
    if (fstat(fd, &st) < 0)
        return ka_fail_errno(e, errno, "stat %s", path);
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(proc, real, sizeof(real) - 1);
    if (n <= 0)
        return ka_fail_errno(e, errno, "resolve %s", path);
    real[n] = '\0';
    if (fs_read_file("/proc/self/mountinfo", &mountinfo, NULL, e) < 0)
        return -1;
    return volume_find_mount(mountinfo, major(st.st_dev), minor(st.st_dev), real, m, e);
}

/* resize2fs for ext2/3/4 (on the device), xfs_growfs for xfs (on the mount point). */
static int pick_tool(const struct volume_mount *m, const char *dirs, char *tool, size_t cap, bool *ext,
                     ka_err *e)
{
    *ext = strcmp(m->fstype, "ext2") == 0 || strcmp(m->fstype, "ext3") == 0 || strcmp(m->fstype, "ext4") == 0;
    if (!*ext && strcmp(m->fstype, "xfs") != 0)
        return ka_fail(e, KA_FAILED_PRECONDITION, "cannot grow a %s file system: only ext2/3/4 and xfs",
                       m->fstype);
    return find_tool(dirs, *ext ? "resize2fs" : "xfs_growfs", tool, cap, e);
}

/* The device node, which must already have the size the host asked for (when it gave one). */
static int check_device(const struct volume_mount *m, const char *sysfs, uint64_t size, char *dev, size_t cap,
                        ka_err *e)
{
    uint64_t have = 0;
    if (find_device(m, sysfs, dev, cap, e) < 0 || (size && device_size(dev, &have, e) < 0))
        return -1;
    if (size && have < size)
        return ka_fail(e, KA_FAILED_PRECONDITION, "%s has %llu bytes, fewer than the requested %llu", dev,
                       (unsigned long long)have, (unsigned long long)size);
    return 0;
}

static int start_resize(struct volume_resize *r, int fd, const char *path, const struct volume_resize_opts *o,
                        uint64_t size, ka_err *e)
{
    const char *dirs = o && o->tool_dirs ? o->tool_dirs : TOOL_DIRS;
    const char *sysfs = o && o->sysfs ? o->sysfs : "/sys";
    char dev[PATH_MAX], tool[PATH_MAX];
    bool ext;
    struct volume_mount *m = malloc(sizeof(*m));
    if (!m)
        return ka_fail_errno(e, ENOMEM, "resize");
    int rc = volume_mount_of(fd, path, m, e);
    if (rc == 0)
        rc = pick_tool(m, dirs, tool, sizeof(tool), &ext, e);
    if (rc == 0)
        rc = check_device(m, sysfs, size, dev, sizeof(dev), e);
    if (rc == 0) {
        char *argv_ext[] = {tool, dev, NULL};
        char *argv_xfs[] = {tool, "-d", m->mount_point, NULL};
        snprintf(r->what, sizeof(r->what), "%s %s", ext ? "resize2fs" : "xfs_growfs",
                 ext ? dev : m->mount_point);
        rc = spawn(r, ext ? argv_ext : argv_xfs, e);
    }
    free(m);
    return rc;
}

struct volume_resize *volume_resize_async(struct loop *l, const struct volume_resize_opts *o,
                                          const char *path, uint64_t size,
                                          void (*done)(void *arg, const ka_err *err), void *arg, ka_err *e)
{
    cleanup_close int fd = open_volume(path, e);
    struct stat st;
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) < 0) {
        ka_fail_errno(e, errno, "stat %s", path);
        return NULL;
    }
    struct volume_resize *r = resize_new(l, done, arg, e);
    if (!r)
        return NULL;
    if (S_ISBLK(st.st_mode)) { /* a raw block volume: the kernel already sees the new size */
        loop_defer(l, &r->defer);
        return r;
    }
    if (start_resize(r, fd, path, o, size, e) < 0) {
        ka_wrap(e, "resize volume %s", path);
        resize_free(r);
        return NULL;
    }
    return r;
}

void volume_resize_cancel(struct volume_resize *r)
{
    if (r)
        resize_free(r); /* kills a running tool (its process group) */
}
