/* Guest control RPCs: GetGuestDetails, OnlineCPUMem, MemHotplugByProbe, ReseedRandomDev, SetGuestDateTime. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.pb-c.h"
#include "rpc.h"
#include "../guest/sysctl_guest.h"
#include "../util/cleanup.h"

/* Storage drivers src/guest/storage.c handles (others answer UNIMPLEMENTED): upstream's list, then "bind";
 * device_handlers stays empty, as upstream reports it. */
static char *const storage_handlers[] = {"blk",     "9p",    "virtio-fs", "ephemeral", "overlayfs",
                                         "mmioblk", "local", "scsi",      "nvdimm",    "watchable-bind",
                                         "bind"};

/* block_size_bytes holds hex without 0x ("8000000"); missing file = 0 as upstream. */
static int read_block_size(const char *sysfs, uint64_t *out, ka_err *e)
{
    char path[512], buf[64];
    snprintf(path, sizeof(path), "%s/devices/system/memory/block_size_bytes", sysfs);
    *out = 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? 0 : ka_fail_errno(e, errno, "open %s", path);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *s = buf;
    while (*s == ' ' || *s == '\t' || *s == '\n')
        s++;
    char *end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\t'))
        *--end = '\0';
    if (!*s)
        return ka_fail(e, KA_INTERNAL, "Invalid block size: %s is empty", path);
    char *stop;
    errno = 0;
    unsigned long long v = strtoull(s, &stop, 16);
    if (errno || *stop || s[0] == '-' || s[0] == '+')
        return ka_fail(e, KA_INTERNAL, "Invalid block size '%s' in %s", s, path);
    *out = v;
    return 0;
}

static int probe_supported(const char *sysfs, protobuf_c_boolean *out, ka_err *e)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/devices/system/memory/probe", sysfs);
    *out = false;
    if (stat(path, &st) == 0) {
        *out = true;
        return 0;
    }
    return errno == ENOENT ? 0 : ka_fail_errno(e, errno, "stat %s", path);
}

void rpc_get_guest_details(struct ttrpc_call *c, void *req)
{
    const Grpc__GuestDetailsRequest *r = req;
    struct agent *a = rpc_agent(c);
    Grpc__GuestDetailsResponse resp = GRPC__GUEST_DETAILS_RESPONSE__INIT;
    Grpc__AgentDetails details = GRPC__AGENT_DETAILS__INIT;
    ka_err e;

    if (r->mem_block_size && read_block_size(a->sysfs_root, &resp.mem_block_size_bytes, &e) < 0) {
        ttrpc_reply_err(c, &e);
        return;
    }
    if (r->mem_hotplug_probe && probe_supported(a->sysfs_root, &resp.support_mem_hotplug_probe, &e) < 0) {
        ttrpc_reply_err(c, &e);
        return;
    }
    /* Only what this agent really handles is reported; the lists grow as handlers land. */
    details.version = KA_VERSION;
    details.init_daemon = a->init_mode;
    details.n_device_handlers = 0;
    details.n_storage_handlers = ARRAY_SIZE(storage_handlers);
    details.storage_handlers = (char **)storage_handlers;
    /* seccomp is built in; the kernel must have it too (PR_GET_SECCOMP fails with EINVAL without it) */
    details.supports_seccomp = prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
    resp.agent_details = &details;
    ttrpc_reply(c, &resp.base);
}

/* ---- asynchronous guest jobs: answered from the loop ---- */

static void empty_done(void *arg, const ka_err *err)
{
    struct ttrpc_call *c = arg;
    if (err)
        ttrpc_reply_err(c, err);
    else
        ttrpc_reply(c, NULL);
}

static void online_cancel(struct ttrpc_call *c)
{
    guest_online_cancel(c->data);
}

/* `wait` is ignored as upstream: the reply always comes once everything is online. */
void rpc_online_cpu_mem(struct ttrpc_call *c, void *req)
{
    const Grpc__OnlineCPUMemRequest *r = req;
    struct agent *a = rpc_agent(c);
    ka_err e;
    struct guest_online *o =
        guest_online_async(a->loop, a->sysfs_root, &a->sb, r->nb_cpus, r->cpu_only, empty_done, c, &e);
    if (!o) {
        ttrpc_reply_err(c, &e);
        return;
    }
    c->data = o;
    c->cancel = online_cancel;
}

static void probe_cancel(struct ttrpc_call *c)
{
    guest_probe_cancel(c->data);
}

void rpc_mem_hotplug_by_probe(struct ttrpc_call *c, void *req)
{
    const Grpc__MemHotplugByProbeRequest *r = req;
    struct agent *a = rpc_agent(c);
    ka_err e;
    struct guest_probe *p = guest_probe_async(a->loop, a->sysfs_root, r->memhotplugprobeaddr,
                                              r->n_memhotplugprobeaddr, empty_done, c, &e);
    if (!p) {
        ttrpc_reply_err(c, &e);
        return;
    }
    c->data = p;
    c->cancel = probe_cancel;
}

/* ---- synchronous ---- */

void rpc_reseed_random_dev(struct ttrpc_call *c, void *req)
{
    const Grpc__ReseedRandomDevRequest *r = req;
    ka_err e;
    if (guest_reseed_random("/dev/random", r->data.data, r->data.len, &e) < 0)
        ttrpc_reply_err(c, &e);
    else
        ttrpc_reply(c, NULL);
}

void rpc_set_guest_date_time(struct ttrpc_call *c, void *req)
{
    const Grpc__SetGuestDateTimeRequest *r = req;
    ka_err e;
    if (guest_set_time(r->sec, r->usec, &e) < 0)
        ttrpc_reply_err(c, &e);
    else
        ttrpc_reply(c, NULL);
}
