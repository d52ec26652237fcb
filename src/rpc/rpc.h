/* The RPC layer: one file per family of methods, each handler thin (decode → call → encode).
 * agent_service.c builds the grpc.AgentService and grpc.Health method tables from the protobuf-c service
 * descriptors and routes each method to the handler named in its table (UNIMPLEMENTED when none yet). */
#pragma once
#include "../agent/agent.h"
#include "../ttrpc/server.h"

/* Register grpc.AgentService and grpc.Health on the agent's server. */
int rpc_register(struct agent *a, ka_err *e);

static inline struct agent *rpc_agent(const struct ttrpc_call *c)
{
    return c->service->ctx;
}

/* health.c */
void rpc_health_check(struct ttrpc_call *c, void *req);
void rpc_health_version(struct ttrpc_call *c, void *req);
/* guest.c */
void rpc_get_guest_details(struct ttrpc_call *c, void *req);
/* oom.c */
void rpc_get_oom_event(struct ttrpc_call *c, void *req);
void rpc_oom_init(struct agent *a);
