/* The agent as PID 1: the mounts and settings upstream's init mode makes (spec §5.1), each skipped when the
 * kernel or an initramfs already did it. */
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/log.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

struct early_mount {
    const char *source, *target, *fstype;
    unsigned long flags;
    const char *data;
    bool optional;
};

static const struct early_mount early[] = {
    {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, false},
    {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, false},
    {"dev", "/dev", "devtmpfs", MS_NOSUID, NULL, true},
    {"tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, NULL, false},
    {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, NULL, false},
    {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, NULL, false},
};

/* Is target already a mount point of fstype (the kernel may have mounted devtmpfs, an initramfs /proc)? */
static bool mounted_as(const char *target, const char *fstype)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        char mnt[1024], type[64];
        const char *dash = strstr(line, " - ");
        if (dash && sscanf(line, "%*s %*s %*s %*s %1023s", mnt) == 1 && sscanf(dash + 3, "%63s", type) == 1)
            found = strcmp(mnt, target) == 0 && strcmp(type, fstype) == 0;
    }
    fclose(f);
    return found;
}

static int do_mount(const struct early_mount *m, ka_err *e)
{
    if (access("/proc/self/mountinfo", R_OK) == 0 && mounted_as(m->target, m->fstype))
        return 0;
    if (fs_mkdir_p(m->target, 0755, e) < 0)
        return -1;
    if (mount(m->source, m->target, m->fstype, m->flags, m->data) < 0) {
        if (m->optional) {
            log_debug("init", "mount %s on %s: %s (tolerated)", m->fstype, m->target, strerror(errno));
            return 0;
        }
        return ka_fail_errno(e, errno, "mount %s on %s", m->fstype, m->target);
    }
    return 0;
}

int init_early_mounts(ka_err *e)
{
    for (size_t i = 0; i < ARRAY_SIZE(early); i++)
        if (do_mount(&early[i], e) < 0)
            return -1;
    return 0;
}

/* v1: a read-only tmpfs holding one hierarchy per enabled controller of /proc/cgroups (cpu and cpuacct
 * apart, as upstream). A guest without the devices controller gets no cgroup mounts (upstream too). */
static int mount_cgroup_v1(ka_err *e)
{
    static const char *const known[] = {"cpu",     "cpuacct", "blkio",   "cpuset",     "memory",
                                        "devices", "freezer", "net_cls", "perf_event", "net_prio",
                                        "hugetlb", "pids",    "rdma"};
    char *text = NULL;
    if (fs_read_file("/proc/cgroups", &text, NULL, e) < 0)
        return -1;
    bool enabled[ARRAY_SIZE(known)] = {false};
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[64];
        int hier, num, en;
        if (line[0] == '#' || sscanf(line, "%63s %d %d %d", name, &hier, &num, &en) != 4 || !en)
            continue;
        for (size_t i = 0; i < ARRAY_SIZE(known); i++)
            if (strcmp(name, known[i]) == 0)
                enabled[i] = true;
    }
    free(text);
    if (!enabled[5]) {
        log_warn("init", "no devices cgroup controller: cgroups are not mounted");
        return 0;
    }
    const struct early_mount root = {
        "tmpfs", "/sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755", false};
    if (!mounted_as("/sys/fs/cgroup", "tmpfs") && do_mount(&root, e) < 0)
        return -1;
    for (size_t i = 0; i < ARRAY_SIZE(known); i++) {
        if (!enabled[i])
            continue;
        char target[128];
        snprintf(target, sizeof(target), "/sys/fs/cgroup/%s", known[i]);
        const struct early_mount m = {
            "cgroup", target, "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME, known[i], false};
        if (do_mount(&m, e) < 0)
            return -1;
    }
    if (mount(NULL, "/sys/fs/cgroup", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=755") < 0)
        log_warn("init", "remount /sys/fs/cgroup read-only: %s", strerror(errno));
    return 0;
}

static int mount_cgroups(bool unified, ka_err *e)
{
    struct statfs sf;
    if (statfs("/sys/fs/cgroup", &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC)
        return 0; /* already there (an initramfs did it) */
    if (unified) {
        const struct early_mount m = {"cgroup2",    "/sys/fs/cgroup",
                                      "cgroup2",    MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME,
                                      "nsdelegate", false};
        return do_mount(&m, e);
    }
    return mount_cgroup_v1(e);
}

static void setup_console(void)
{
    struct stat st;
    if (lstat("/dev/ptmx", &st) == 0 && !S_ISLNK(st.st_mode))
        unlink("/dev/ptmx");
    if (symlink("pts/ptmx", "/dev/ptmx") < 0 && errno != EEXIST)
        log_warn("init", "/dev/ptmx: %s", strerror(errno));
    setsid();
    ioctl(0, TIOCSCTTY, 1);
}

static void set_hostname(void)
{
    char *text = NULL;
    ka_err e;
    const char *name = "localhost";
    if (fs_read_file("/etc/hostname", &text, NULL, &e) == 0) {
        char *tok = strtok(text, " \t\n");
        if (tok)
            name = tok;
    }
    if (sethostname(name, strlen(name)) < 0)
        log_warn("init", "sethostname %s: %s", name, strerror(errno));
    free(text);
}

static int loopback_up(ka_err *e)
{
    cleanup_close int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        return ka_fail_errno(e, errno, "bring lo up");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
        return ka_fail_errno(e, errno, "bring lo up");
    return 0;
}

int init_setup(bool unified_cgroup, ka_err *e)
{
    if (mount_cgroups(unified_cgroup, e) < 0)
        return ka_wrap(e, "cgroups");
    setup_console();
    setenv("PATH", "/bin:/sbin/:/usr/bin/:/usr/sbin/", 1);
    set_hostname();
    return loopback_up(e);
}
