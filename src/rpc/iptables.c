/* GetIPTables / SetIPTables: answered when the iptables-save / iptables-restore child has finished. */
#include "agent.pb-c.h"
#include "rpc.h"
#include "../guest/iptables.h"

static void ipt_call_cancel(struct ttrpc_call *c)
{
    ipt_cancel(c->data);
}

static void get_done(void *arg, const ka_err *err, const uint8_t *out, size_t len)
{
    struct ttrpc_call *c = arg;
    Grpc__GetIPTablesResponse resp = GRPC__GET_IPTABLES_RESPONSE__INIT;
    if (err) {
        ttrpc_reply_err(c, err);
        return;
    }
    resp.data.data = (uint8_t *)out;
    resp.data.len = len;
    ttrpc_reply(c, &resp.base);
}

static void set_done(void *arg, const ka_err *err, const uint8_t *out, size_t len)
{
    struct ttrpc_call *c = arg;
    Grpc__SetIPTablesResponse resp = GRPC__SET_IPTABLES_RESPONSE__INIT;
    if (err) {
        ttrpc_reply_err(c, err);
        return;
    }
    resp.data.data = (uint8_t *)out;
    resp.data.len = len;
    ttrpc_reply(c, &resp.base);
}

void rpc_get_iptables(struct ttrpc_call *c, void *req)
{
    const Grpc__GetIPTablesRequest *r = req;
    ka_err e;
    struct ipt_job *j = ipt_save_async(rpc_agent(c)->loop, r->is_ipv6, get_done, c, &e);
    if (!j) {
        ttrpc_reply_err(c, &e);
        return;
    }
    c->data = j;
    c->cancel = ipt_call_cancel;
}

void rpc_set_iptables(struct ttrpc_call *c, void *req)
{
    const Grpc__SetIPTablesRequest *r = req;
    ka_err e;
    if (!r->data.len) { /* iptables-restore would read nothing and change nothing */
        Grpc__SetIPTablesResponse resp = GRPC__SET_IPTABLES_RESPONSE__INIT;
        ttrpc_reply(c, &resp.base);
        return;
    }
    struct ipt_job *j =
        ipt_restore_async(rpc_agent(c)->loop, r->is_ipv6, r->data.data, r->data.len, set_done, c, &e);
    if (!j) {
        ttrpc_reply_err(c, &e);
        return;
    }
    c->data = j;
    c->cancel = ipt_call_cancel;
}
