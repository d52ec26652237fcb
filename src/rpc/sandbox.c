/* Sandbox RPCs: CreateSandbox and DestroySandbox (after which the agent stops, as upstream). */
#include "agent.pb-c.h"
#include "rpc.h"
#include "../runtime/sandbox.h"
#include "../util/log.h"

static void sandbox_cancel(struct ttrpc_call *c)
{
    sandbox_detach(&rpc_agent(c)->sb);
}

static void create_done(void *arg, const ka_err *err)
{
    struct ttrpc_call *c = arg;
    if (err)
        ttrpc_reply_err(c, err);
    else
        ttrpc_reply(c, NULL);
}

static void create_sandbox(struct ttrpc_call *c)
{
    ka_err e;
    if (sandbox_create(&rpc_agent(c)->sb, c->req, create_done, c, &e) < 0) {
        ttrpc_reply_err(c, &e);
        return;
    }
    if (!c->done)
        c->cancel = sandbox_cancel;
}

void rpc_create_sandbox(struct ttrpc_call *c, void *req)
{
    Grpc__CreateSandboxRequest *r = req;
    rpc_after_devices(c, r->storages, r->n_storages, NULL, 0, NULL, create_sandbox);
}

static void destroy_done(void *arg, const ka_err *err)
{
    struct ttrpc_call *c = arg;
    struct agent *a = rpc_agent(c);
    if (err) {
        ttrpc_reply_err(c, err);
        return;
    }
    ttrpc_reply(c, NULL);
    log_info("sandbox", "sandbox destroyed; the agent stops");
    agent_shutdown(a);
}

void rpc_destroy_sandbox(struct ttrpc_call *c, void *req)
{
    (void)req;
    ka_err e;
    if (sandbox_destroy(&rpc_agent(c)->sb, destroy_done, c, &e) < 0) {
        ttrpc_reply_err(c, &e);
        return;
    }
    if (!c->done)
        c->cancel = sandbox_cancel;
}
