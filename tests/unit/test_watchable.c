/* watchable-bind: the copy engine (files, directories, symlinks, modes and owners, updates, deletions,
 * symlinks never followed, the limits) and the storage around it (tmpfs, timer, bind when too large,
 * release). Each test runs as root in a forked child with a private mount namespace and its own temporary
 * directory. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest/storage.h"
#include "guest/watchable.h"
#include "loop/loop.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "unit.h"

static char g_tmp[128];

static const char *p(const char *rel)
{
    static char bufs[8][PATH_MAX];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, PATH_MAX, "%s/%s", g_tmp, rel);
    return b;
}

static void put(const char *rel, const char *data, mode_t mode, uid_t uid, gid_t gid)
{
    FILE *f = fopen(p(rel), "w");
    if (!f) {
        printf("# fopen %s: %s\n", rel, strerror(errno));
        unit_test_failed = 1;
        return;
    }
    fputs(data, f);
    fclose(f);
    CHECK(chown(p(rel), uid, gid) == 0);
    CHECK(chmod(p(rel), mode) == 0);
}

static const char *get(const char *rel)
{
    static char buf[4096];
    FILE *f = fopen(p(rel), "r");
    if (!f)
        return "(missing)";
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static struct stat lst(const char *rel)
{
    struct stat st;
    memset(&st, 0, sizeof(st));
    if (lstat(p(rel), &st) < 0)
        st.st_mode = 0;
    return st;
}

static const char *link_of(const char *rel)
{
    static char buf[PATH_MAX];
    ssize_t n = readlink(p(rel), buf, sizeof(buf) - 1);
    buf[n < 0 ? 0 : n] = '\0';
    return buf;
}

static bool exists(const char *rel)
{
    return lst(rel).st_mode != 0;
}

/* Sync <tmp>/src onto <tmp>/dst. */
static int sync_src(const char *src, const char *dst)
{
    ka_err e = {0};
    int dir = open(g_tmp, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int rc = watchable_sync(p(src), dir, dst, &e);
    if (rc < 0)
        printf("# watchable_sync: %s: %s\n", ka_status_name(e.status), e.msg);
    close(dir);
    return rc;
}

static int count_entries(const char *rel)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "test $(find '%s' -mindepth 1 | wc -l) -eq 0", p(rel));
    return system(cmd) == 0 ? 0 : 1;
}

static int mount_count(const char *mp)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[4096], target[PATH_MAX];
    int n = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "%*s %*s %*s %*s %4095s", target) == 1 && strcmp(target, mp) == 0)
            n++;
    if (f)
        fclose(f);
    return n;
}

static void isolated(void (*body)(void))
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        ka_log_set_fd(STDERR_FILENO);
        if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0)
            _exit(2);
        snprintf(g_tmp, sizeof(g_tmp), "/tmp/ka-watchable-XXXXXX");
        if (!mkdtemp(g_tmp))
            _exit(2);
        char *real = realpath(g_tmp, NULL);
        snprintf(g_tmp, sizeof(g_tmp), "%s", real);
        free(real);
        if (mkdir(p("src"), 0755) < 0 || mkdir(p("dst"), 0755) < 0)
            _exit(2);
        body();
        char cmd[PATH_MAX + 32];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmp);
        if (system(cmd) != 0)
            printf("# cleanup of %s failed\n", g_tmp);
        fflush(stdout);
        exit(unit_test_failed ? 1 : 0);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---- the copy engine ---- */

static void body_copy_tree(void)
{
    put("src/a", "alpha", 0640, 1000, 2000);
    put("src/suid", "x", 04755, 0, 0);
    CHECK(mkdir(p("src/d"), 0750) == 0 && chown(p("src/d"), 1001, 1002) == 0);
    put("src/d/b", "beta", 0600, 1001, 1001);
    CHECK(symlink("a", p("src/l")) == 0 && lchown(p("src/l"), 1003, 1004) == 0);
    CHECK(symlink("../a", p("src/d/up")) == 0);
    CHECK(mkfifo(p("src/fifo"), 0644) == 0); /* not copied */
    CHECK(chmod(p("src"), 0711) == 0);
    CHECK_INT(sync_src("src", "dst"), WATCHABLE_SYNCED);
    CHECK_STR(get("dst/a"), "alpha");
    struct stat a = lst("dst/a"), sa = lst("src/a");
    CHECK_INT(a.st_mode, S_IFREG | 0640);
    CHECK_INT(a.st_uid, 1000);
    CHECK_INT(a.st_gid, 2000);
    CHECK_INT(a.st_mtim.tv_nsec, sa.st_mtim.tv_nsec);
    CHECK_INT(a.st_mtim.tv_sec, sa.st_mtim.tv_sec);
    CHECK_INT(lst("dst/suid").st_mode, S_IFREG | 04755);
    CHECK_INT(lst("dst/d").st_mode, S_IFDIR | 0750);
    CHECK_INT(lst("dst/d").st_uid, 1001);
    CHECK_INT(lst("dst/d").st_gid, 1002);
    CHECK_STR(get("dst/d/b"), "beta");
    CHECK_INT(lst("dst/d/b").st_mode, S_IFREG | 0600);
    CHECK(S_ISLNK(lst("dst/l").st_mode));
    CHECK_STR(link_of("dst/l"), "a");
    CHECK_INT(lst("dst/l").st_uid, 1003);
    CHECK_INT(lst("dst/l").st_gid, 1004);
    CHECK_STR(link_of("dst/d/up"), "../a");
    CHECK(!exists("dst/fifo"));
    CHECK(!exists("dst/.kata-watchable.tmp"));
    CHECK_INT(lst("dst").st_mode, S_IFDIR | 0711);
    /* a second sync changes nothing: same inodes */
    ino_t ino = lst("dst/a").st_ino;
    CHECK_INT(sync_src("src", "dst"), WATCHABLE_SYNCED);
    CHECK_INT(lst("dst/a").st_ino, ino);
}

static void body_updates_deletions(void)
{
    put("src/same", "unchanged", 0644, 0, 0);
    put("src/a", "one", 0644, 0, 0);
    put("src/mode", "m", 0644, 0, 0);
    CHECK(mkdir(p("src/d"), 0755) == 0);
    put("src/d/b", "b", 0644, 0, 0);
    put("src/d/c", "c", 0644, 0, 0);
    put("src/becomes_dir", "f", 0644, 0, 0);
    CHECK(mkdir(p("src/becomes_file"), 0755) == 0);
    put("src/becomes_file/x", "x", 0644, 0, 0);
    CHECK(symlink("a", p("src/l")) == 0);
    CHECK_INT(sync_src("src", "dst"), WATCHABLE_SYNCED);
    ino_t same = lst("dst/same").st_ino, a = lst("dst/a").st_ino;

    /* same size, new mtime; mode; deletions; type changes; a retargeted link */
    struct timespec ts[2] = {{0, UTIME_OMIT}, {12345, 678}};
    put("src/a", "two", 0644, 0, 0);
    CHECK(utimensat(AT_FDCWD, p("src/a"), ts, 0) == 0);
    CHECK(chmod(p("src/mode"), 0600) == 0);
    CHECK(unlink(p("src/d/b")) == 0);
    CHECK(unlink(p("src/becomes_dir")) == 0 && mkdir(p("src/becomes_dir"), 0700) == 0);
    put("src/becomes_dir/in", "in", 0644, 0, 0);
    CHECK(unlink(p("src/becomes_file/x")) == 0 && rmdir(p("src/becomes_file")) == 0);
    put("src/becomes_file", "now a file", 0644, 0, 0);
    CHECK(unlink(p("src/l")) == 0 && symlink("d/c", p("src/l")) == 0);
    CHECK_INT(sync_src("src", "dst"), WATCHABLE_SYNCED);
    CHECK_STR(get("dst/a"), "two");
    CHECK(lst("dst/a").st_ino != a);
    CHECK_INT(lst("dst/a").st_mtim.tv_sec, 12345);
    CHECK_INT(lst("dst/same").st_ino, same); /* not copied again */
    CHECK_INT(lst("dst/mode").st_mode, S_IFREG | 0600);
    CHECK(!exists("dst/d/b"));
    CHECK_STR(get("dst/d/c"), "c");
    CHECK_INT(lst("dst/becomes_dir").st_mode, S_IFDIR | 0700);
    CHECK_STR(get("dst/becomes_dir/in"), "in");
    CHECK_STR(get("dst/becomes_file"), "now a file");
    CHECK_STR(link_of("dst/l"), "d/c");

    /* the source emptied: so is the copy; anything else put in the copy goes too */
    put("dst/stray", "s", 0644, 0, 0);
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'/*", p("src"));
    CHECK(system(cmd) == 0);
    CHECK_INT(sync_src("src", "dst"), WATCHABLE_SYNCED);
    CHECK_INT(count_entries("dst"), 0);
}

static void body_symlinks_not_followed(void)
{
    /* in the source: links pointing outside are copied as links, never read through */
    CHECK(mkdir(p("outside"), 0755) == 0);
    for (int i = 0; i < 40; i++) {
        char name[64];
        snprintf(name, sizeof(name), "outside/f%d", i);
        put(name, "secret", 0600, 0, 0);
    }
    CHECK(symlink(p("outside"), p("src/dirlink")) == 0);
    CHECK(symlink("/etc/passwd", p("src/passwd")) == 0);
    CHECK(symlink("../outside/f1", p("src/rel")) == 0);
    CHECK_INT(sync_src("src", "dst"), WATCHABLE_SYNCED); /* 40 files behind the link: not counted */
    CHECK(S_ISLNK(lst("dst/dirlink").st_mode));
    CHECK_STR(link_of("dst/dirlink"), p("outside"));
    CHECK(S_ISLNK(lst("dst/passwd").st_mode));
    CHECK_STR(link_of("dst/rel"), "../outside/f1");

    /* in the destination: links planted where the copy writes are replaced, never written through */
    CHECK(mkdir(p("victim"), 0755) == 0);
    put("victim/file", "victim", 0644, 0, 0);
    CHECK(unlink(p("dst/passwd")) == 0);
    put("src/x", "payload", 0644, 0, 0);
    CHECK(mkdir(p("src/d"), 0755) == 0);
    put("src/d/y", "payload", 0644, 0, 0);
    CHECK(symlink(p("victim/file"), p("dst/x")) == 0);
    CHECK(symlink(p("victim"), p("dst/d")) == 0);
    CHECK(symlink(p("victim/file"), p("dst/.kata-watchable.tmp")) == 0);
    CHECK_INT(sync_src("src", "dst"), WATCHABLE_SYNCED);
    CHECK_STR(get("victim/file"), "victim");
    CHECK(!exists("victim/y"));
    CHECK_INT(lst("victim/file").st_mode, S_IFREG | 0644);
    CHECK(S_ISREG(lst("dst/x").st_mode));
    CHECK_STR(get("dst/x"), "payload");
    CHECK(S_ISDIR(lst("dst/d").st_mode));
    CHECK_STR(get("dst/d/y"), "payload");
    CHECK(S_ISLNK(lst("dst/passwd").st_mode));
    CHECK(!exists("dst/.kata-watchable.tmp"));

    /* a symlink planted while the source has the same regular file: replaced on the next sync */
    CHECK(unlink(p("dst/x")) == 0 && symlink(p("victim/file"), p("dst/x")) == 0);
    CHECK_INT(sync_src("src", "dst"), WATCHABLE_SYNCED);
    CHECK(S_ISREG(lst("dst/x").st_mode));
    CHECK_STR(get("victim/file"), "victim");

    /* the source root given as a symlink is opened (as a bind source is); below it nothing is followed */
    CHECK(symlink(p("src"), p("srclink")) == 0);
    CHECK_INT(sync_src("srclink", "dst"), WATCHABLE_SYNCED);
    CHECK_STR(get("dst/x"), "payload");
}

static void body_limits(void)
{
    char name[64];
    for (int i = 0; i < WATCHABLE_MAX_ENTRIES; i++) {
        snprintf(name, sizeof(name), "src/f%02d", i);
        put(name, "x", 0644, 0, 0);
    }
    CHECK_INT(sync_src("src", "dst"), WATCHABLE_SYNCED);
    put("src/one-more", "x", 0644, 0, 0);
    put("dst/marker", "m", 0644, 0, 0);
    CHECK_INT(sync_src("src", "dst"), WATCHABLE_TOO_BIG);
    CHECK(exists("dst/marker")); /* nothing written or removed */
    CHECK(!exists("dst/one-more"));
    CHECK(unlink(p("src/one-more")) == 0);
    CHECK(symlink("f00", p("src/link")) == 0); /* a symlink counts as an entry too */
    CHECK_INT(sync_src("src", "dst"), WATCHABLE_TOO_BIG);
    CHECK(unlink(p("src/link")) == 0);

    /* 1 MiB in total: exactly is fine, one byte more is not */
    char cmd[PATH_MAX + 128];
    snprintf(cmd, sizeof(cmd), "rm -f '%s'/f* && head -c %u /dev/zero > '%s'/big", p("src"),
             WATCHABLE_MAX_BYTES - 10, p("src"));
    CHECK(system(cmd) == 0);
    put("src/ten", "0123456789", 0644, 0, 0);
    CHECK_INT(sync_src("src", "dst"), WATCHABLE_SYNCED);
    CHECK_INT(lst("dst/big").st_size, WATCHABLE_MAX_BYTES - 10);
    put("src/ten", "0123456789A", 0644, 0, 0);
    CHECK_INT(sync_src("src", "dst"), WATCHABLE_TOO_BIG);
    CHECK_STR(get("dst/ten"), "0123456789");

    /* directories: at most as many */
    snprintf(cmd, sizeof(cmd),
             "rm -rf '%s'/* && cd '%s' && mkdir d1 d2 d3 d4 d5 d6 d7 d8 d9 d10 d11 d12 d13 "
             "d14 d15 d16",
             p("src"), p("src"));
    CHECK(system(cmd) == 0);
    CHECK_INT(sync_src("src", "dst"), WATCHABLE_SYNCED);
    CHECK(mkdir(p("src/d16/d17"), 0755) == 0);
    CHECK_INT(sync_src("src", "dst"), WATCHABLE_TOO_BIG);

    /* a file source over 1 MiB */
    snprintf(cmd, sizeof(cmd), "head -c %u /dev/zero > '%s'", WATCHABLE_MAX_BYTES + 1, p("bigfile"));
    CHECK(system(cmd) == 0);
    put("dstfile", "", 0644, 0, 0);
    CHECK_INT(sync_src("bigfile", "dstfile"), WATCHABLE_TOO_BIG);
}

static void body_file_source(void)
{
    put("file", "v1", 0640, 1000, 1000);
    put("dstfile", "", 0644, 0, 0);
    ino_t ino = lst("dstfile").st_ino;
    CHECK_INT(sync_src("file", "dstfile"), WATCHABLE_SYNCED);
    CHECK_STR(get("dstfile"), "v1");
    CHECK_INT(lst("dstfile").st_mode, S_IFREG | 0640);
    CHECK_INT(lst("dstfile").st_uid, 1000);
    put("file", "version 2", 0640, 1000, 1000);
    CHECK_INT(sync_src("file", "dstfile"), WATCHABLE_SYNCED);
    CHECK_STR(get("dstfile"), "version 2");
    CHECK_INT(lst("dstfile").st_ino, ino); /* in place: a bind mount of it sees the change */
    /* errors: missing source, a fifo */
    ka_err e = {0};
    int dir = open(g_tmp, O_PATH | O_DIRECTORY | O_CLOEXEC);
    CHECK_INT(watchable_sync(p("nope"), dir, "dst", &e), -1);
    CHECK_INT(e.status, KA_NOT_FOUND);
    CHECK(mkfifo(p("fifo"), 0644) == 0);
    CHECK_INT(watchable_sync(p("fifo"), dir, "dst", &e), -1);
    CHECK_INT(e.status, KA_INVALID_ARGUMENT);
    close(dir);
}

static void body_clear(void)
{
    CHECK(mkdir(p("dst/a"), 0755) == 0 && mkdir(p("dst/a/b"), 0755) == 0);
    put("dst/a/b/c", "c", 0644, 0, 0);
    put("dst/f", "f", 0644, 0, 0);
    CHECK(symlink("/etc", p("dst/l")) == 0);
    CHECK(mkdir(p("mnt"), 0755) == 0 && mount("tmpfs", p("mnt"), "tmpfs", 0, NULL) == 0);
    put("mnt/keep", "k", 0644, 0, 0);
    CHECK(mkdir(p("dst/m"), 0755) == 0 && mount(p("mnt"), p("dst/m"), NULL, MS_BIND, NULL) == 0);
    ka_err e = {0};
    int dir = open(g_tmp, O_PATH | O_DIRECTORY | O_CLOEXEC);
    CHECK_INT(watchable_clear(dir, "dst", &e), -1); /* refuses to enter the mount */
    CHECK(strstr(e.msg, "mount point") != NULL);
    CHECK_STR(get("mnt/keep"), "k");
    CHECK(umount2(p("dst/m"), MNT_DETACH) == 0);
    CHECK_INT(watchable_clear(dir, "dst", &e), 0);
    CHECK_INT(count_entries("dst"), 0);
    CHECK(access("/etc/passwd", F_OK) == 0);
    CHECK(mount(p("mnt"), p("dst"), NULL, MS_BIND, NULL) == 0);
    CHECK_INT(watchable_clear(dir, "dst", &e), -1); /* the root itself a mount point */
    CHECK_STR(get("mnt/keep"), "k");
    CHECK(umount2(p("dst"), MNT_DETACH) == 0 && umount2(p("mnt"), MNT_DETACH) == 0);
    close(dir);
}

/* ---- the storage: tmpfs, timer, bind when too large, release ---- */

static Grpc__Storage wstorage(const char *source, const char *mp)
{
    Grpc__Storage st = GRPC__STORAGE__INIT;
    st.driver = (char *)"watchable-bind";
    st.source = (char *)source;
    st.fstype = (char *)"bind";
    st.mount_point = (char *)mp;
    return st;
}

static int add1(struct storage_set *s, Grpc__Storage *st, struct storage_refs *refs, ka_err *e)
{
    Grpc__Storage *v[] = {st};
    int rc = storage_add(s, v, 1, refs, e);
    if (rc < 0)
        printf("# storage_add: %s: %s\n", ka_status_name(e->status), e->msg);
    return rc;
}

static void body_storage(void)
{
    struct storage_set s;
    struct storage_refs r1 = {0}, r2 = {0}, sbrefs = {.sandbox = true};
    ka_err e = {0};
    struct loop *l = loop_new(&e);
    char srcdir[PATH_MAX], srcfile[PATH_MAX], nope[PATH_MAX], elsewhere[PATH_MAX];
    snprintf(srcdir, sizeof(srcdir), "%s", p("src"));
    snprintf(srcfile, sizeof(srcfile), "%s", p("src/cfg"));
    snprintf(nope, sizeof(nope), "%s", p("nope"));
    snprintf(elsewhere, sizeof(elsewhere), "%s", p("base/elsewhere"));
    CHECK(l != NULL);
    CHECK(mkdir(p("base"), 0755) == 0);
    storage_set_init(&s, p("base"));
    put("src/cfg", "v1", 0644, 0, 0);
    char wdir[PATH_MAX - 64];
    snprintf(wdir, sizeof(wdir), "%s", p("base/shared/containers/watchable"));
    char mp1[PATH_MAX], mp2[PATH_MAX], mpf[PATH_MAX];
    snprintf(mp1, sizeof(mp1), "%s/c1-cfg", wdir);
    snprintf(mp2, sizeof(mp2), "%s/c2/cfg", wdir);
    snprintf(mpf, sizeof(mpf), "%s/passthrough/watchable/f", p("base/shared/containers"));
    Grpc__Storage st1 = wstorage(srcdir, mp1), st2 = wstorage(srcdir, mp2);

    Grpc__Storage nol = wstorage(srcdir, mp1);
    CHECK_INT(storage_add(&s, (Grpc__Storage *[]){&nol}, 1, &r1, &e), -1); /* no loop yet */
    CHECK_INT(e.status, KA_FAILED_PRECONDITION);
    s.loop = l;
    CHECK_INT(storage_add(&s, (Grpc__Storage *[]){&st1}, 1, &sbrefs, &e), -1);
    CHECK_INT(e.status, KA_UNIMPLEMENTED);
    CHECK(strstr(e.msg, "only supported for a container's storages") != NULL);
    Grpc__Storage bad[] = {wstorage(nope, mp1), wstorage(srcdir, elsewhere), wstorage("relative", mp1),
                           wstorage(srcdir, wdir)};
    const int bad_status[] = {KA_NOT_FOUND, KA_INVALID_ARGUMENT, KA_INVALID_ARGUMENT, KA_INVALID_ARGUMENT};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        CHECK_INT(storage_add(&s, (Grpc__Storage *[]){&bad[i]}, 1, &r1, &e), -1);
        CHECK_INT(e.status, bad_status[i]);
    }
    CHECK(strstr(e.msg, "is not below") != NULL);
    CHECK_INT(mount_count(wdir), 0);
    CHECK(!exists("base/shared"));

    CHECK_INT(add1(&s, &st1, &r1, &e), 0);
    CHECK_INT(mount_count(wdir), 1);
    CHECK_STR(get("base/shared/containers/watchable/c1-cfg/cfg"), "v1");
    CHECK_INT(add1(&s, &st2, &r2, &e), 0);
    CHECK_INT(mount_count(wdir), 1); /* one tmpfs for both */
    CHECK_STR(get("base/shared/containers/watchable/c2/cfg/cfg"), "v1");
    Grpc__Storage stf = wstorage(srcfile, mpf);
    CHECK_INT(add1(&s, &stf, &r2, &e), 0);
    CHECK_STR(get("base/shared/containers/passthrough/watchable/f"), "v1");

    /* the timer (2 s) syncs every watch */
    put("src/cfg", "v2 longer", 0644, 0, 0);
    put("src/new", "n", 0644, 0, 0);
    uint64_t until = loop_now_ns() + 3000000000ull;
    while (strcmp(get("base/shared/containers/watchable/c2/cfg/new"), "n") != 0 && loop_now_ns() < until)
        loop_run_once(l, 100, &e);
    CHECK_STR(get("base/shared/containers/watchable/c1-cfg/cfg"), "v2 longer");
    CHECK_STR(get("base/shared/containers/watchable/c2/cfg/new"), "n");
    CHECK_STR(get("base/shared/containers/passthrough/watchable/f"), "v2 longer");

    /* a vanished source: the copy stays, the watch goes on */
    CHECK(rename(p("src"), p("src.away")) == 0);
    watchable_sync_all(&s.watchable);
    CHECK_STR(get("base/shared/containers/watchable/c1-cfg/cfg"), "v2 longer");
    CHECK(rename(p("src.away"), p("src")) == 0);

    /* too many entries: becomes a bind mount of the source, no longer watched */
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "cd '%s' && touch a b c d e f g h i j k l m n o p q", p("src"));
    CHECK(system(cmd) == 0);
    watchable_sync_all(&s.watchable);
    CHECK_INT(mount_count(mp1), 1);
    CHECK_INT(mount_count(mp2), 1);
    CHECK(exists("base/shared/containers/watchable/c1-cfg/q"));
    CHECK(loop_timer_armed(&s.watchable.timer)); /* the file storage is still watched */

    CHECK_INT(storage_release(&s, &r1, &e), 0);
    CHECK_INT(mount_count(mp1), 0);
    CHECK(!exists("base/shared/containers/watchable/c1-cfg"));
    CHECK_INT(mount_count(wdir), 1);
    CHECK_INT(storage_release(&s, &r2, &e), 0);
    CHECK_INT(mount_count(mp2), 0);
    CHECK_INT(mount_count(wdir), 0);
    CHECK(!loop_timer_armed(&s.watchable.timer));
    CHECK(!exists("base/shared"));
    CHECK(exists("src/q")); /* the source is untouched */
    CHECK_INT(storage_set_release_all(&s, &e), 0);
    loop_free(l);
}

static void body_storage_too_big_at_start(void)
{
    struct storage_set s;
    struct storage_refs r = {0};
    ka_err e = {0};
    struct loop *l = loop_new(&e);
    char srcdir[PATH_MAX], srcfile[PATH_MAX], nope[PATH_MAX], elsewhere[PATH_MAX];
    snprintf(srcdir, sizeof(srcdir), "%s", p("src"));
    snprintf(srcfile, sizeof(srcfile), "%s", p("src/cfg"));
    snprintf(nope, sizeof(nope), "%s", p("nope"));
    snprintf(elsewhere, sizeof(elsewhere), "%s", p("base/elsewhere"));
    CHECK(mkdir(p("base"), 0755) == 0);
    storage_set_init(&s, p("base"));
    s.loop = l;
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "cd '%s' && touch a b c d e f g h i j k l m n o p q", p("src"));
    CHECK(system(cmd) == 0);
    char mp[PATH_MAX];
    snprintf(mp, sizeof(mp), "%s", p("base/shared/containers/watchable/big"));
    Grpc__Storage st = wstorage(srcdir, mp);
    CHECK_INT(add1(&s, &st, &r, &e), 0);
    CHECK_INT(mount_count(mp), 1);
    CHECK(!loop_timer_armed(&s.watchable.timer));
    put("src/later", "l", 0644, 0, 0);
    CHECK_STR(get("base/shared/containers/watchable/big/later"), "l");
    CHECK_INT(storage_set_release_all(&s, &e), 0); /* DestroySandbox */
    for (size_t i = 0; i < r.n; i++)
        free(r.mount_points[i]);
    free(r.mount_points);
    CHECK_INT(mount_count(mp), 0);
    CHECK(!exists("base/shared"));
    CHECK(exists("src/later"));
    loop_free(l);
}

TEST(copy_tree)
{
    isolated(body_copy_tree);
}
TEST(updates_deletions)
{
    isolated(body_updates_deletions);
}
TEST(symlinks_not_followed)
{
    isolated(body_symlinks_not_followed);
}
TEST(limits)
{
    isolated(body_limits);
}
TEST(file_source)
{
    isolated(body_file_source);
}
TEST(clear)
{
    isolated(body_clear);
}
TEST(storage)
{
    isolated(body_storage);
}
TEST(storage_too_big_at_start)
{
    isolated(body_storage_too_big_at_start);
}

RUN(copy_tree, updates_deletions, symlinks_not_followed, limits, file_source, clear, storage,
    storage_too_big_at_start)
