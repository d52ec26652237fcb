/* libFuzzer target: arbitrary bytes on a ttrpc connection of the real server with the real method tables
 * (frame reader, envelope and payload decoding of every method, dispatch, replies, cancellation). */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/agent.h"
#include "rpc/rpc.h"
#include "util/log.h"

static struct agent agent;

static void setup(void)
{
    ka_err e;
    ka_log_level = KA_LOG_CRITICAL + 1; /* silent */
    config_init(&agent.cfg);
    oom_queue_init(&agent.oom);
    agent.sysfs_root = "/nonexistent-sysfs";
    agent.loop = loop_new(&e);
    agent.srv = agent.loop ? ttrpc_server_new(agent.loop, &e) : NULL;
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
