/* Hot-plugged devices: the kernel's uevents (NETLINK_KOBJECT_UEVENT) and waiting for one device.
 *
 * A wait first looks at sysfs (a device already present, cold-plugged or added before the agent started,
 * counts once its /dev node exists) and otherwise waits for the kernel's "add" uevent, up to a timeout.
 * Matchers follow upstream: a virtio-blk disk under a PCI path, a SCSI disk by target and LUN, a pmem disk
 * by name. PCI paths ("02/03": slots from the root bus through bridges) resolve to sysfs device paths. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "../loop/loop.h"
#include "../util/err.h"
#include "../util/list.h"

enum dev_kind {
    DEV_VIRTIO_BLK, /* key: sysfs path of the PCI device, e.g. /devices/pci0000:00/0000:00:02.0 */
    DEV_SCSI,       /* key: "target:lun" */
    DEV_PMEM,       /* key: block device name, e.g. pmem0 */
};

struct uevent_mon;
struct dev_wait;

/* done gets "/dev/<name>" (valid during the call) or an error (INTERNAL "timeout ..." as upstream). */
typedef void (*dev_wait_cb)(void *arg, const char *dev_path, const ka_err *err);

/* Listen for uevents; sysfs_root is "/sys" (tests give a fake tree), dev_root "/dev". */
struct uevent_mon *uevent_mon_new(struct loop *l, const char *sysfs_root, const char *dev_root, ka_err *e);
void uevent_mon_free(struct uevent_mon *m);

/* Wait for a device. done runs later from the loop, never inside this call. */
struct dev_wait *dev_wait_start(struct uevent_mon *m, enum dev_kind kind, const char *key,
                                uint64_t timeout_ms, dev_wait_cb done, void *arg, ka_err *e);
/* Stop waiting; done will not run. */
void dev_wait_cancel(struct dev_wait *w);

/* "02/03" (hex slot[.function] per hop, slot <= 0x1f, function <= 7) to the sysfs device path of the
 * device it names, reading each bridge's pci_bus directory under sysfs_root. */
int pci_path_to_sysfs(const char *sysfs_root, const char *pci_path, char *out, size_t outlen, ka_err *e);

/* Parse a uevent datagram ("add@/devpath\0KEY=VALUE\0...") into its fields (pointers into buf, which must
 * end with a NUL). false if it is not a well-formed uevent. Exposed for the unit tests. */
struct uevent_msg {
    const char *action, *devpath, *subsystem, *devname;
};
bool uevent_parse(const char *buf, size_t len, struct uevent_msg *out);
