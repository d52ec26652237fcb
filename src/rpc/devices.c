/* AddSwap, and the device step that runs before CreateSandbox and CreateContainer reach the runtime. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/swap.h>

#include "agent.pb-c.h"
#include "rpc.h"
#include "../guest/devices.h"
#include "../util/log.h"

static struct dev_env dev_env(const struct ttrpc_call *c)
{
    const struct agent *a = rpc_agent(c);
    return (struct dev_env){a->uevents, a->sysfs_root, a->cfg.hotplug_timeout_ms};
}

/* ---- the device step ---- */

struct after_devices {
    struct dev_prep *prep;
    void (*next)(struct ttrpc_call *c);
};

static void devices_cancel(struct ttrpc_call *c)
{
    struct after_devices *ad = c->data;
    devices_prepare_cancel(ad->prep);
    free(ad);
    c->data = NULL;
}

static void devices_ready(void *arg, const ka_err *err)
{
    struct ttrpc_call *c = arg;
    struct after_devices *ad = c->data;
    void (*next)(struct ttrpc_call *) = ad->next;
    free(ad);
    c->data = NULL;
    c->cancel = NULL;
    if (err)
        ttrpc_reply_err(c, err);
    else
        next(c);
}

void rpc_after_devices(struct ttrpc_call *c, Grpc__Storage **storages, size_t n_storages,
                       Grpc__Device **devices, size_t n_devices, Grpc__Spec *spec,
                       void (*next)(struct ttrpc_call *c))
{
    struct dev_env env = dev_env(c);
    struct after_devices *ad = calloc(1, sizeof(*ad));
    ka_err e;
    if (!ad) {
        ttrpc_reply_status(c, KA_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    ad->next = next;
    c->data = ad;
    int rc = devices_prepare(&env, storages, n_storages, devices, n_devices, spec, devices_ready, c,
                             &ad->prep, &e);
    if (rc == 1) {
        c->cancel = devices_cancel;
        return;
    }
    free(ad);
    c->data = NULL;
    if (rc < 0)
        ttrpc_reply_err(c, &e);
    else
        next(c);
}

/* ---- AddSwap ---- */

static void swap_cancel(struct ttrpc_call *c)
{
    dev_wait_cancel(c->data);
    c->data = NULL;
}

static void swap_found(void *arg, const char *path, const ka_err *err)
{
    struct ttrpc_call *c = arg;
    c->data = NULL;
    c->cancel = NULL;
    if (err) {
        ttrpc_reply_err(c, err);
        return;
    }
    if (swapon(path, 0) < 0) {
        ttrpc_reply_status(c, KA_INTERNAL, "swapon %s: %s", path, strerror(errno));
        return;
    }
    log_info("device", "swap on %s", path);
    ttrpc_reply(c, NULL);
}

void rpc_add_swap(struct ttrpc_call *c, void *req)
{
    const Grpc__AddSwapRequest *r = req;
    struct dev_env env = dev_env(c);
    ka_err e;
    struct dev_wait *w = devices_wait_pci_slots(&env, r->pcipath, r->n_pcipath, swap_found, c, &e);
    if (!w) {
        ttrpc_reply_err(c, &e);
        return;
    }
    c->data = w;
    c->cancel = swap_cancel;
}
