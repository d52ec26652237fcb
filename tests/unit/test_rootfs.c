/* rootfs: option parsing, spec validation, and real root file system setups inside throwaway namespaces. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/rootfs.h"
#include "util/fs.h"
#include "unit.h"

#ifndef MQUEUE_MAGIC
#define MQUEUE_MAGIC 0x19800202
#endif
#define ESCAPE_TARGET "/tmp/ka-escape-target"

/* ---- spec builder ---- */

#define MAXN 16

struct sb {
    Grpc__Spec spec;
    Grpc__Linux linux;
    Grpc__Root root;
    Grpc__Process proc;
    Grpc__Mount mounts[MAXN];
    Grpc__Mount *mptr[MAXN];
    char *opts[MAXN][8];
    Grpc__LinuxNamespace ns[8];
    Grpc__LinuxNamespace *nsptr[8];
    Grpc__LinuxDevice dev[MAXN];
    Grpc__LinuxDevice *devptr[MAXN];
    Grpc__Linux__SysctlEntry sys[MAXN];
    Grpc__Linux__SysctlEntry *sysptr[MAXN];
    char *masked[MAXN];
    char *ro[MAXN];
};

static void sb_init(struct sb *b)
{
    static const Grpc__Spec spec = GRPC__SPEC__INIT;
    static const Grpc__Linux linux = GRPC__LINUX__INIT;
    static const Grpc__Root root = GRPC__ROOT__INIT;
    static const Grpc__Process proc = GRPC__PROCESS__INIT;
    memset(b, 0, sizeof(*b));
    b->spec = spec;
    b->linux = linux;
    b->root = root;
    b->proc = proc;
    b->root.path = "/";
    b->spec.linux = &b->linux;
    b->spec.root = &b->root;
    b->spec.process = &b->proc;
    b->spec.mounts = b->mptr;
    b->linux.namespaces = b->nsptr;
    b->linux.devices = b->devptr;
    b->linux.sysctl = b->sysptr;
    b->linux.maskedpaths = b->masked;
    b->linux.readonlypaths = b->ro;
}

/* Options are a NULL-terminated list of words. */
static Grpc__Mount *sb_mount(struct sb *b, char *dest, char *type, char *src, ...)
{
    static const Grpc__Mount init = GRPC__MOUNT__INIT;
    size_t i = b->spec.n_mounts++;
    Grpc__Mount *m = &b->mounts[i];
    *m = init;
    m->destination = dest;
    m->type = type;
    m->source = src;
    m->options = b->opts[i];
    va_list ap;
    va_start(ap, src);
    for (char *o; (o = va_arg(ap, char *));)
        b->opts[i][m->n_options++] = o;
    va_end(ap);
    b->mptr[i] = m;
    return m;
}

static void sb_ns(struct sb *b, char *type)
{
    static const Grpc__LinuxNamespace init = GRPC__LINUX_NAMESPACE__INIT;
    size_t i = b->linux.n_namespaces++;
    b->ns[i] = init;
    b->ns[i].type = type;
    b->nsptr[i] = &b->ns[i];
}

static void sb_dev(struct sb *b, char *path, char *type, int maj, int min, unsigned mode)
{
    static const Grpc__LinuxDevice init = GRPC__LINUX_DEVICE__INIT;
    size_t i = b->linux.n_devices++;
    b->dev[i] = init;
    b->dev[i].path = path;
    b->dev[i].type = type;
    b->dev[i].major = maj;
    b->dev[i].minor = min;
    b->dev[i].filemode = mode;
    b->devptr[i] = &b->dev[i];
}

static void sb_sysctl(struct sb *b, char *key, char *value)
{
    static const Grpc__Linux__SysctlEntry init = GRPC__LINUX__SYSCTL_ENTRY__INIT;
    size_t i = b->linux.n_sysctl++;
    b->sys[i] = init;
    b->sys[i].key = key;
    b->sys[i].value = value;
    b->sysptr[i] = &b->sys[i];
}

/* ---- mount_options_parse ---- */

TEST(options_table)
{
    static const struct {
        char *opts[8];
        unsigned long flags, prop;
        const char *data;
    } cases[] = {
        {{"ro", "nosuid", "nodev"}, MS_RDONLY | MS_NOSUID | MS_NODEV, 0, ""},
        {{"rbind", "rprivate"}, MS_BIND | MS_REC, MS_PRIVATE | MS_REC, ""},
        {{"bind", "ro", "rw"}, MS_BIND, 0, ""},
        {{"size=64k", "mode=755", "noexec", "nr_inodes=10"}, MS_NOEXEC, 0, "size=64k,mode=755,nr_inodes=10"},
        {{"defaults", "", "exec", "suid", "dev"}, 0, 0, ""},
        {{"acl", "noacl", "iversion", "lazytime", "silent", "loud"}, MS_I_VERSION | MS_LAZYTIME, 0, ""},
        {{"noiversion", "nolazytime", "acl"}, MS_POSIXACL, 0, ""},
        {{"noatime", "atime", "strictatime", "relatime", "norelatime"}, MS_STRICTATIME, 0, ""},
        {{"nostrictatime", "nodiratime", "diratime", "mand", "nomand"}, 0, 0, ""},
        {{"remount", "sync", "async", "dirsync", "nodiratime"},
         MS_REMOUNT | MS_DIRSYNC | MS_NODIRATIME,
         0,
         ""},
        {{"slave"}, 0, MS_SLAVE, ""},
        {{"rshared", "newinstance"}, 0, MS_SHARED | MS_REC, "newinstance"},
        /* one propagation per mount(2): the last word wins, the state runc reaches by applying each in turn */
        {{"unbindable", "rslave"}, 0, MS_SLAVE | MS_REC, ""},
        {{"runbindable", "shared", "private"}, 0, MS_PRIVATE, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char **o = (char **)cases[i].opts;
        size_t n = 0;
        while (n < 8 && o[n])
            n++;
        unsigned long flags = 123, prop = 456;
        char data[64];
        ka_err e;
        CHECK_INT(mount_options_parse(o, n, &flags, &prop, data, sizeof(data), &e), 0);
        CHECK_INT(flags, cases[i].flags);
        CHECK_INT(prop, cases[i].prop);
        CHECK_STR(data, cases[i].data);
    }
}

TEST(options_edges)
{
    ka_err e;
    unsigned long flags, prop;
    char *o1[] = {"ro", "rslave"};
    CHECK_INT(mount_options_parse(o1, 2, &flags, NULL, NULL, 0, &e), 0);
    CHECK_INT(flags, MS_RDONLY | MS_SLAVE | MS_REC);
    char *o2[] = {"size=123456789"};
    char small[8];
    CHECK_INT(mount_options_parse(o2, 1, &flags, &prop, small, sizeof(small), &e), -1);
    CHECK_INT(e.status, KA_INVALID_ARGUMENT);
    CHECK_INT(mount_options_parse(o2, 1, &flags, &prop, NULL, 0, &e), -1);
    char exact[15];
    CHECK_INT(mount_options_parse(o2, 1, &flags, &prop, exact, sizeof(exact), &e), 0);
    CHECK_STR(exact, "size=123456789");
    char *o3[] = {NULL, ""};
    CHECK_INT(mount_options_parse(o3, 2, &flags, &prop, exact, sizeof(exact), &e), 0);
    CHECK_INT(flags, 0);
    CHECK_STR(exact, "");
}

/* ---- rootfs_validate ---- */

static void base_spec(struct sb *b)
{
    sb_init(b);
    b->spec.hostname = "c1";
    sb_ns(b, "mount");
    sb_ns(b, "ipc");
    sb_ns(b, "uts");
    sb_ns(b, "pid");
    sb_mount(b, "/proc", "proc", "proc", NULL);
    sb_mount(b, "/tmp", "tmpfs", "tmpfs", "nosuid", "size=1m", NULL);
    sb_mount(b, "/data", "bind", "/tmp", "rbind", "ro", NULL);
    sb_mount(b, "/proc/cpuinfo", "bind", "/proc/cpuinfo", "bind", NULL);
    sb_mount(b, "/a..b", "tmpfs", "tmpfs", NULL);
    sb_dev(b, "/dev/fuse", "c", 10, 229, 0666);
    sb_dev(b, "/dev/net/tun", "u", 10, 200, 0666);
    sb_dev(b, "/dev/fifo", "p", 0, 0, 0600);
    sb_dev(b, "/dev/loop9", "b", 7, 9, 0600);
    sb_sysctl(b, "kernel.shm_rmid_forced", "1");
    sb_sysctl(b, "fs.mqueue.msg_max", "10");
    sb_sysctl(b, "net.ipv4.ip_forward", "1");
    sb_sysctl(b, "kernel.domainname", "example");
    b->masked[b->linux.n_maskedpaths++] = "/proc/kcore";
    b->ro[b->linux.n_readonlypaths++] = "/proc/sys";
}

TEST(validate_ok)
{
    struct sb b;
    ka_err e = {0};
    base_spec(&b);
    CHECK_INT(rootfs_validate(&b.spec, &e), 0);
    if (e.msg[0])
        printf("# %s\n", e.msg);
}

enum bad_case {
    BAD_REL_DEST,
    BAD_DOTDOT_DEST,
    BAD_SYSCTL_NO_IPC,
    BAD_SYSCTL_UNKNOWN,
    BAD_SYSCTL_HOSTNAME,
    BAD_SYSCTL_SLASH,
    BAD_DEV_OUTSIDE,
    BAD_DEV_ITSELF,
    BAD_DEV_DOTDOT,
    BAD_DEV_TYPE,
    BAD_DEV_MAJOR,
    BAD_MASKED_REL,
    BAD_READONLY_DOTDOT,
    BAD_HOSTNAME_NO_UTS,
    BAD_MASKED_NO_MNTNS,
    BAD_PROC_BIND,
    BAD_PROC_ROOT_BIND,
    BAD_TYPE,
    BAD_EMPTY_TYPE,
    BAD_REL_BIND_SOURCE,
    BAD_PROPAGATION,
    BAD_NS_TYPE,
    BAD_NO_LINUX,
    BAD_LONG_DATA,
    BAD_COUNT,
};

static void make_bad(struct sb *b, int c)
{
    static char longopt[5000];
    memset(longopt, 'x', sizeof(longopt) - 1);
    base_spec(b);
    switch (c) {
    case BAD_REL_DEST:
        sb_mount(b, "proc", "proc", "proc", NULL);
        break;
    case BAD_DOTDOT_DEST:
        sb_mount(b, "/a/../etc", "tmpfs", "tmpfs", NULL);
        break;
    case BAD_SYSCTL_NO_IPC:
        b->ns[1].type = "network";
        break;
    case BAD_SYSCTL_UNKNOWN:
        sb_sysctl(b, "kernel.foo", "1");
        break;
    case BAD_SYSCTL_HOSTNAME:
        sb_sysctl(b, "kernel.hostname", "x");
        break;
    case BAD_SYSCTL_SLASH:
        sb_sysctl(b, "net/../../x", "1");
        break;
    case BAD_DEV_OUTSIDE:
        sb_dev(b, "/etc/fuse", "c", 10, 229, 0);
        break;
    case BAD_DEV_ITSELF:
        sb_dev(b, "/dev/", "c", 10, 229, 0);
        break;
    case BAD_DEV_DOTDOT:
        sb_dev(b, "/dev/../etc/x", "c", 10, 229, 0);
        break;
    case BAD_DEV_TYPE:
        sb_dev(b, "/dev/x", "x", 1, 2, 0);
        break;
    case BAD_DEV_MAJOR:
        sb_dev(b, "/dev/x", "c", -1, 2, 0);
        break;
    case BAD_MASKED_REL:
        b->masked[b->linux.n_maskedpaths++] = "proc/kcore";
        break;
    case BAD_READONLY_DOTDOT:
        b->ro[b->linux.n_readonlypaths++] = "/proc/../etc";
        break;
    case BAD_HOSTNAME_NO_UTS:
        b->ns[2].type = "cgroup";
        b->linux.n_sysctl = 3; /* drop kernel.domainname, which needs uts too */
        break;
    case BAD_MASKED_NO_MNTNS:
        b->ns[0].type = "user";
        break;
    case BAD_PROC_BIND:
        sb_mount(b, "/proc//kmsg", "bind", "/tmp", "rbind", NULL);
        break;
    case BAD_PROC_ROOT_BIND:
        sb_mount(b, "/proc", "none", "/tmp", "rbind", NULL);
        break;
    case BAD_TYPE:
        sb_mount(b, "/x", "ext4;x", "/dev/vda", NULL);
        break;
    case BAD_EMPTY_TYPE:
        sb_mount(b, "/x", "", "/dev/vda", NULL);
        break;
    case BAD_REL_BIND_SOURCE:
        sb_mount(b, "/x", "bind", "tmp", "bind", NULL);
        break;
    case BAD_PROPAGATION:
        b->linux.rootfspropagation = "bogus";
        break;
    case BAD_NS_TYPE:
        sb_ns(b, "time");
        break;
    case BAD_NO_LINUX:
        b->spec.linux = NULL;
        break;
    case BAD_LONG_DATA:
        sb_mount(b, "/x", "tmpfs", "tmpfs", longopt, NULL);
        break;
    }
}

TEST(validate_errors)
{
    static const char *const want[BAD_COUNT] = {
        [BAD_REL_DEST] = "mount destination proc is invalid",
        [BAD_DOTDOT_DEST] = "mount destination /a/../etc is invalid",
        [BAD_SYSCTL_NO_IPC] = "kernel.shm_rmid_forced",
        [BAD_SYSCTL_UNKNOWN] = "Sysctl config contains invalid settings",
        [BAD_SYSCTL_HOSTNAME] = "kernel.hostname",
        [BAD_SYSCTL_SLASH] = "Sysctl config contains invalid settings",
        [BAD_DEV_OUTSIDE] = "not under /dev",
        [BAD_DEV_ITSELF] = "not under /dev",
        [BAD_DEV_DOTDOT] = "not under /dev",
        [BAD_DEV_TYPE] = "invalid type",
        [BAD_DEV_MAJOR] = "invalid numbers",
        [BAD_MASKED_REL] = "masked path proc/kcore is invalid",
        [BAD_READONLY_DOTDOT] = "readonly path /proc/../etc is invalid",
        [BAD_HOSTNAME_NO_UTS] = "uts namespace",
        [BAD_MASKED_NO_MNTNS] = "mount namespace",
        [BAD_PROC_BIND] = "inside /proc",
        [BAD_PROC_ROOT_BIND] = "inside /proc",
        [BAD_TYPE] = "invalid type",
        [BAD_EMPTY_TYPE] = "invalid type",
        [BAD_REL_BIND_SOURCE] = "not absolute",
        [BAD_PROPAGATION] = "propagation",
        [BAD_NS_TYPE] = "invalid namespace type",
        [BAD_NO_LINUX] = "linux",
        [BAD_LONG_DATA] = "too long",
    };
    for (int c = 0; c < BAD_COUNT; c++) {
        struct sb b;
        ka_err e = {0};
        make_bad(&b, c);
        int rc = rootfs_validate(&b.spec, &e);
        if (rc != -1 || e.status != KA_INVALID_ARGUMENT || !strstr(e.msg, want[c]))
            printf("# case %d: rc %d status %d msg '%s' (want '%s')\n", c, rc, e.status, e.msg, want[c]);
        CHECK_INT(rc, -1);
        CHECK_INT(e.status, KA_INVALID_ARGUMENT);
        CHECK(strstr(e.msg, want[c]) != NULL);
    }
}

/* ---- fixtures on the host ---- */

struct fixture {
    char root[64];    /* the image */
    char bind[64];    /* a host dir bound into the container */
    char cg[64];      /* fake v1 cgroup dirs */
    char devbind[64]; /* a host dir bound over /dev */
};

static bool can_run_containers(void)
{
    if (geteuid() != 0 || access("/bin/busybox", X_OK) != 0) {
        printf("# skip: needs root and /bin/busybox\n");
        return false;
    }
    return true;
}

static int put(const char *dir, const char *rel, const char *data, mode_t mode)
{
    char p[256];
    ka_err e;
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    return fs_create_file(p, data, (size_t)-1, mode, &e);
}

static int mkdirs(const char *dir, const char *const *rels)
{
    char p[256];
    ka_err e;
    for (; *rels; rels++) {
        snprintf(p, sizeof(p), "%s/%s", dir, *rels);
        if (fs_mkdir_p(p, 0755, &e) < 0)
            return -1;
    }
    return 0;
}

static int copy_busybox(const char *root)
{
    char *buf = NULL, p[256];
    size_t len;
    ka_err e;
    if (fs_read_file("/bin/busybox", &buf, &len, &e) < 0)
        return -1;
    snprintf(p, sizeof(p), "%s/bin/busybox", root);
    int rc = fs_create_file(p, buf, len, 0755, &e);
    free(buf);
    return rc;
}

static int make_image(const char *root, const char *hostdir)
{
    static const char *const dirs[] = {"bin", "etc", "proc", "sys", "dev", "tmp", "mnt", "secretdir", NULL};
    char p[256];
    if (mkdirs(root, dirs) < 0 || copy_busybox(root) < 0 || put(root, "etc/marker", "image", 0644) < 0 ||
        put(root, "etc/secret", "s3cret", 0600) < 0 || put(root, "secretdir/file", "hidden", 0600) < 0)
        return -1;
    snprintf(p, sizeof(p), "%s/escape", root);
    if (symlink("../../../../tmp/ka-escape-target", p) < 0)
        return -1;
    snprintf(p, sizeof(p), "%s/etc/foo", root);
    if (symlink("/../../tmp", p) < 0)
        return -1;
    snprintf(p, sizeof(p), "%s/hostdir", root); /* an absolute link naming a real host dir */
    if (symlink(hostdir, p) < 0)
        return -1;
    snprintf(p, sizeof(p), "%s/procsys", root);
    return symlink("/proc/sys", p);
}

static int fixture_make(struct fixture *f)
{
    static const char *const cgdirs[] = {"memory", "cpu,cpuacct", NULL};
    memset(f, 0, sizeof(*f));
    snprintf(f->root, sizeof(f->root), "/tmp/ka-rootfs-XXXXXX");
    snprintf(f->bind, sizeof(f->bind), "/tmp/ka-bind-XXXXXX");
    snprintf(f->cg, sizeof(f->cg), "/tmp/ka-cg-XXXXXX");
    snprintf(f->devbind, sizeof(f->devbind), "/tmp/ka-devbind-XXXXXX");
    if (!mkdtemp(f->root) || !mkdtemp(f->bind) || !mkdtemp(f->cg) || !mkdtemp(f->devbind))
        return -1;
    if (make_image(f->root, f->bind) < 0 || put(f->bind, "hello", "hi", 0644) < 0 ||
        mkdirs(f->cg, cgdirs) < 0 || put(f->cg, "memory/marker", "mem", 0644) < 0)
        return -1;
    rmdir(ESCAPE_TARGET);
    return 0;
}

static void fixture_remove(struct fixture *f)
{
    const char *dirs[] = {f->root, f->bind, f->cg, f->devbind};
    for (size_t i = 0; i < 4; i++) {
        ka_err e;
        if (dirs[i][0] && fs_remove_tree(dirs[i], &e) < 0)
            printf("# cleanup %s: %s\n", dirs[i], e.msg);
    }
}

static size_t dir_entries(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "ls -A %s | wc -l", dir);
    FILE *p = popen(cmd, "r");
    unsigned long n = 1000;
    if (p) {
        if (fscanf(p, "%lu", &n) != 1)
            n = 1000;
        pclose(p);
    }
    return n;
}

static bool host_mountinfo_has(const char *needle)
{
    char *buf = NULL;
    ka_err e;
    if (fs_read_file("/proc/self/mountinfo", &buf, NULL, &e) < 0)
        return true;
    bool has = strstr(buf, needle) != NULL;
    free(buf);
    return has;
}

/* ---- running a container setup in a child ---- */

static int report_fd = -1;
static int report_fails;

static void expect(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void expect(bool ok, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    dprintf(report_fd, "%s %s\n", ok ? "ok" : "FAIL", buf);
    report_fails += !ok;
}

typedef void (*container_fn)(struct fixture *f);

/* fn runs as pid 1 of a new pid ns, in new mount (+ipc) namespaces; its verdicts come back through a pipe. */
static void run_container(struct fixture *f, int flags, container_fn fn, int min_oks)
{
    int p[2];
    CHECK_INT(pipe(p), 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        report_fd = p[1];
        if (unshare(CLONE_NEWNS | CLONE_NEWPID | flags) < 0) {
            expect(false, "unshare: %s", strerror(errno));
            _exit(1);
        }
        pid_t g = fork();
        if (g == 0) {
            fn(f);
            _exit(report_fails ? 1 : 0);
        }
        int st = 0;
        waitpid(g, &st, 0);
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
    close(p[1]);
    char buf[16384];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof(buf) - 1 && (r = read(p[0], buf + n, sizeof(buf) - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(p[0]);
    int st = 0, oks = 0, fails = 0;
    waitpid(pid, &st, 0);
    char *save = NULL;
    for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        oks += strncmp(l, "ok ", 3) == 0;
        fails += strncmp(l, "FAIL", 4) == 0;
        if (strncmp(l, "ok ", 3) != 0)
            printf("# %s\n", l);
    }
    printf("# %d container checks passed\n", oks);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_INT(fails, 0);
    CHECK(oks >= min_oks);
}

/* ---- checks inside the container ---- */

static bool is_fs(const char *path, long magic)
{
    struct statfs s;
    return statfs(path, &s) == 0 && s.f_type == magic;
}

static bool is_ro(const char *path)
{
    struct statvfs s;
    return statvfs(path, &s) == 0 && (s.f_flag & ST_RDONLY);
}

static bool is_chr(const char *path, unsigned maj, unsigned min, mode_t perm)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == maj &&
           minor(st.st_rdev) == min && (st.st_mode & 07777) == perm;
}

static bool link_is(const char *path, const char *target)
{
    char buf[256];
    ssize_t n = readlink(path, buf, sizeof(buf) - 1);
    if (n < 0)
        return false;
    buf[n] = '\0';
    return strcmp(buf, target) == 0;
}

static bool content_is(const char *path, const char *want)
{
    char *buf = NULL;
    ka_err e;
    if (fs_read_file(path, &buf, NULL, &e) < 0)
        return false;
    bool ok = strcmp(buf, want) == 0;
    free(buf);
    return ok;
}

static int create_errno(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return errno;
    close(fd);
    unlink(path);
    return 0;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* A mount point with this path in the container's mountinfo (and, when given, nothing mentioning needle). */
static bool mountinfo_has_mp(const char *mp, const char *needle_absent, const char *opt_present)
{
    char *buf = NULL;
    ka_err e;
    if (fs_read_file("/proc/self/mountinfo", &buf, NULL, &e) < 0)
        return false;
    bool found = false, clean = true;
    char *save = NULL;
    for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char mpath[512];
        if (sscanf(l, "%*s %*s %*s %*s %511s", mpath) == 1 && strcmp(mpath, mp) == 0 &&
            (!opt_present || strstr(l, opt_present)))
            found = true;
        if (needle_absent && sscanf(l, "%*s %*s %*s %*s %511s", mpath) == 1 && strstr(mpath, needle_absent))
            clean = false;
    }
    free(buf);
    return found && clean;
}

static bool setup(struct rootfs_ctx *ctx)
{
    ka_err e = {0};
    int rc = rootfs_prepare(ctx, &e);
    expect(rc == 0, "rootfs_prepare: %s", e.msg);
    if (rc == 0) {
        rc = rootfs_finish(ctx, &e);
        expect(rc == 0, "rootfs_finish: %s", e.msg);
    }
    return rc == 0;
}

/* ---- scenario 1: pivot_root, every mount kind, masking, read-only, devices, sysctl, escapes ---- */

static void full_spec(struct sb *b, struct fixture *f)
{
    sb_init(b);
    b->root.readonly = 1;
    b->proc.cwd = "/work/dir";
    sb_ns(b, "mount");
    sb_ns(b, "ipc");
    sb_ns(b, "pid");
    sb_mount(b, "/proc", "proc", "proc", "nosuid", "noexec", "nodev", NULL);
    sb_mount(b, "/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k", NULL);
    sb_mount(b, "/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance", "ptmxmode=0666",
             "mode=0620", NULL);
    sb_mount(b, "/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev", NULL);
    sb_mount(b, "/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro", NULL);
    sb_mount(b, "/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro", NULL);
    sb_mount(b, "/tmp", "tmpfs", "tmpfs", "nosuid", "size=1m", NULL);
    sb_mount(b, "/hostdir", "tmpfs", "tmpfs", "size=2m", NULL);
    sb_mount(b, "/mnt/data", "bind", f->bind, "rbind", "ro", NULL);
    sb_mount(b, "/escape/x", "tmpfs", "tmpfs", NULL);
    sb_mount(b, "/etc/foo/y", "bind", f->bind, "bind", NULL);
    b->masked[b->linux.n_maskedpaths++] = "/proc/kcore";
    b->masked[b->linux.n_maskedpaths++] = "/proc/acpi";
    b->masked[b->linux.n_maskedpaths++] = "/etc/secret";
    b->masked[b->linux.n_maskedpaths++] = "/secretdir";
    b->masked[b->linux.n_maskedpaths++] = "/nonexistent/file";
    b->ro[b->linux.n_readonlypaths++] = "/proc/sys";
    b->ro[b->linux.n_readonlypaths++] = "/etc";
    b->ro[b->linux.n_readonlypaths++] = "/nonexistent";
    sb_dev(b, "/dev/fuse", "c", 10, 229, 0640);
    b->dev[0].uid = 1000;
    b->dev[0].gid = 1001;
    sb_dev(b, "/dev/net/tun", "c", 10, 200, 0666);
    sb_dev(b, "/dev/mypipe", "p", 0, 0, 0600);
    sb_sysctl(b, "kernel.shm_rmid_forced", "1");
}

static void check_basics(void)
{
    char cwd[64] = "";
    expect(getcwd(cwd, sizeof(cwd)) && strcmp(cwd, "/") == 0, "cwd is / (%s)", cwd);
    expect(access("/bin/busybox", X_OK) == 0, "/bin/busybox is there");
    expect(content_is("/etc/marker", "image"), "/etc/marker comes from the image");
    expect(link_is("/proc/self", "1"), "/proc is the container's pid ns (we are pid 1)");
    expect(is_fs("/proc", PROC_SUPER_MAGIC), "/proc is procfs");
    expect(exists("/work/dir"), "process cwd /work/dir created");
    mode_t old = umask(0);
    expect(old == 022, "umask is 022 (%o)", old);
    expect(mountinfo_has_mp("/", "ka-rootfs-", NULL), "mountinfo: / present, no host rootfs path");
}

static void check_dev(void)
{
    expect(is_fs("/dev", TMPFS_MAGIC), "/dev is tmpfs");
    expect(is_chr("/dev/null", 1, 3, 0666), "/dev/null c 1:3 0666");
    expect(is_chr("/dev/zero", 1, 5, 0666) && is_chr("/dev/full", 1, 7, 0666) &&
               is_chr("/dev/tty", 5, 0, 0666) && is_chr("/dev/urandom", 1, 9, 0666) &&
               is_chr("/dev/random", 1, 8, 0666),
           "default nodes zero full tty urandom random");
    expect(is_chr("/dev/fuse", 10, 229, 0640), "/dev/fuse c 10:229 0640");
    struct stat st;
    expect(stat("/dev/fuse", &st) == 0 && st.st_uid == 1000 && st.st_gid == 1001,
           "/dev/fuse owned 1000:1001");
    expect(is_chr("/dev/net/tun", 10, 200, 0666), "/dev/net/tun in a created subdir");
    expect(stat("/dev/mypipe", &st) == 0 && S_ISFIFO(st.st_mode), "/dev/mypipe is a fifo");
    expect(link_is("/dev/ptmx", "pts/ptmx"), "/dev/ptmx -> pts/ptmx");
    expect(link_is("/dev/fd", "/proc/self/fd") && link_is("/dev/stdin", "/proc/self/fd/0") &&
               link_is("/dev/stdout", "/proc/self/fd/1") && link_is("/dev/stderr", "/proc/self/fd/2"),
           "/dev/fd stdin stdout stderr links");
    expect(exists("/dev/kcore") == (access("/proc/kcore", F_OK) == 0), "/dev/kcore iff /proc/kcore");
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    expect(fd >= 0 && write(fd, "x", 1) == 1, "/dev/null is writable");
    if (fd >= 0)
        close(fd);
    expect(is_fs("/dev/pts", DEVPTS_SUPER_MAGIC), "/dev/pts is devpts");
    expect(is_fs("/dev/mqueue", MQUEUE_MAGIC), "/dev/mqueue is mqueue");
}

static void check_mounts(struct fixture *f)
{
    struct statfs s;
    expect(is_fs("/sys", SYSFS_MAGIC) && is_ro("/sys"), "/sys is read-only sysfs");
    expect(is_fs("/sys/fs/cgroup", TMPFS_MAGIC) && is_ro("/sys/fs/cgroup"), "/sys/fs/cgroup is a ro tmpfs");
    expect(content_is("/sys/fs/cgroup/memory/marker", "mem") && is_ro("/sys/fs/cgroup/memory"),
           "cgroup v1 memory hierarchy bound read-only");
    expect(link_is("/sys/fs/cgroup/cpu", "cpu,cpuacct") && link_is("/sys/fs/cgroup/cpuacct", "cpu,cpuacct"),
           "co-mounted cpu,cpuacct links");
    expect(statfs("/tmp", &s) == 0 && s.f_type == TMPFS_MAGIC && (long long)s.f_blocks * s.f_bsize == 1 << 20,
           "/tmp is a 1 MiB tmpfs");
    expect(create_errno("/tmp/w") == 0, "/tmp is writable");
    expect(content_is("/mnt/data/hello", "hi"), "host dir bound at /mnt/data");
    expect(create_errno("/mnt/data/new") == EROFS, "/mnt/data is read-only");
    expect(is_fs("/tmp/ka-escape-target/x", TMPFS_MAGIC) &&
               mountinfo_has_mp("/tmp/ka-escape-target/x", NULL, NULL),
           "/escape/x (-> ../../../../tmp/ka-escape-target) landed inside the rootfs");
    expect(content_is("/tmp/y/hello", "hi"), "/etc/foo/y (/etc/foo -> /../../tmp) landed at /tmp/y");
    expect(statfs(f->bind, &s) == 0 && s.f_type == TMPFS_MAGIC &&
               (long long)s.f_blocks * s.f_bsize == 2 << 20,
           "/hostdir (-> %s, a host path) landed inside the rootfs", f->bind);
}

static void check_protection(void)
{
    expect(is_chr("/etc/secret", 1, 3, 0666) && content_is("/etc/secret", ""), "masked file /etc/secret");
    expect(is_fs("/secretdir", TMPFS_MAGIC) && is_ro("/secretdir") && !exists("/secretdir/file"),
           "masked dir /secretdir is an empty ro tmpfs");
    expect(!exists("/proc/acpi") || (is_fs("/proc/acpi", TMPFS_MAGIC) && is_ro("/proc/acpi")),
           "masked /proc/acpi");
    expect(content_is("/proc/sys/kernel/shm_rmid_forced", "1\n"), "sysctl kernel.shm_rmid_forced = 1");
    int fd = open("/proc/sys/kernel/shm_rmid_forced", O_WRONLY | O_CLOEXEC);
    expect(fd < 0 && errno == EROFS, "/proc/sys is read-only");
    if (fd >= 0)
        close(fd);
    expect(create_errno("/etc/new") == EROFS, "/etc is read-only");
    expect(create_errno("/newfile") == EROFS && is_ro("/"), "/ is read-only");
    expect(!is_ro("/dev") && !is_ro("/proc"), "/dev and /proc stay writable");
}

static void full_container(struct fixture *f)
{
    struct sb b;
    const char *names[] = {"memory", "cpu,cpuacct"};
    char mem[128], cpu[128];
    snprintf(mem, sizeof(mem), "%s/memory", f->cg);
    snprintf(cpu, sizeof(cpu), "%s/cpu,cpuacct", f->cg);
    const char *dirs[] = {mem, cpu};
    full_spec(&b, f);
    struct rootfs_ctx ctx = {
        .spec = &b.spec, .rootfs = f->root, .n_cgroups = 2, .cgroup_names = names, .cgroup_dirs = dirs};
    if (!setup(&ctx))
        return;
    check_basics();
    check_dev();
    check_mounts(f);
    check_protection();
}

static bool host_unchanged(struct fixture *f, const char *shm_before)
{
    char p[128];
    bool ok = true;
    snprintf(p, sizeof(p), "%s/dev", f->root);
    ok &= dir_entries(p) == 0;
    snprintf(p, sizeof(p), "%s/tmp", f->root);
    ok &= dir_entries(p) == 0;
    ok &= dir_entries(f->bind) == 1 && dir_entries(f->devbind) == 0;
    ok &= access(ESCAPE_TARGET, F_OK) != 0;
    ok &= content_is("/proc/sys/kernel/shm_rmid_forced", shm_before);
    ok &= !host_mountinfo_has("ka-");
    return ok;
}

TEST(container_pivot)
{
    struct fixture f;
    char *shm = NULL;
    ka_err e;
    if (!can_run_containers())
        return;
    CHECK_INT(fs_read_file("/proc/sys/kernel/shm_rmid_forced", &shm, NULL, &e), 0);
    if (fixture_make(&f) == 0)
        run_container(&f, CLONE_NEWIPC, full_container, 42);
    else
        CHECK(0);
    CHECK(shm && host_unchanged(&f, shm));
    free(shm);
    fixture_remove(&f);
}

/* ---- scenario 2: no pivot (MS_MOVE + chroot), devices bound from the host as in a user ns ---- */

static void move_container(struct fixture *f)
{
    struct sb b;
    sb_init(&b);
    sb_ns(&b, "mount");
    sb_mount(&b, "/proc", "proc", "proc", NULL);
    sb_mount(&b, "/dev", "tmpfs", "tmpfs", "mode=755", "ro", NULL);
    sb_dev(&b, "/dev/fuse", "c", 10, 229, 0600);
    struct rootfs_ctx ctx = {.spec = &b.spec, .rootfs = f->root, .no_pivot = true, .in_userns = true};
    if (!setup(&ctx))
        return;
    expect(content_is("/etc/marker", "image"), "chrooted into the image");
    expect(link_is("/proc/self", "1"), "/proc is the container's");
    expect(!exists("/sys/fs/cgroup"), "host /sys is not visible");
    expect(is_chr("/dev/null", 1, 3, 0666) && mountinfo_has_mp("/dev/null", NULL, NULL),
           "/dev/null is the host node bound over an empty file");
    expect(is_chr("/dev/fuse", 10, 229, 0600) && mountinfo_has_mp("/dev/fuse", NULL, NULL),
           "/dev/fuse bound");
    expect(link_is("/dev/ptmx", "pts/ptmx"), "/dev/ptmx link");
    expect(is_ro("/dev") && !is_ro("/"), "/dev remounted read-only at the end, / stays rw");
}

TEST(container_no_pivot_userns_devices)
{
    struct fixture f;
    if (!can_run_containers())
        return;
    if (access("/dev/fuse", F_OK) != 0) {
        printf("# skip: no /dev/fuse on the host\n");
        return;
    }
    if (fixture_make(&f) == 0)
        run_container(&f, 0, move_container, 9);
    else
        CHECK(0);
    CHECK(!host_mountinfo_has("ka-"));
    CHECK(access(ESCAPE_TARGET, F_OK) != 0);
    fixture_remove(&f);
}

/* ---- scenario 3: rshared root propagation, /dev bind-mounted (no nodes created), refused binds ---- */

static void devbind_container(struct fixture *f)
{
    struct sb b;
    sb_init(&b);
    sb_ns(&b, "mount");
    b.linux.rootfspropagation = "rshared";
    sb_mount(&b, "/proc", "proc", "proc", NULL);
    sb_mount(&b, "/dev", "bind", f->devbind, "rbind", NULL);
    sb_dev(&b, "/dev/fuse", "c", 10, 229, 0600);
    struct rootfs_ctx ctx = {.spec = &b.spec, .rootfs = f->root};
    if (!setup(&ctx))
        return;
    expect(!exists("/dev/null") && !exists("/dev/ptmx") && !exists("/dev/fuse") && !exists("/dev/fd"),
           "nothing created in a bind-mounted /dev");
    expect(mountinfo_has_mp("/", NULL, "shared:"), "/ has shared propagation");
}

/* Binds that would land in procfs are refused, even through an image symlink. */
static void refused_container(struct fixture *f)
{
    static char *dests[] = {"/proc/kmsg", "/procsys/kernel"};
    for (size_t i = 0; i < 2; i++) {
        struct sb b;
        sb_init(&b);
        sb_mount(&b, "/proc", "proc", "proc", NULL);
        sb_mount(&b, dests[i], "bind", f->bind, "rbind", NULL);
        struct rootfs_ctx ctx = {.spec = &b.spec, .rootfs = f->root};
        ka_err e = {0};
        int rc = rootfs_prepare(&ctx, &e);
        expect(rc == -1 && e.status == KA_INVALID_ARGUMENT && strstr(e.msg, "/proc"),
               "bind to %s refused: %s", dests[i], e.msg);
    }
}

TEST(container_dev_bind_and_refusals)
{
    struct fixture f;
    if (!can_run_containers())
        return;
    if (fixture_make(&f) == 0) {
        run_container(&f, 0, devbind_container, 4);
        run_container(&f, 0, refused_container, 2);
    } else {
        CHECK(0);
    }
    CHECK_INT(dir_entries(f.devbind), 0);
    CHECK(!host_mountinfo_has("ka-"));
    fixture_remove(&f);
}

RUN(options_table, options_edges, validate_ok, validate_errors, container_pivot,
    container_no_pivot_userns_devices, container_dev_bind_and_refusals)
