/* The agent's top-level state: configuration, event loop, ttrpc server and the sandbox-wide queues. */
#pragma once
#include <stdbool.h>

#include "../loop/loop.h"
#include "../runtime/oom_queue.h"
#include "../runtime/sandbox.h"
#include "../ttrpc/server.h"
#include "config.h"

struct listeners;
struct uevent_mon;
struct debug_console;
struct log_vport;
struct copyfile;

struct agent {
    struct agent_config cfg;
    struct loop *loop;
    struct ttrpc_server *srv;
    struct listeners *listeners;
    bool init_mode;         /* running as PID 1 */
    const char *sysfs_root; /* "/sys"; tests point it at a fake tree (--sysfs-root) */
    const char *dev_root;   /* "/dev"; where hot-plugged disks' nodes are (--dev-root for tests) */
    struct uevent_mon *uevents;
    const char *debug_console_addr; /* --debug-console-addr (tests); NULL: from agent.debug_console_vport */
    const char *console;            /* "/dev/console"; --console for tests */
    struct debug_console *debug_console;
    const char *log_addr;        /* --log-addr (tests): where agent.log_vport listens instead of vsock */
    struct log_vport *log_vport; /* agent.log_vport > 0: the log lines' way to the host */
    struct sandbox sb;           /* the sandbox and its containers */
    bool sb_ready;
    struct oom_queue oom;    /* OOM events waiting for GetOOMEvent */
    struct list oom_waiters; /* GetOOMEvent calls waiting for an event */
    struct copyfile *copy;   /* CopyFile transfers in progress (created on first use) */
    unsigned resizes;        /* ResizeVolume children running */
    int exit_status;
};

int agent_main(int argc, char **argv);
/* Stop serving: answer what is queued, then leave the event loop. */
void agent_shutdown(struct agent *a);
