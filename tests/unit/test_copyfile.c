/* CopyFile and volume helpers: lexical split, confined resolution (every escape), chunked transfers, stale
 * temp files, directories and symlinks, in a temporary directory; mountinfo parsing and statfs. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest/copyfile.h"
#include "guest/volume.h"
#include "loop/loop.h"
#include "util/fs.h"
#include "util/log.h"
#include "unit.h"

static char g_dir[128];

/* Log lines go to stderr: stdout is TAP. */
__attribute__((constructor)) static void logs_to_stderr(void)
{
    ka_log_set_fd(2);
}

static const char *tmp(const char *name)
{
    static char bufs[8][PATH_MAX];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, PATH_MAX, "%s/%s", g_dir, name);
    return b;
}

static void setup(void)
{
    ka_err e;
    snprintf(g_dir, sizeof(g_dir), "/tmp/ka-copyfile-XXXXXX");
    if (!mkdtemp(g_dir))
        abort();
    if (fs_mkdir_p(tmp("base/sub"), 0755, &e) < 0 || fs_mkdir_p(tmp("outside"), 0755, &e) < 0)
        abort();
}

static void teardown(void)
{
    ka_err e;
    if (fs_remove_tree(g_dir, &e) < 0)
        printf("# cleanup: %s\n", e.msg);
}

static struct copyfile *new_cf(bool no_tmpfile, uint64_t stale_ns)
{
    ka_err e;
    struct copyfile_opts o = {.base_dir = tmp("base"), .no_tmpfile = no_tmpfile, .stale_ns = stale_ns};
    struct copyfile *cf = copyfile_new(NULL, &o, &e);
    if (!cf)
        abort();
    return cf;
}

/* One whole small file in one request; returns the status (0 = OK). */
static int put(struct copyfile *cf, const char *path, const char *data, uint32_t mode)
{
    ka_err e;
    struct copyfile_req r = {.path = path,
                             .file_size = (int64_t)strlen(data),
                             .file_mode = mode,
                             .dir_mode = 0750,
                             .uid = -1,
                             .gid = -1,
                             .data = (const uint8_t *)data,
                             .len = strlen(data)};
    if (copyfile_chunk(cf, &r, &e) < 0) {
        printf("# %s: %s (%s)\n", path, e.msg, ka_status_name(e.status));
        return e.status ? e.status : -1;
    }
    return 0;
}

/* Number of entries in dir (-1 if it cannot be read). */
static int count(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

static bool exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static char *slurp(const char *p)
{
    char *s = NULL;
    ka_err e;
    return fs_read_file(p, &s, NULL, &e) == 0 ? s : NULL;
}

TEST(split_paths)
{
    const char *base = "/run/kata-containers";
    char *parent, *name;
    ka_err e;
    static const struct {
        const char *path, *parent, *name;
    } ok[] = {
        {"/run/kata-containers/a", ".", "a"},
        {"/run/kata-containers//x/./y/", "x", "y"},
        {"//run/./kata-containers/shared/containers/c1-ab-f.json", "shared/containers", "c1-ab-f.json"},
        {"/run/kata-containers/../etc/x", "../etc", "x"}, /* lexically fine: resolution refuses it */
        {"/run/kata-containers/a/../b", "a/..", "b"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        CHECK_INT(copyfile_split(base, ok[i].path, &parent, &name, &e), 0);
        CHECK_STR(parent, ok[i].parent);
        CHECK_STR(name, ok[i].name);
        free(parent);
        free(name);
    }
    static const char *const bad[] = {"run/kata-containers/a",
                                      "/run/kata-containersX/a",
                                      "/run/kata-containers",
                                      "/run/kata-containers/.",
                                      "/run/kata-containers/..",
                                      "/run/kata",
                                      "",
                                      "/etc/passwd",
                                      "/run/kata-containers/x/.."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_INT(copyfile_split(base, bad[i], &parent, &name, &e), -1);
        CHECK_INT(e.status, KA_INVALID_ARGUMENT);
        CHECK(parent == NULL && name == NULL);
    }
    char longp[PATH_MAX + 10];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    CHECK_INT(copyfile_split(base, longp, &parent, &name, &e), -1);
}

TEST(escapes_are_refused)
{
    setup();
    struct copyfile *cf = new_cf(false, 0);
    char link[PATH_MAX], p[PATH_MAX];
    CHECK(symlink("../outside", tmp("base/rel-out")) == 0);
    CHECK(symlink(tmp("outside"), tmp("base/abs-out")) == 0);
    CHECK(symlink("/proc/self/root", tmp("base/proc-root")) == 0);
    CHECK(symlink("sub/../../outside", tmp("base/sneaky")) == 0);
    CHECK(symlink("../outside/new", tmp("base/dangling")) == 0);
    snprintf(link, sizeof(link), "../../../../../../../..%s", tmp("outside"));
    CHECK(symlink(link, tmp("base/deep-out")) == 0);
    static const char *const rel[] = {
        "../outside/x",  "rel-out/x",  "abs-out/x",           "proc-root/tmp/x",      "sneaky/x",
        "dangling/x",    "deep-out/x", "sub/../../outside/x", "rel-out/new/deeper/x", "abs-out/sub/x",
        "dangling/a/b/x"};
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", tmp("base"), rel[i]);
        int st = put(cf, p, "pwned", 0644);
        CHECK(st == KA_PERMISSION_DENIED);
    }
    /* through the proc root with the full host path: lexically outside the base */
    snprintf(p, sizeof(p), "/proc/self/root%s/x", tmp("outside"));
    CHECK_INT(put(cf, p, "pwned", 0644), KA_INVALID_ARGUMENT);
    CHECK_INT(count(tmp("outside")), 0);
    /* symlinks that stay inside the base are followed */
    CHECK(symlink("sub", tmp("base/inside")) == 0);
    snprintf(p, sizeof(p), "%s/inside/ok", tmp("base"));
    CHECK_INT(put(cf, p, "fine", 0644), 0);
    char *s = slurp(tmp("base/sub/ok"));
    CHECK_STR(s, "fine");
    free(s);
    copyfile_free(cf);
    teardown();
}

TEST(magic_links_are_refused)
{
    ka_err e;
    int proc = open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC);
    CHECK(proc >= 0);
    CHECK_INT(copyfile_open_dir(proc, "root/tmp", false, 0755, &e), -1);
    CHECK_INT(e.status, KA_PERMISSION_DENIED);
    CHECK_INT(copyfile_open_dir(proc, "cwd", true, 0755, &e), -1);
    CHECK_INT(e.status, KA_PERMISSION_DENIED);
    int fd = copyfile_open_dir(proc, "fdinfo", false, 0755, &e); /* a plain directory is fine */
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    close(proc);
}

TEST(final_symlink_is_replaced_not_followed)
{
    setup();
    struct copyfile *cf = new_cf(false, 0);
    char p[PATH_MAX];
    CHECK_INT(fs_create_file(tmp("outside/victim"), "original", (size_t)-1, 0644, &(ka_err){0}), 0);
    CHECK(symlink(tmp("outside/victim"), tmp("base/victim")) == 0);
    snprintf(p, sizeof(p), "%s/victim", tmp("base"));
    CHECK_INT(put(cf, p, "replaced", 0600), 0);
    struct stat st;
    CHECK(lstat(tmp("base/victim"), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0600);
    char *s = slurp(tmp("outside/victim"));
    CHECK_STR(s, "original");
    free(s);
    /* a directory as destination of a file */
    snprintf(p, sizeof(p), "%s/sub", tmp("base"));
    CHECK_INT(put(cf, p, "x", 0644), KA_FAILED_PRECONDITION);
    copyfile_free(cf);
    teardown();
}

TEST(parents_created_with_dir_mode)
{
    setup();
    struct copyfile *cf = new_cf(false, 0);
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/new/deep/f", tmp("base"));
    CHECK_INT(put(cf, p, "data", 0640), 0);
    struct stat st;
    CHECK(stat(tmp("base/new"), &st) == 0 && (st.st_mode & 07777) == 0750);
    CHECK(stat(tmp("base/new/deep"), &st) == 0 && (st.st_mode & 07777) == 0750);
    CHECK(stat(tmp("base/new/deep/f"), &st) == 0 && (st.st_mode & 07777) == 0640 && st.st_size == 4);
    /* an existing parent keeps its mode */
    chmod(tmp("base/sub"), 0711);
    snprintf(p, sizeof(p), "%s/sub/g", tmp("base"));
    CHECK_INT(put(cf, p, "", 0644), 0);
    CHECK(stat(tmp("base/sub"), &st) == 0 && (st.st_mode & 07777) == 0711);
    CHECK(stat(tmp("base/sub/g"), &st) == 0 && st.st_size == 0);
    /* a file in the way of a parent */
    snprintf(p, sizeof(p), "%s/sub/g/h", tmp("base"));
    CHECK_INT(put(cf, p, "x", 0644), KA_FAILED_PRECONDITION);
    /* the base itself is created when missing */
    CHECK_INT(fs_remove_tree(tmp("base"), &(ka_err){0}), 0);
    snprintf(p, sizeof(p), "%s/again", tmp("base"));
    CHECK_INT(put(cf, p, "x", 0644), 0);
    copyfile_free(cf);
    teardown();
}

static int chunk(struct copyfile *cf, const char *path, int64_t size, int64_t off, const uint8_t *data,
                 size_t len, uint32_t mode, int32_t uid, int32_t gid)
{
    ka_err e;
    struct copyfile_req r = {.path = path,
                             .file_size = size,
                             .file_mode = mode,
                             .dir_mode = 0755,
                             .uid = uid,
                             .gid = gid,
                             .offset = off,
                             .data = data,
                             .len = len};
    if (copyfile_chunk(cf, &r, &e) < 0) {
        printf("# chunk @%lld: %s\n", (long long)off, e.msg);
        return e.status;
    }
    return 0;
}

static void chunked(bool no_tmpfile)
{
    setup();
    struct copyfile *cf = new_cf(no_tmpfile, 0);
    enum { N = 3000 };
    uint8_t data[N];
    for (int i = 0; i < N; i++)
        data[i] = (uint8_t)(i * 7 + 1);
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/big", tmp("base"));
    CHECK_INT(chunk(cf, p, N, 0, data, 1000, 0100755, 1234, 5678), 0);
    CHECK(!exists(tmp("base/big")));
    CHECK_INT(copyfile_pending(cf), 1);
    /* while in progress: only a hidden temp (named mode) or nothing (O_TMPFILE) next to sub */
    CHECK_INT(count(tmp("base")), no_tmpfile ? 2 : 1);
    CHECK_INT(chunk(cf, p, N, 2500, data + 2500, 500, 0100755, 1234, 5678), KA_FAILED_PRECONDITION); /* gap */
    CHECK_INT(copyfile_pending(cf), 0); /* the inconsistent transfer is gone */
    CHECK_INT(chunk(cf, p, N, 1000, data + 1000, 1000, 0100755, 1234, 5678), KA_FAILED_PRECONDITION);
    CHECK_INT(chunk(cf, p, N, 0, data, 1000, 0100755, 1234, 5678), 0);
    CHECK_INT(chunk(cf, p, N, 500, data + 500, 1000, 0100755, 1234, 5678), 0); /* overlap: fine */
    CHECK_INT(chunk(cf, p, N + 1, 1500, data + 1500, 500, 0100755, 1234, 5678), KA_INVALID_ARGUMENT);
    CHECK_INT(chunk(cf, p, N, 0, data, 1000, 0100755, 1234, 5678), 0); /* restart */
    CHECK_INT(chunk(cf, p, N, 1000, data + 1000, 1000, 0100755, 1234, 5678), 0);
    CHECK_INT(chunk(cf, p, N, 2000, data + 2000, 1001, 0100755, 1234, 5678),
              KA_INVALID_ARGUMENT); /* beyond */
    CHECK_INT(chunk(cf, p, N, 2000, data + 2000, 1000, 04755, 1234, 5678), 0);
    CHECK_INT(copyfile_pending(cf), 0);
    struct stat st;
    CHECK(lstat(tmp("base/big"), &st) == 0 && st.st_size == N && (st.st_mode & 07777) == 04755 &&
          st.st_uid == 1234 && st.st_gid == 5678);
    char *s = NULL;
    size_t len = 0;
    CHECK(fs_read_file(tmp("base/big"), &s, &len, &(ka_err){0}) == 0 && len == N && memcmp(s, data, N) == 0);
    free(s);
    /* only the destination: no temp files left */
    CHECK_INT(count(tmp("base")), 2);
    copyfile_free(cf);
    teardown();
}

TEST(chunked_transfer_tmpfile)
{
    chunked(false);
}

TEST(chunked_transfer_named_temp)
{
    chunked(true);
}

TEST(stale_and_abandoned_transfers_leave_nothing)
{
    setup();
    struct copyfile *cf = new_cf(true, 1000000000ull);
    char p[PATH_MAX], q[PATH_MAX];
    uint8_t data[10] = {0};
    snprintf(p, sizeof(p), "%s/sub/a", tmp("base"));
    snprintf(q, sizeof(q), "%s/b", tmp("base"));
    CHECK_INT(chunk(cf, p, 20, 0, data, 10, 0644, -1, -1), 0);
    CHECK_INT(chunk(cf, q, 20, 0, data, 10, 0644, -1, -1), 0);
    CHECK_INT(count(tmp("base/sub")), 1); /* the named temp file */
    CHECK_INT(copyfile_sweep(cf, loop_now_ns()), 0);
    CHECK_INT(copyfile_sweep(cf, loop_now_ns() + 2000000000ull), 2);
    CHECK_INT(count(tmp("base/sub")), 0);
    CHECK_INT(count(tmp("base")), 1);
    CHECK(!exists(p) && !exists(q));
    CHECK_INT(chunk(cf, p, 20, 10, data, 10, 0644, -1, -1), KA_FAILED_PRECONDITION);
    /* the table bound */
    struct copyfile_opts o = {.base_dir = tmp("base"), .max_transfers = 2, .no_tmpfile = true};
    struct copyfile *small = copyfile_new(NULL, &o, &(ka_err){0});
    char r[PATH_MAX];
    snprintf(r, sizeof(r), "%s/c", tmp("base"));
    CHECK_INT(chunk(small, p, 20, 0, data, 10, 0644, -1, -1), 0);
    CHECK_INT(chunk(small, q, 20, 0, data, 10, 0644, -1, -1), 0);
    CHECK_INT(chunk(small, r, 20, 0, data, 10, 0644, -1, -1), KA_RESOURCE_EXHAUSTED);
    CHECK_INT(chunk(small, r, 10, 0, data, 10, 0644, -1, -1), 0); /* a whole file needs no slot */
    copyfile_free(small);                                         /* drops both: their temp files go */
    CHECK_INT(count(tmp("base/sub")), 0);
    CHECK_INT(count(tmp("base")), 2); /* sub and c */
    /* bad sizes and offsets */
    CHECK_INT(chunk(cf, q, -1, 0, data, 0, 0644, -1, -1), KA_INVALID_ARGUMENT);
    CHECK_INT(chunk(cf, q, 10, -5, data, 0, 0644, -1, -1), KA_INVALID_ARGUMENT);
    CHECK_INT(chunk(cf, q, (int64_t)COPYFILE_MAX_SIZE + 1, 0, data, 0, 0644, -1, -1), KA_INVALID_ARGUMENT);
    CHECK_INT(chunk(cf, q, INT64_MAX, INT64_MAX, data, 10, 0644, -1, -1), KA_INVALID_ARGUMENT);
    CHECK_INT(chunk(cf, q, (int64_t)COPYFILE_MAX_SIZE, 0, data, 10, 0644, -1, -1),
              KA_RESOURCE_EXHAUSTED); /* room */
    copyfile_free(cf);
    teardown();
}

TEST(directories_and_symlinks)
{
    setup();
    struct copyfile *cf = new_cf(false, 0);
    char p[PATH_MAX];
    ka_err e;
    struct stat st;
    snprintf(p, sizeof(p), "%s/cm/..2024_01", tmp("base"));
    CHECK_INT(chunk(cf, p, 0, 0, NULL, 0, S_IFDIR | 0700, 1000, 1000), 0);
    CHECK(lstat(tmp("base/cm/..2024_01"), &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700 &&
          st.st_uid == 1000);
    CHECK_INT(chunk(cf, p, 0, 0, NULL, 0, S_IFDIR | 0755, -1, -1), 0); /* existing: mode updated */
    CHECK(lstat(tmp("base/cm/..2024_01"), &st) == 0 && (st.st_mode & 07777) == 0755 && st.st_uid == 1000);
    snprintf(p, sizeof(p), "%s/cm/..data", tmp("base"));
    CHECK_INT(chunk(cf, p, 7, 0, (const uint8_t *)"..2024_01", 9, S_IFLNK | 0777, 1000, 1000), 0);
    char target[64] = {0};
    CHECK(readlink(tmp("base/cm/..data"), target, sizeof(target) - 1) == 9);
    CHECK_STR(target, "..2024_01");
    CHECK(lstat(tmp("base/cm/..data"), &st) == 0 && st.st_uid == 1000);
    /* replaced atomically */
    CHECK_INT(chunk(cf, p, 0, 0, (const uint8_t *)"..2024_02", 9, S_IFLNK | 0777, -1, -1), 0);
    memset(target, 0, sizeof(target));
    CHECK(readlink(tmp("base/cm/..data"), target, sizeof(target) - 1) == 9);
    CHECK_STR(target, "..2024_02");
    /* a symlink where a directory is asked for is not followed */
    CHECK(symlink(tmp("outside"), tmp("base/dirlink")) == 0);
    snprintf(p, sizeof(p), "%s/dirlink", tmp("base"));
    CHECK_INT(chunk(cf, p, 0, 0, NULL, 0, S_IFDIR | 0777, 0, 0), KA_ALREADY_EXISTS);
    CHECK(stat(tmp("outside"), &st) == 0 && (st.st_mode & 07777) == 0755);
    /* bad symlink targets, unsupported types */
    snprintf(p, sizeof(p), "%s/l2", tmp("base"));
    CHECK_INT(chunk(cf, p, 0, 0, NULL, 0, S_IFLNK | 0777, -1, -1), KA_INVALID_ARGUMENT);
    CHECK_INT(chunk(cf, p, 0, 0, (const uint8_t *)"a\0b", 3, S_IFLNK | 0777, -1, -1), KA_INVALID_ARGUMENT);
    CHECK_INT(chunk(cf, p, 0, 0, NULL, 0, S_IFIFO | 0644, -1, -1), KA_INVALID_ARGUMENT);
    CHECK_INT(chunk(cf, p, 0, 0, NULL, 0, S_IFCHR | 0644, -1, -1), KA_INVALID_ARGUMENT);
    (void)e;
    CHECK_INT(count(tmp("outside")), 0);
    copyfile_free(cf);
    teardown();
}

TEST(mountinfo_lookup)
{
    const char *mi = "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
                     "30 22 0:25 / /run rw - tmpfs kata-run rw\n"
                     "40 30 7:3 / /run/kata-containers/vol\\040one rw - ext4 /dev/loop3 rw\n"
                     "41 22 7:3 /sub /mnt/bind rw - ext4 /dev/loop3 rw\n"
                     "42 30 7:4 / /run/v2 rw shared:5 master:2 - xfs /dev/loop4 rw,attr2\n"
                     "garbage line\n"
                     "43 30 7:5 / /run/x rw -";
    struct volume_mount m;
    ka_err e;
    CHECK_INT(volume_find_mount(mi, 7, 3, "/run/kata-containers/vol one/dir", &m, &e), 0);
    CHECK_STR(m.mount_point, "/run/kata-containers/vol one");
    CHECK_STR(m.fstype, "ext4");
    CHECK_STR(m.source, "/dev/loop3");
    CHECK_INT(volume_find_mount(mi, 7, 3, "/mnt/bind", &m, &e), 0);
    CHECK_STR(m.mount_point, "/mnt/bind");
    CHECK_INT(volume_find_mount(mi, 7, 3, "/elsewhere", &m, &e), 0); /* no prefix: the first one */
    CHECK_STR(m.mount_point, "/run/kata-containers/vol one");
    CHECK_INT(volume_find_mount(mi, 7, 4, "/run/v2", &m, &e), 0);
    CHECK_STR(m.fstype, "xfs");
    CHECK_STR(m.source, "/dev/loop4");
    CHECK_INT(volume_find_mount(mi, 253, 0, "/run/v2", &m, &e), 0);
    CHECK_STR(m.mount_point, "/");
    CHECK_INT(volume_find_mount(mi, 9, 9, "/", &m, &e), -1);
    CHECK_INT(e.status, KA_NOT_FOUND);
    CHECK_INT(volume_find_mount(mi, 7, 5, "/run/x", &m, &e), -1); /* truncated entry is skipped */
}

TEST(volume_stats)
{
    struct volume_stats st;
    ka_err e;
    CHECK_INT(volume_get_stats("/", &st, &e), 0);
    CHECK(st.bytes_total > 0 && st.bytes_used <= st.bytes_total && st.bytes_available <= st.bytes_total);
    CHECK_INT(volume_get_stats("relative", &st, &e), -1);
    CHECK_INT(e.status, KA_INVALID_ARGUMENT);
    CHECK_INT(volume_get_stats("/nonexistent/volume", &st, &e), -1);
    CHECK_INT(e.status, KA_NOT_FOUND);
}

/* ---- ResizeVolume's child handling, with stand-in tools on the file system holding /tmp ---- */

struct result {
    int calls;
    bool failed;
    ka_err err;
};

static void on_done(void *arg, const ka_err *err)
{
    struct result *r = arg;
    r->calls++;
    r->failed = err != NULL;
    if (err)
        r->err = *err;
}

static bool run_until_done(struct loop *l, const int *calls)
{
    ka_err e;
    uint64_t deadline = loop_now_ns() + 10ull * 1000000000ull;
    while (*calls == 0 && loop_now_ns() < deadline)
        if (loop_run_once(l, 50, &e) < 0)
            return false;
    return *calls != 0;
}

/* Stand-ins for resize2fs and xfs_growfs: behaviour from <dir>/mode, arguments to <dir>/args. */
static void write_tools(void)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "#!/bin/sh\n"
             "echo \"$0 $*\" > %s/args\n"
             "case $(cat %s/mode) in\n"
             "fail) i=0; while [ $i -lt 100 ]; do echo \"noise $i\" >&2; i=$((i+1)); done;"
             " echo 'resize2fs: Permission denied to resize filesystem' >&2; exit 3;;\n"
             "slow) echo $$ > %s/pid; exec sleep 30;;\n"
             "esac\n"
             "echo resized\n",
             g_dir, g_dir, g_dir);
    ka_err e;
    mkdir(tmp("tools"), 0755);
    if (fs_create_file(tmp("tools/resize2fs"), text, (size_t)-1, 0755, &e) < 0 ||
        fs_create_file(tmp("tools/xfs_growfs"), text, (size_t)-1, 0755, &e) < 0)
        printf("# %s\n", e.msg);
}

static void set_mode(const char *mode)
{
    fs_create_file(tmp("mode"), mode, (size_t)-1, 0644, &(ka_err){0});
}

TEST(resize_runs_the_tool_from_the_loop)
{
    setup();
    ka_err e;
    struct loop *l = loop_new(&e);
    CHECK(l && loop_children_init(l, &e) == 0);
    write_tools();
    char tools[PATH_MAX]; /* tmp() rotates 8 buffers: keep our own copy for the whole test */
    snprintf(tools, sizeof(tools), "%s", tmp("tools"));
    struct volume_resize_opts o = {.tool_dirs = tools};
    struct result r = {0};
    set_mode("ok");
    struct volume_resize *vr = volume_resize_async(l, &o, g_dir, 0, on_done, &r, &e);
    if (!vr && e.status == KA_FAILED_PRECONDITION) {
        printf("# skip: /tmp is not on ext2/3/4 or xfs with a device node: %s\n", e.msg);
        loop_free(l);
        teardown();
        return;
    }
    if (!vr)
        printf("# %s (%s)\n", e.msg, ka_status_name(e.status));
    CHECK(vr != NULL);
    CHECK(run_until_done(l, &r.calls));
    CHECK(r.calls == 1 && !r.failed);
    char *args = slurp(tmp("args"));
    CHECK(args && (strstr(args, "/resize2fs /dev/") || strstr(args, "/xfs_growfs -d /")));
    printf("# ran: %s", args ? args : "(nothing)\n");
    free(args);
    /* failure: status and the tail of the output */
    set_mode("fail");
    r = (struct result){0};
    CHECK(volume_resize_async(l, &o, g_dir, 0, on_done, &r, &e) != NULL);
    CHECK(run_until_done(l, &r.calls));
    CHECK(r.failed && r.err.status == KA_INTERNAL);
    CHECK(strstr(r.err.msg, "exit status 3") && strstr(r.err.msg, "Permission denied to resize"));
    CHECK(strlen(r.err.msg) < 700);
    /* cancel kills the tool; done is not called */
    set_mode("slow");
    r = (struct result){0};
    vr = volume_resize_async(l, &o, g_dir, 0, on_done, &r, &e);
    CHECK(vr != NULL);
    char *pid = NULL;
    for (int i = 0; i < 200 && !(pid = slurp(tmp("pid"))); i++)
        loop_run_once(l, 10, &e);
    CHECK(pid != NULL);
    volume_resize_cancel(vr);
    bool gone = false;
    for (int i = 0; i < 200 && pid && !gone; i++) {
        loop_run_once(l, 10, &e);
        gone = kill(atoi(pid), 0) < 0 && errno == ESRCH;
    }
    CHECK(gone);
    CHECK_INT(r.calls, 0);
    free(pid);
    /* the device is smaller than asked: refused before anything runs */
    CHECK(volume_resize_async(l, &o, g_dir, 1ull << 60, on_done, &r, &e) == NULL);
    if (e.errnum == EPERM || e.errnum == EACCES) /* the root disk may be closed to us (device cgroup) */
        printf("# cannot read the device size here: %s\n", e.msg);
    else
        CHECK(e.status == KA_FAILED_PRECONDITION && strstr(e.msg, "fewer than the requested"));
    /* no tool */
    struct volume_resize_opts none = {.tool_dirs = tmp("outside")};
    CHECK(volume_resize_async(l, &none, g_dir, 0, on_done, &r, &e) == NULL);
    CHECK(e.status == KA_FAILED_PRECONDITION && strstr(e.msg, "is not installed"));
    /* not a block file system; missing; relative */
    CHECK(volume_resize_async(l, &o, "/proc", 0, on_done, &r, &e) == NULL);
    CHECK(e.status == KA_FAILED_PRECONDITION || e.status == KA_NOT_FOUND);
    CHECK(volume_resize_async(l, &o, "/nonexistent", 0, on_done, &r, &e) == NULL);
    CHECK_INT(e.status, KA_NOT_FOUND);
    CHECK(volume_resize_async(l, &o, "tmp", 0, on_done, &r, &e) == NULL);
    CHECK_INT(e.status, KA_INVALID_ARGUMENT);
    CHECK_INT(r.calls, 0);
    loop_free(l);
    teardown();
}

RUN(split_paths, escapes_are_refused, magic_links_are_refused, final_symlink_is_replaced_not_followed,
    parents_created_with_dir_mode, chunked_transfer_tmpfile, chunked_transfer_named_temp,
    stale_and_abandoned_transfers_leave_nothing, directories_and_symlinks, mountinfo_lookup, volume_stats,
    resize_runs_the_tool_from_the_loop)
