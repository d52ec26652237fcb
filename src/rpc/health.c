/* grpc.Health: Check (always SERVING, never blocked by the allowlist) and Version. */
#include "health.pb-c.h"
#include "rpc.h"

void rpc_health_check(struct ttrpc_call *c, void *req)
{
    (void)req;
    Grpc__HealthCheckResponse resp = GRPC__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    ttrpc_reply(c, &resp.base);
}

void rpc_health_version(struct ttrpc_call *c, void *req)
{
    (void)req;
    Grpc__VersionCheckResponse resp = GRPC__VERSION_CHECK_RESPONSE__INIT;
    resp.grpc_version = KA_API_VERSION;
    resp.agent_version = KA_VERSION;
    ttrpc_reply(c, &resp.base);
}
