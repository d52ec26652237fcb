/* Method tables of grpc.AgentService and grpc.Health, built from the protobuf-c service descriptors, the
 * endpoint allowlist gate, and the answer for methods not implemented yet. */
#include <stdlib.h>
#include <string.h>

#include "agent.pb-c.h"
#include "health.pb-c.h"
#include "rpc.h"
#include "../util/cleanup.h"
#include "../util/log.h"

/* Implemented methods. Everything else in agent.proto answers UNIMPLEMENTED. */
static const struct {
    const char *name;
    ttrpc_handler handler;
} agent_impl[] = {
    {"GetGuestDetails", rpc_get_guest_details},
    {"GetOOMEvent", rpc_get_oom_event},
    {"CreateSandbox", rpc_create_sandbox},
    {"DestroySandbox", rpc_destroy_sandbox},
    {"CreateContainer", rpc_create_container},
    {"StartContainer", rpc_start_container},
    {"RemoveContainer", rpc_remove_container},
    {"ExecProcess", rpc_exec_process},
    {"SignalProcess", rpc_signal_process},
    {"WaitProcess", rpc_wait_process},
    {"ReadStdout", rpc_read_stdout},
    {"ReadStderr", rpc_read_stderr},
    {"WriteStdin", rpc_write_stdin},
    {"CloseStdin", rpc_close_stdin},
    {"TtyWinResize", rpc_tty_win_resize},
    /* network.c (issue #4) */
    {"UpdateInterface", rpc_update_interface},
    {"ListInterfaces", rpc_list_interfaces},
    {"UpdateRoutes", rpc_update_routes},
    {"ListRoutes", rpc_list_routes},
    {"AddARPNeighbors", rpc_add_arp_neighbors},
    /* guest.c, iptables.c, metrics.c (issue #4) */
    {"OnlineCPUMem", rpc_online_cpu_mem},
    {"MemHotplugByProbe", rpc_mem_hotplug_by_probe},
    {"ReseedRandomDev", rpc_reseed_random_dev},
    {"SetGuestDateTime", rpc_set_guest_date_time},
    {"GetIPTables", rpc_get_iptables},
    {"SetIPTables", rpc_set_iptables},
    {"GetMetrics", rpc_get_metrics},
    /* files.c (issue #4) */
    {"CopyFile", rpc_copy_file},
    {"GetVolumeStats", rpc_get_volume_stats},
    {"ResizeVolume", rpc_resize_volume},
    /* manage.c (issue #5) */
    {"UpdateContainer", rpc_update_container},
    {"StatsContainer", rpc_stats_container},
    {"PauseContainer", rpc_pause_container},
    {"ResumeContainer", rpc_resume_container},
    {"UpdateEphemeralMounts", rpc_update_ephemeral_mounts},
    {"RemoveStaleVirtiofsShareMounts", rpc_remove_stale_virtiofs_share_mounts},
    /* devices.c */
    {"AddSwap", rpc_add_swap},
};

static const struct {
    const char *name;
    ttrpc_handler handler;
} health_impl[] = {
    {"Check", rpc_health_check},
    {"Version", rpc_health_version},
};

static void rpc_unimplemented(struct ttrpc_call *c, void *req)
{
    (void)req;
    ttrpc_reply_status(c, KA_UNIMPLEMENTED, "%s is not implemented", c->method->name);
}

/* Upstream order: the allowlist is checked before anything else; blocked methods answer UNIMPLEMENTED
 * "<RequestName> is blocked". Names are request message names (ReadStdout and ReadStderr share one). */
static bool agent_admit(struct ttrpc_call *c)
{
    const struct agent *a = rpc_agent(c);
    const char *name = c->method->input->short_name;
    if (config_endpoint_allowed(&a->cfg, name))
        return true;
    ttrpc_reply_status(c, KA_UNIMPLEMENTED, "%s is blocked", name);
    return false;
}

static int cmp_method(const void *a, const void *b)
{
    return strcmp(((const struct ttrpc_method *)a)->name, ((const struct ttrpc_method *)b)->name);
}

#define MAX_METHODS 64

static struct ttrpc_method agent_methods[MAX_METHODS];
static struct ttrpc_method health_methods[MAX_METHODS];
static struct ttrpc_service agent_service = {.name = "grpc.AgentService", .admit = agent_admit};
static struct ttrpc_service health_service = {.name = "grpc.Health"};

static int build_service(struct ttrpc_service *svc, struct ttrpc_method *methods,
                         const ProtobufCServiceDescriptor *desc, const char *const *impl_names,
                         const ttrpc_handler *impl_handlers, size_t n_impl, ka_err *e)
{
    if (desc->n_methods > MAX_METHODS)
        return ka_fail(e, KA_INTERNAL, "%s has too many methods", desc->name);
    for (unsigned i = 0; i < desc->n_methods; i++) {
        methods[i].name = desc->methods[i].name;
        methods[i].input = desc->methods[i].input;
        methods[i].handler = rpc_unimplemented;
        for (size_t j = 0; j < n_impl; j++)
            if (strcmp(impl_names[j], desc->methods[i].name) == 0)
                methods[i].handler = impl_handlers[j];
    }
    qsort(methods, desc->n_methods, sizeof(methods[0]), cmp_method);
    svc->methods = methods;
    svc->n_methods = desc->n_methods;
    return 0;
}

int rpc_register(struct agent *a, ka_err *e)
{
    const char *names[MAX_METHODS];
    ttrpc_handler handlers[MAX_METHODS];

    for (size_t i = 0; i < ARRAY_SIZE(agent_impl); i++) {
        names[i] = agent_impl[i].name;
        handlers[i] = agent_impl[i].handler;
    }
    if (build_service(&agent_service, agent_methods, &grpc__agent_service__descriptor, names, handlers,
                      ARRAY_SIZE(agent_impl), e) < 0)
        return -1;
    for (size_t i = 0; i < ARRAY_SIZE(health_impl); i++) {
        names[i] = health_impl[i].name;
        handlers[i] = health_impl[i].handler;
    }
    if (build_service(&health_service, health_methods, &grpc__health__descriptor, names, handlers,
                      ARRAY_SIZE(health_impl), e) < 0)
        return -1;
    agent_service.ctx = a;
    health_service.ctx = a;
    rpc_oom_init(a);
    if (ttrpc_server_add_service(a->srv, &agent_service, e) < 0 ||
        ttrpc_server_add_service(a->srv, &health_service, e) < 0)
        return -1;
    return 0;
}
