/* Uevent datagrams and PCI paths: parsing hostile messages, resolving paths through a fake sysfs tree, and a
 * wait ended by sysfs or by its timeout on a real event loop (the kernel's uevents are exercised by
 * tests/integration/test_devices.py). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "guest/uevent.h"
#include "util/fs.h"
#include "util/log.h"
#include "unit.h"

static char g_dir[128];

static const char MSG[] = "add@/devices/pci0000:00/0000:00:02.0/virtio1/block/vda\0ACTION=add\0"
                          "DEVPATH=/devices/pci0000:00/0000:00:02.0/virtio1/block/vda\0SUBSYSTEM=block\0"
                          "DEVNAME=vda\0DEVTYPE=disk\0SEQNUM=2077";

TEST(parse_uevents)
{
    struct uevent_msg u;
    CHECK(uevent_parse(MSG, sizeof(MSG), &u));
    CHECK_STR(u.action, "add");
    CHECK_STR(u.devpath, "/devices/pci0000:00/0000:00:02.0/virtio1/block/vda");
    CHECK_STR(u.subsystem, "block");
    CHECK_STR(u.devname, "vda");

    CHECK(!uevent_parse(MSG, sizeof(MSG) - 1, &u));      /* not NUL-terminated */
    CHECK(!uevent_parse("", 1, &u));                     /* empty */
    CHECK(!uevent_parse("libudev\0ACTION=add", 19, &u)); /* udev's own format */
    static const char no_subsystem[] = "add@/x\0ACTION=add\0DEVPATH=/x";
    CHECK(!uevent_parse(no_subsystem, sizeof(no_subsystem), &u));
    static const char no_name[] = "remove@/x\0ACTION=remove\0DEVPATH=/x\0SUBSYSTEM=block";
    CHECK(uevent_parse(no_name, sizeof(no_name), &u) && u.devname == NULL);
}

static void mkdirs(const char *rel)
{
    char p[PATH_MAX];
    ka_err e;
    snprintf(p, sizeof(p), "%s/%s", g_dir, rel);
    CHECK_INT(fs_mkdir_p(p, 0755, &e), 0);
}

static bool pci_is(const char *path, const char *want)
{
    char out[PATH_MAX];
    ka_err e;
    if (pci_path_to_sysfs(g_dir, path, out, sizeof(out), &e) < 0) {
        printf("# %s: %s\n", path, e.msg);
        return false;
    }
    if (strcmp(out, want) != 0)
        printf("# %s -> %s\n", path, out);
    return strcmp(out, want) == 0;
}

static int pci_fails(const char *path)
{
    char out[PATH_MAX];
    ka_err e;
    return pci_path_to_sysfs(g_dir, path, out, sizeof(out), &e) < 0 ? e.status : 0;
}

TEST(pci_paths)
{
    mkdirs("devices/pci0000:00/0000:00:03.0/pci_bus/0000:01");
    mkdirs("devices/pci0000:00/0000:00:03.0/0000:01:1f.0/pci_bus/0000:02");
    mkdirs("devices/pci0000:00/0000:00:04.0/pci_bus/0000:05");
    mkdirs("devices/pci0000:00/0000:00:04.0/pci_bus/0000:06"); /* two buses: ambiguous */
    CHECK(pci_is("02", "/devices/pci0000:00/0000:00:02.0"));
    CHECK(pci_is("1f.7", "/devices/pci0000:00/0000:00:1f.7"));
    CHECK(pci_is("03/1f", "/devices/pci0000:00/0000:00:03.0/0000:01:1f.0"));
    CHECK(pci_is("03/1F/0a.1", "/devices/pci0000:00/0000:00:03.0/0000:01:1f.0/0000:02:0a.1"));
    CHECK_INT(pci_fails(""), KA_INVALID_ARGUMENT);
    CHECK_INT(pci_fails("20"), KA_INVALID_ARGUMENT);   /* slot > 0x1f */
    CHECK_INT(pci_fails("02.8"), KA_INVALID_ARGUMENT); /* function > 7 */
    CHECK_INT(pci_fails("02."), KA_INVALID_ARGUMENT);
    CHECK_INT(pci_fails("02//03"), KA_INVALID_ARGUMENT);
    CHECK_INT(pci_fails("03/"), KA_INVALID_ARGUMENT);
    CHECK_INT(pci_fails("-1"), KA_INVALID_ARGUMENT);
    CHECK_INT(pci_fails("0x2"), KA_INVALID_ARGUMENT);
    CHECK_INT(pci_fails("../02"), KA_INVALID_ARGUMENT);
    CHECK_INT(pci_fails("02/01"), KA_NOT_FOUND); /* 02 is no bridge */
    CHECK_INT(pci_fails("04/01"), KA_NOT_FOUND); /* a bridge with two buses */
    CHECK_INT(pci_fails("1/1/1/1/1/1/1/1/1/1/1/1/1/1/1/1/1"), KA_INVALID_ARGUMENT); /* too many hops */
}

struct got {
    int calls;
    char path[PATH_MAX];
    int status;
};

static void on_dev(void *arg, const char *path, const ka_err *err)
{
    struct got *g = arg;
    g->calls++;
    g->status = err ? err->status : 0;
    snprintf(g->path, sizeof(g->path), "%s", path ? path : "");
}

TEST(waits_on_a_loop)
{
    char dev[PATH_MAX], node[PATH_MAX + 8];
    ka_err e;
    snprintf(dev, sizeof(dev), "%s/dev", g_dir);
    mkdirs("dev");
    mkdirs("devices/pci0000:00/0000:00:07.0/virtio4/block/vdx");
    mkdirs("bus/scsi/devices/3:0:2:5/block/sdk");
    mkdirs("block/pmem2");
    struct loop *l = loop_new(&e);
    struct uevent_mon *m = l ? uevent_mon_new(l, g_dir, dev, &e) : NULL;
    CHECK(m != NULL);
    if (!m)
        return;
    /* present in sysfs but no /dev node yet: wait (devtmpfs makes the node before the kernel's uevent) */
    struct got a = {0}, b = {0}, c = {0}, d = {0};
    struct dev_wait *wa =
        dev_wait_start(m, DEV_VIRTIO_BLK, "/devices/pci0000:00/0000:00:07.0", 200, on_dev, &a, &e);
    CHECK(wa != NULL && a.calls == 0); /* never inside the call */
    snprintf(node, sizeof(node), "%s/sdk", dev);
    CHECK_INT(mknod(node, S_IFBLK | 0600, makedev(7, 200)), 0);
    snprintf(node, sizeof(node), "%s/pmem2", dev);
    CHECK_INT(mknod(node, S_IFBLK | 0600, makedev(7, 201)), 0);
    CHECK(dev_wait_start(m, DEV_SCSI, "2:5", 1000, on_dev, &b, &e) != NULL);
    CHECK(dev_wait_start(m, DEV_PMEM, "pmem2", 1000, on_dev, &c, &e) != NULL);
    struct dev_wait *wd = dev_wait_start(m, DEV_SCSI, "2:6", 1000, on_dev, &d, &e);
    dev_wait_cancel(wd); /* cancelled: never called */
    for (int i = 0; i < 100 && (a.calls + b.calls + c.calls) < 3; i++)
        loop_run_once(l, 50, &e);
    CHECK_INT(b.calls, 1);
    CHECK(strstr(b.path, "/dev/sdk") != NULL && b.status == 0);
    CHECK_INT(c.calls, 1);
    CHECK(strstr(c.path, "/dev/pmem2") != NULL);
    CHECK_INT(a.calls, 1);
    CHECK_INT(a.status, KA_INTERNAL); /* the virtio disk's node never appeared: timeout */
    CHECK_INT(d.calls, 0);
    uevent_mon_free(m);
    loop_free(l);
}

int main(void)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/ka-uevent-XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    ka_log_set_fd(STDERR_FILENO);
    static const unit_fn fns[] = {parse_uevents, pci_paths, waits_on_a_loop};
    static const char *const names[] = {"parse_uevents", "pci_paths", "waits_on_a_loop"};
    int rc = unit_run(names, fns, 3);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
