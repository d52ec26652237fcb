/* The RPC layer: one file per family of methods, each handler thin (decode → call → encode).
 * agent_service.c builds the grpc.AgentService and grpc.Health method tables from the protobuf-c service
 * descriptors and routes each method to the handler named in its table (UNIMPLEMENTED when none yet). */
#pragma once
#include "agent.pb-c.h"
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
/* devices.c */
/* Run next(c) once the disks and devices the request names are there (now, or later from the loop), with
 * the request rewritten to the guest's paths and numbers; on failure the call is answered instead. */
void rpc_after_devices(struct ttrpc_call *c, Grpc__Storage **storages, size_t n_storages,
                       Grpc__Device **devices, size_t n_devices, Grpc__Spec *spec,
                       void (*next)(struct ttrpc_call *c));
void rpc_add_swap(struct ttrpc_call *c, void *req);
/* container.c */
struct container;
struct process;
/* Look up for a handler; on failure the call is answered with status and NULL returned. */
struct container *rpc_find_container(struct ttrpc_call *c, const char *id, int status);
struct process *rpc_find_process(struct ttrpc_call *c, const char *cid, const char *exec_id, int status);
void rpc_create_container(struct ttrpc_call *c, void *req);
void rpc_start_container(struct ttrpc_call *c, void *req);
void rpc_remove_container(struct ttrpc_call *c, void *req);
void rpc_exec_process(struct ttrpc_call *c, void *req);
void rpc_signal_process(struct ttrpc_call *c, void *req);
void rpc_wait_process(struct ttrpc_call *c, void *req);
/* stdio.c */
void rpc_read_stdout(struct ttrpc_call *c, void *req);
void rpc_read_stderr(struct ttrpc_call *c, void *req);
void rpc_write_stdin(struct ttrpc_call *c, void *req);
void rpc_close_stdin(struct ttrpc_call *c, void *req);
void rpc_tty_win_resize(struct ttrpc_call *c, void *req);
/* sandbox.c */
void rpc_create_sandbox(struct ttrpc_call *c, void *req);
void rpc_destroy_sandbox(struct ttrpc_call *c, void *req);
/* network.c (issue #4: netlink) — declarations added by that work */
void rpc_update_interface(struct ttrpc_call *c, void *req);
void rpc_list_interfaces(struct ttrpc_call *c, void *req);
void rpc_update_routes(struct ttrpc_call *c, void *req);
void rpc_list_routes(struct ttrpc_call *c, void *req);
void rpc_add_arp_neighbors(struct ttrpc_call *c, void *req);
/* guest.c, iptables.c, metrics.c (issue #4: guest control, iptables, metrics) */
void rpc_online_cpu_mem(struct ttrpc_call *c, void *req);
void rpc_mem_hotplug_by_probe(struct ttrpc_call *c, void *req);
void rpc_reseed_random_dev(struct ttrpc_call *c, void *req);
void rpc_set_guest_date_time(struct ttrpc_call *c, void *req);
void rpc_get_iptables(struct ttrpc_call *c, void *req);
void rpc_set_iptables(struct ttrpc_call *c, void *req);
void rpc_get_metrics(struct ttrpc_call *c, void *req);
/* files.c (issue #4: CopyFile, volumes) */
void rpc_copy_file(struct ttrpc_call *c, void *req);
void rpc_get_volume_stats(struct ttrpc_call *c, void *req);
void rpc_resize_volume(struct ttrpc_call *c, void *req);
/* Drop CopyFile transfers in progress (their temp files); call before the loop is freed. */
void rpc_files_fini(struct agent *a);
/* manage.c (issue #5: stats, updates, pause/resume, ephemeral mounts) */
void rpc_update_container(struct ttrpc_call *c, void *req);
void rpc_stats_container(struct ttrpc_call *c, void *req);
void rpc_pause_container(struct ttrpc_call *c, void *req);
void rpc_resume_container(struct ttrpc_call *c, void *req);
void rpc_update_ephemeral_mounts(struct ttrpc_call *c, void *req);
void rpc_remove_stale_virtiofs_share_mounts(struct ttrpc_call *c, void *req);
/* oom.c */
void rpc_get_oom_event(struct ttrpc_call *c, void *req);
void rpc_oom_init(struct agent *a);
