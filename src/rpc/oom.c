/* GetOOMEvent: a long-poll answered with the next container id from the sandbox OOM queue. A waiting
 * call that is cancelled (disconnect, timeout_nano) takes nothing from the queue. */
#include <stdlib.h>

#include "agent.pb-c.h"
#include "rpc.h"
#include "../util/cleanup.h"

struct oom_waiter {
    struct list link;
    struct ttrpc_call *call;
};

static void reply_event(struct ttrpc_call *c, char *cid)
{
    Grpc__OOMEvent ev = GRPC__OOMEVENT__INIT;
    ev.container_id = cid;
    ttrpc_reply(c, &ev.base);
    free(cid);
}

static void waiter_cancel(struct ttrpc_call *c)
{
    struct oom_waiter *w = c->data;
    list_del(&w->link);
    free(w);
}

/* Hand queued events to waiting calls, oldest first on both sides. */
static void oom_ready(void *arg)
{
    struct agent *a = arg;
    while (!list_empty(&a->oom_waiters) && a->oom.n) {
        struct oom_waiter *w = container_of(a->oom_waiters.next, struct oom_waiter, link);
        struct ttrpc_call *c = w->call;
        waiter_cancel(c);
        reply_event(c, oom_queue_pop(&a->oom));
    }
}

void rpc_oom_init(struct agent *a)
{
    list_init(&a->oom_waiters);
    a->oom.ready = oom_ready;
    a->oom.arg = a;
}

void rpc_get_oom_event(struct ttrpc_call *c, void *req)
{
    (void)req;
    struct agent *a = rpc_agent(c);
    char *cid = oom_queue_pop(&a->oom);
    if (cid) {
        reply_event(c, cid);
        return;
    }
    struct oom_waiter *w = malloc(sizeof(*w));
    if (!w) {
        ttrpc_reply_status(c, KA_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    w->call = c;
    list_add_tail(&a->oom_waiters, &w->link);
    c->data = w;
    c->cancel = waiter_cancel;
}
