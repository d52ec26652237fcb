/* The devices a request names, resolved before the runtime sees the request: storages whose source is a PCI
 * path ("blk"), a SCSI address ("scsi") or a pmem disk ("nvdimm") get the guest's /dev path once the disk is
 * there, and CreateContainer's devices rewrite the OCI spec's device numbers (linux.devices and the device
 * cgroup rules) from host to guest. vfio devices are not supported yet. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "agent.pb-c.h"
#include "uevent.h"

struct dev_prep;
typedef void (*dev_prep_cb)(void *arg, const ka_err *err);

struct dev_env {
    struct uevent_mon *mon;
    const char *sysfs_root;
    uint64_t timeout_ms; /* agent.hotplug_timeout */
};

/* Rewrite what needs no waiting and start the waits. 0: nothing to wait for, the request is ready now;
 * 1: *out is waiting and done runs from the loop once everything is rewritten (or failed); -1: e is set.
 * spec may be NULL (CreateSandbox). The request must outlive the preparation. */
int devices_prepare(const struct dev_env *env, Grpc__Storage **storages, size_t n_storages,
                    Grpc__Device **devices, size_t n_devices, Grpc__Spec *spec, dev_prep_cb done, void *arg,
                    struct dev_prep **out, ka_err *e);
void devices_prepare_cancel(struct dev_prep *p);

/* The /dev path of the virtio-blk disk at a PCI path given as slots (AddSwap), through a one-device wait. */
struct dev_wait *devices_wait_pci_slots(const struct dev_env *env, const uint32_t *slots, size_t n,
                                        dev_wait_cb done, void *arg, ka_err *e);
