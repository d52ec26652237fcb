/* libFuzzer target: arbitrary bytes on a ttrpc connection of the real server with the real method tables
 * (frame reader, envelope and payload decoding of every method, dispatch, replies, cancellation).
 *
 * The agent's handlers act on the machine, so the fuzzer first moves into its own network, mount, UTS and
 * IPC namespaces (with a fresh /run) and enables only methods whose effects stay there or are read-only;
 * every other method is still decoded (payload decoding happens before the allowlist gate) and answered
 * "blocked". Never fuzz CreateSandbox (modprobe), SetGuestDateTime (the host clock), ResizeVolume or
 * DestroySandbox here. */
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/agent.h"
#include "rpc/rpc.h"
#include "guest/uevent.h"
#include "util/log.h"

static struct agent agent;

static char *allowed[] = {
    "GuestDetailsRequest",    "GetOOMEventRequest",     "ReadStreamRequest",
    "WriteStreamRequest",     "CloseStdinRequest",      "TtyWinResizeRequest",
    "WaitProcessRequest",     "SignalProcessRequest",   "StatsContainerRequest",
    "ListInterfacesRequest",  "ListRoutesRequest",      "UpdateInterfaceRequest",
    "UpdateRoutesRequest",    "AddARPNeighborsRequest", "GetMetricsRequest",
    "GetIPTablesRequest",     "VolumeStatsRequest",     "CopyFileRequest",
    "RemoveContainerRequest", "StartContainerRequest",  "PauseContainerRequest",
    "ResumeContainerRequest", "UpdateContainerRequest", "RemoveStaleVirtiofsShareMountsRequest",
    "AddSwapRequest",
};

static void isolate(void)
{
    if (unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC) < 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("fuzz-run", "/run", "tmpfs", 0, NULL) < 0)
        abort(); /* never fuzz the real machine */
}

static void setup(void)
{
    ka_err e;
    isolate();
    ka_log_level = KA_LOG_CRITICAL + 1; /* silent */
    config_init(&agent.cfg);
    agent.cfg.allowlist_enabled = true;
    agent.cfg.allowed = allowed;
    agent.cfg.n_allowed = sizeof(allowed) / sizeof(allowed[0]);
    oom_queue_init(&agent.oom);
    agent.sysfs_root = "/nonexistent-sysfs";
    agent.loop = loop_new(&e);
    agent.srv = agent.loop ? ttrpc_server_new(agent.loop, &e) : NULL;
    struct runtime_config rc = {
        .base_dir = "/run/kata-containers",
        .ns_dir = "/run/sandbox-ns",
        .cgroup_root = "/sys/fs/cgroup",
        .modprobe = "/nonexistent/modprobe",
        .resolv_conf = "/run/resolv.conf",
    };
    if (!agent.loop || loop_children_init(agent.loop, &e) < 0 ||
        sandbox_init(&agent.sb, agent.loop, &rc, &e) < 0)
        abort();
    agent.sb.oom = &agent.oom;
    agent.dev_root = "/nonexistent-dev"; /* AddSwap resolves and waits, but never finds a disk to swap on */
    agent.uevents = uevent_mon_new(agent.loop, agent.sysfs_root, agent.dev_root, &e);
    if (!agent.uevents)
        abort();
    if (!agent.srv || rpc_register(&agent, &e) < 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    int sv[2];
    ka_err e;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    if (ttrpc_server_serve_fd(agent.srv, sv[0], NULL, NULL, &e) < 0)
        abort();
    /* feed in slices so frames straddle reads; drain replies so the agent never blocks */
    size_t off = 0;
    char sink[65536];
    while (off < size) {
        size_t chunk = size - off > 4096 ? 4096 : size - off;
        ssize_t w = write(sv[1], data + off, chunk);
        if (w > 0)
            off += (size_t)w;
        loop_run_once(agent.loop, 0, &e);
        while (read(sv[1], sink, sizeof(sink)) > 0)
            ;
    }
    shutdown(sv[1], SHUT_WR);
    for (int i = 0; i < 4; i++) {
        loop_run_once(agent.loop, 0, &e);
        while (read(sv[1], sink, sizeof(sink)) > 0)
            ;
    }
    close(sv[1]);
    loop_run_once(agent.loop, 0, &e);
    return 0;
}
