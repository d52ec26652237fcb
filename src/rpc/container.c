/* Container RPCs: CreateContainer, StartContainer, RemoveContainer, ExecProcess, SignalProcess, WaitProcess.
 * Thin: look up, call the runtime, answer now or when the runtime's operation completes. */
#include <stdlib.h>

#include "agent.pb-c.h"
#include "rpc.h"
#include "../runtime/container.h"
#include "../util/cleanup.h"
#include "../util/log.h"

/* Upstream answers an unknown container with INTERNAL "Invalid container id" here (only Update/Stats/
 * Pause/Resume use INVALID_ARGUMENT); the code is kept for drop-in compatibility, the id is named. */
struct container *rpc_find_container(struct ttrpc_call *c, const char *id, int status)
{
    struct container *ctr = sandbox_find(&rpc_agent(c)->sb, id);
    if (!ctr)
        ttrpc_reply_status(c, status, "Invalid container id %s", id);
    return ctr;
}

struct process *rpc_find_process(struct ttrpc_call *c, const char *cid, const char *exec_id, int status)
{
    struct container *ctr = rpc_find_container(c, cid, status);
    if (!ctr)
        return NULL;
    ka_err e;
    struct process *p = container_find_process(ctr, exec_id, &e);
    if (!p)
        ttrpc_reply_status(c, status, "%s", e.msg);
    return p;
}

/* ---- asynchronous runtime operations ---- */

static void op_done(void *arg, const ka_err *err)
{
    struct ttrpc_call *c = arg;
    if (err)
        ttrpc_reply_err(c, err);
    else
        ttrpc_reply(c, NULL);
}

static void op_cancel(struct ttrpc_call *c)
{
    ctr_op_detach(c->data);
}

/* After a runtime call that may already have answered (synchronously) or will answer later. */
static void op_started(struct ttrpc_call *c, int rc, struct ctr_op *op, const ka_err *e)
{
    if (rc < 0) {
        ttrpc_reply_err(c, e);
        return;
    }
    if (c->done)
        return;
    c->data = op;
    c->cancel = op_cancel;
}

static void create_container(struct ttrpc_call *c)
{
    const Grpc__CreateContainerRequest *r = c->req;
    struct ctr_op *op = NULL;
    ka_err e;
    int rc = container_create(&rpc_agent(c)->sb, r, op_done, c, &op, &e);
    op_started(c, rc, op, &e);
}

void rpc_create_container(struct ttrpc_call *c, void *req)
{
    Grpc__CreateContainerRequest *r = req;
    rpc_after_devices(c, r->storages, r->n_storages, r->devices, r->n_devices, r->oci, create_container);
}

void rpc_start_container(struct ttrpc_call *c, void *req)
{
    const Grpc__StartContainerRequest *r = req;
    struct container *ctr = rpc_find_container(c, r->container_id, KA_INTERNAL);
    if (!ctr)
        return;
    struct ctr_op *op = NULL;
    ka_err e;
    int rc = container_start(ctr, op_done, c, &op, &e);
    op_started(c, rc, op, &e);
}

void rpc_remove_container(struct ttrpc_call *c, void *req)
{
    const Grpc__RemoveContainerRequest *r = req;
    struct container *ctr = rpc_find_container(c, r->container_id, KA_INTERNAL);
    if (!ctr)
        return;
    struct ctr_op *op = NULL;
    ka_err e;
    int rc = container_remove(ctr, r->timeout, op_done, c, &op, &e);
    op_started(c, rc, op, &e);
}

void rpc_exec_process(struct ttrpc_call *c, void *req)
{
    const Grpc__ExecProcessRequest *r = req;
    struct container *ctr = rpc_find_container(c, r->container_id, KA_INTERNAL);
    if (!ctr)
        return;
    struct ctr_op *op = NULL;
    ka_err e;
    int rc = container_exec(ctr, r, op_done, c, &op, &e);
    op_started(c, rc, op, &e);
}

/* ---- SignalProcess: exec_id "" signals every process, with the cgroup frozen meanwhile; answered when the
 * whole sequence is over. A cancelled call finishes it at once (every process signalled, thawed again unless
 * the container was paused). ---- */

static void signal_cancel(struct ttrpc_call *c)
{
    container_freeze_cancel(c->data);
}

void rpc_signal_process(struct ttrpc_call *c, void *req)
{
    const Grpc__SignalProcessRequest *r = req;
    struct container *ctr = rpc_find_container(c, r->container_id, KA_INTERNAL);
    if (!ctr)
        return;
    ka_err e;
    struct ctr_freeze *op = NULL;
    int rc = r->exec_id[0] ? container_signal(ctr, r->exec_id, r->signal, &e)
                           : container_signal_all(ctr, r->signal, op_done, c, &op, &e);
    if (rc < 0) {
        ttrpc_reply_err(c, &e);
    } else if (!op) {
        ttrpc_reply(c, NULL);
    } else {
        c->data = op;
        c->cancel = signal_cancel;
    }
}

/* ---- WaitProcess: a long-poll answered when the process exits ---- */

struct waiter {
    struct exit_waiter w;
    struct ttrpc_call *call;
    struct process *p;
};

static void wait_cancel(struct ttrpc_call *c)
{
    struct waiter *w = c->data;
    process_unwait_exit(&w->w);
    free(w);
}

static void reply_status(struct ttrpc_call *c, int code)
{
    Grpc__WaitProcessResponse resp = GRPC__WAIT_PROCESS_RESPONSE__INIT;
    resp.status = code;
    ttrpc_reply(c, &resp.base);
}

static void on_exit_code(struct exit_waiter *ew, int code)
{
    struct waiter *w = container_of(ew, struct waiter, w);
    struct ttrpc_call *c = w->call;
    struct process *p = w->p;
    free(w);
    if (code < 0) {
        ttrpc_reply_status(c, KA_INTERNAL, "the process was removed before it was waited for");
        return;
    }
    reply_status(c, code);
    container_forget_after_wait(p); /* as upstream: a waited exec'd process is gone */
}

void rpc_wait_process(struct ttrpc_call *c, void *req)
{
    const Grpc__WaitProcessRequest *r = req;
    struct process *p = rpc_find_process(c, r->container_id, r->exec_id, KA_INTERNAL);
    if (!p)
        return;
    if (p->exited) {
        reply_status(c, p->exit_code);
        container_forget_after_wait(p);
        return;
    }
    struct waiter *w = calloc(1, sizeof(*w));
    if (!w) {
        ttrpc_reply_status(c, KA_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    w->call = c;
    w->p = p;
    w->w.exited = on_exit_code;
    c->data = w;
    c->cancel = wait_cancel;
    process_wait_exit(p, &w->w);
}
