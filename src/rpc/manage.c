/* Container management RPCs: UpdateContainer, StatsContainer, PauseContainer, ResumeContainer,
 * UpdateEphemeralMounts, RemoveStaleVirtiofsShareMounts. Thin: look up, call src/runtime/stats.c (pause and
 * resume: src/runtime/container.c), answer now or when the operation completes. */
#include "agent.pb-c.h"
#include "rpc.h"
#include "../runtime/container.h"
#include "../runtime/stats.h"

/* Upstream answers an unknown container with INVALID_ARGUMENT for these four (INTERNAL elsewhere). */
static struct container *find(struct ttrpc_call *c, const char *id)
{
    return rpc_find_container(c, id, KA_INVALID_ARGUMENT);
}

static void reply_rc(struct ttrpc_call *c, int rc, const ka_err *e)
{
    if (rc < 0)
        ttrpc_reply_err(c, e);
    else
        ttrpc_reply(c, NULL);
}

void rpc_update_container(struct ttrpc_call *c, void *req)
{
    const Grpc__UpdateContainerRequest *r = req;
    struct container *ctr = find(c, r->container_id);
    if (!ctr)
        return;
    if (!r->resources) { /* nothing to change (upstream) */
        ttrpc_reply(c, NULL);
        return;
    }
    ka_err e;
    reply_rc(c, ctr_update_resources(ctr, r->resources, &e), &e);
}

void rpc_stats_container(struct ttrpc_call *c, void *req)
{
    const Grpc__StatsContainerRequest *r = req;
    struct container *ctr = find(c, r->container_id);
    if (!ctr)
        return;
    struct ctr_stats *s = NULL;
    ka_err e;
    if (stats_collect(ctr, &s, &e) < 0) {
        ttrpc_reply_err(c, &e);
        return;
    }
    ttrpc_reply(c, &stats_reply(s)->base);
    stats_free(s);
}

/* ---- PauseContainer, ResumeContainer: answered when the freezer state is reached (src/runtime/container.c).
 * A cancelled call (disconnect, timeout_nano) leaves the container thawed: a pause is undone, a resume
 * stands. ---- */

static void freeze_done(void *arg, const ka_err *err)
{
    struct ttrpc_call *c = arg;
    reply_rc(c, err ? -1 : 0, err);
}

static void freeze_cancel(struct ttrpc_call *c)
{
    container_freeze_cancel(c->data);
}

static void freeze_started(struct ttrpc_call *c, int rc, struct ctr_freeze *op, const ka_err *e)
{
    if (rc < 0) {
        ttrpc_reply_err(c, e);
        return;
    }
    c->data = op;
    c->cancel = freeze_cancel;
}

void rpc_pause_container(struct ttrpc_call *c, void *req)
{
    const Grpc__PauseContainerRequest *r = req;
    struct container *ctr = find(c, r->container_id);
    if (!ctr)
        return;
    struct ctr_freeze *op = NULL;
    ka_err e;
    int rc = container_pause(ctr, freeze_done, c, &op, &e);
    freeze_started(c, rc, op, &e);
}

void rpc_resume_container(struct ttrpc_call *c, void *req)
{
    const Grpc__ResumeContainerRequest *r = req;
    struct container *ctr = find(c, r->container_id);
    if (!ctr)
        return;
    struct ctr_freeze *op = NULL;
    ka_err e;
    int rc = container_resume(ctr, freeze_done, c, &op, &e);
    freeze_started(c, rc, op, &e);
}

void rpc_update_ephemeral_mounts(struct ttrpc_call *c, void *req)
{
    const Grpc__UpdateEphemeralMountsRequest *r = req;
    ka_err e;
    int rc = mounts_update_ephemeral(&rpc_agent(c)->sb, r->storages, r->n_storages, &e);
    reply_rc(c, rc, &e);
}

/* ---- RemoveStaleVirtiofsShareMounts: answered when the child that stats the shares is done ---- */

static void scan_done(void *arg, const ka_err *err)
{
    struct ttrpc_call *c = arg;
    reply_rc(c, err ? -1 : 0, err);
}

static void scan_cancel(struct ttrpc_call *c)
{
    virtiofs_scan_detach(c->data);
}

void rpc_remove_stale_virtiofs_share_mounts(struct ttrpc_call *c, void *req)
{
    (void)req;
    struct virtiofs_scan *s = NULL;
    ka_err e;
    if (virtiofs_scan_start(rpc_agent(c)->loop, NULL, scan_done, c, &s, &e) < 0) {
        ttrpc_reply_err(c, &e);
        return;
    }
    c->data = s;
    c->cancel = scan_cancel;
}
