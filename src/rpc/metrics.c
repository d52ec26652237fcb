/* GetMetrics: the Prometheus text of the agent process and the guest, rendered from /proc on each call. */
#include <stdlib.h>

#include "agent.pb-c.h"
#include "rpc.h"
#include "../guest/metrics.h"

void rpc_get_metrics(struct ttrpc_call *c, void *req)
{
    static uint64_t scrape_count; /* kata_agent_scrape_count: one registry per agent process, as upstream */
    Grpc__Metrics resp = GRPC__METRICS__INIT;
    char *text = NULL;
    size_t len;
    ka_err e;
    (void)req;
    if (metrics_render("/proc", ++scrape_count, &text, &len, &e) < 0) {
        ttrpc_reply_err(c, &e);
        return;
    }
    resp.metrics = text;
    ttrpc_reply(c, &resp.base);
    free(text);
}
