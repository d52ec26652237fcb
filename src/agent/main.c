/* Agent startup: command-line flags, configuration, logging, signals, listeners, and the event loop. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "debug_console.h"
#include "init.h"
#include "listen.h"
#include "log_vport.h"
#include "../rpc/rpc.h"
#include "../guest/uevent.h"
#include "../ttrpc/frame.h"
#include "../util/cleanup.h"
#include "../util/log.h"

/* How long the loop keeps polling after a burst of events before it sleeps. The runtime's calls come in
 * quick sequences (create, start, wait, read); catching the next one awake halves its round trip, and an
 * idle agent spends nothing. */
#define BUSY_POLL_US 50

/* agent.debug_console: on vsock port agent.debug_console_vport, or on the console when it is 0. A console
 * that cannot start is logged; the agent serves on (upstream only logs the task's error too). */
static void start_debug_console(struct agent *a)
{
    char vsock[64];
    const char *addr = a->debug_console_addr;
    ka_err e;
    if (!a->cfg.debug_console)
        return;
    if (!addr && a->cfg.debug_console_vport > 0) {
        snprintf(vsock, sizeof(vsock), "vsock://-1:%d", (int)a->cfg.debug_console_vport);
        addr = vsock;
    }
    a->debug_console = debug_console_start(a->loop, addr, a->console, &e);
    if (!a->debug_console)
        log_error("debug_console", "%s", e.msg);
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: kata-agent [options]\n"
        "  -c, --config FILE       TOML configuration (replaces agent.* kernel options)\n"
        "      --server-addr ADDR  vsock://-1:1024 (default), unix:///path, unix://@name, serial:///dev/...\n"
        "      --log-level LEVEL   trace, debug, info, warn, error or critical\n"
        "      --cmdline FILE      read kernel options from FILE instead of /proc/cmdline (tests)\n"
        "      --sysfs-root DIR    read and write sysfs under DIR instead of /sys (tests)\n"
        "      --dev-root DIR      find hot-plugged disks' nodes under DIR instead of /dev (tests)\n"
        "      --log-addr ADDR     agent.log_vport listens on ADDR instead of vsock://-1:<port> (tests)\n"
        "      --debug-console-addr ADDR  debug console address instead of vsock://-1:<vport> (tests)\n"
        "      --console PATH      debug console device instead of /dev/console (tests)\n"
        "  -v, --version           print the version and exit\n"
        "  -h, --help              this text\n");
}

static char *read_small_file(const char *path, ka_err *e)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        ka_fail_errno(e, errno, "open %s", path);
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while (mem && (n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + n > 1024 * 1024) { /* a kernel command line is a few KiB */
            fclose(f);
            fclose(mem);
            free(buf);
            ka_fail(e, KA_INVALID_ARGUMENT, "%s is too large", path);
            return NULL;
        }
        fwrite(chunk, 1, n, mem);
    }
    fclose(f);
    if (!mem) {
        ka_fail_errno(e, ENOMEM, "read %s", path);
        return NULL;
    }
    fclose(mem);
    return buf;
}

static void destroyed(void *arg, const ka_err *err)
{
    struct agent *a = arg;
    if (err)
        log_warn("sandbox", "%s", err->msg);
    agent_shutdown(a);
}

static void on_sigterm(const struct signalfd_siginfo *si, void *data)
{
    struct agent *a = data;
    ka_err e;
    log_info("signals", "received signal %u, shutting down", si->ssi_signo);
    /* leave nothing behind: containers are removed first */
    if (a->sb.n_containers == 0 || sandbox_destroy(&a->sb, destroyed, a, &e) < 0)
        agent_shutdown(a);
}

/* "/" is the initramfs (rootfs) when the first mountinfo entry for "/" has fstype rootfs: pivot_root is
 * impossible there, containers use MS_MOVE + chroot. */
static bool root_is_initramfs(void)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return false;
    char line[4096];
    bool initramfs = false;
    while (fgets(line, sizeof(line), f)) {
        char mnt[1024], fstype[64];
        const char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*s %*s %*s %*s %1023s", mnt) != 1 ||
            sscanf(dash + 3, "%63s", fstype) != 1)
            continue;
        if (strcmp(mnt, "/") == 0) {
            initramfs = strcmp(fstype, "rootfs") == 0;
            break;
        }
    }
    fclose(f);
    return initramfs;
}

static void drained(void *arg)
{
    struct agent *a = arg;
    loop_stop(a->loop);
}

void agent_shutdown(struct agent *a)
{
    ttrpc_server_drain(a->srv, drained, a);
}

static void announce(const struct agent *a)
{
    struct ka_logrec r;
    if (!ka_log_begin(&r, KA_LOG_INFO, "root", "announce"))
        return;
    ka_log_str(&r, "agent-version", KA_VERSION);
    ka_log_str(&r, "api-version", KA_API_VERSION);
    ka_log_int(&r, "init-mode", a->init_mode);
    cleanup_free char *cfg = config_to_json(&a->cfg);
    ka_log_str(&r, "config", cfg ? cfg : "");
    ka_log_end(&r);
}

static int setup(struct agent *a, const struct config_sources *src, ka_err *e)
{
    if (config_load(&a->cfg, src, e) < 0)
        return -1;
    ka_log_level = a->cfg.log_level;
    if (a->cfg.log_vport > 0) /* from here on, lines wait in memory for the host's log reader */
        a->log_vport = log_vport_new(a->cfg.log_vport, a->log_addr);
    announce(a);
    if (a->init_mode && init_setup(a->cfg.unified_cgroup_hierarchy, e) < 0)
        return ka_wrap(e, "init");

    /* protobuf-c decodes every request payload (1 MiB CopyFile chunks, WriteStdin data) into a fresh
     * malloc'd buffer: above glibc's mmap threshold or past its trim threshold that is new memory, whose page
     * faults cost ten times the copy, on every request. Keep frame-sized buffers on the heap. */
    mallopt(M_MMAP_THRESHOLD, TTRPC_MAX_DATA + (1 << 20));
    mallopt(M_TRIM_THRESHOLD, 4 * TTRPC_MAX_DATA);
    if (!a->init_mode && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
        return ka_fail_errno(e, errno, "PR_SET_CHILD_SUBREAPER");
    signal(SIGPIPE, SIG_IGN);

    a->loop = loop_new(e);
    if (!a->loop)
        return -1;
    loop_set_busy_poll(a->loop, BUSY_POLL_US);
    log_vport_listen(a->log_vport, a->loop);
    if (loop_children_init(a->loop, e) < 0)
        return -1;
    if (!a->init_mode) { /* as PID 1 the agent ends only with DestroySandbox */
        if (loop_signal(a->loop, SIGTERM, on_sigterm, a, e) < 0 ||
            loop_signal(a->loop, SIGINT, on_sigterm, a, e) < 0)
            return -1;
    }
    struct runtime_config rc = {
        .base_dir = "/run/kata-containers",
        .ns_dir = "/run/sandbox-ns",
        .cgroup_root = "/sys/fs/cgroup",
        .modprobe = "/sbin/modprobe",
        .resolv_conf = "/etc/resolv.conf",
        .unified_cgroup = a->cfg.unified_cgroup_hierarchy,
        .pipe_size = (long)a->cfg.container_pipe_size,
        .no_pivot = root_is_initramfs(),
        .sysfs_root = a->sysfs_root,
    };
    if (sandbox_init(&a->sb, a->loop, &rc, e) < 0)
        return -1;
    a->sb.oom = &a->oom;
    a->sb_ready = true;
    a->uevents = uevent_mon_new(a->loop, a->sysfs_root, a->dev_root, e);
    if (!a->uevents)
        return -1;
    a->srv = ttrpc_server_new(a->loop, e);
    if (!a->srv || rpc_register(a, e) < 0)
        return -1;
    a->listeners = listeners_start(a->srv, a->cfg.server_addr, e);
    if (!a->listeners)
        return -1;
    start_debug_console(a);
    return 0;
}

int agent_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"version", no_argument, NULL, 'v'},
        {"server-addr", required_argument, NULL, 'a'},
        {"log-level", required_argument, NULL, 'l'},
        {"cmdline", required_argument, NULL, 'k'},
        {"sysfs-root", required_argument, NULL, 's'},
        {"dev-root", required_argument, NULL, 'd'},
        {"log-addr", required_argument, NULL, 'L'},
        {"debug-console-addr", required_argument, NULL, 'D'},
        {"console", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct config_sources src = {.use_env = true};
    const char *cmdline_path = "/proc/cmdline";
    struct agent a = {.sysfs_root = "/sys", .dev_root = "/dev", .console = "/dev/console"};
    int opt;

    while ((opt = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            src.config_file = optarg;
            break;
        case 'v':
            printf("kata-agent version %s (api version: %s, commit version: %s, type: c)\n", KA_VERSION,
                   KA_API_VERSION, KA_VERSION);
            return 0;
        case 'a':
            src.flag_server_addr = optarg;
            break;
        case 'l':
            src.flag_log_level = optarg;
            break;
        case 'k':
            cmdline_path = optarg;
            break;
        case 's':
            a.sysfs_root = optarg;
            break;
        case 'd':
            a.dev_root = optarg;
            break;
        case 'L':
            a.log_addr = optarg;
            break;
        case 'D':
            a.debug_console_addr = optarg;
            break;
        case 'C':
            a.console = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kata-agent: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    ka_log_set_version(KA_VERSION);
    a.init_mode = getpid() == 1;
    oom_queue_init(&a.oom);

    ka_err e;
    ka_err_clear(&e);
    if (a.init_mode && init_early_mounts(&e) < 0) { /* /proc is needed for the kernel command line */
        log_error("init", "%s", e.msg);
        return 1;
    }
    cleanup_free char *cmdline = read_small_file(cmdline_path, &e);
    if (!cmdline && strcmp(cmdline_path, "/proc/cmdline") != 0) {
        log_error("root", "%s", e.msg); /* a test's explicit file must exist */
        return 1;
    }
    src.cmdline = cmdline;

    int rc = 0;
    if (setup(&a, &src, &e) < 0 || loop_run(a.loop, &e) < 0) {
        log_error("root", "%s", e.msg);
        rc = 1;
    }
    ttrpc_server_free(a.srv);
    rpc_files_fini(&a);
    listeners_free(a.listeners);
    if (a.sb_ready)
        sandbox_fini(&a.sb);
    debug_console_free(a.debug_console);
    uevent_mon_free(a.uevents);
    log_vport_free(a.log_vport); /* before the loop; what no reader took goes to stdout */
    loop_free(a.loop);
    oom_queue_free(&a.oom);
    config_free(&a.cfg);
    if (rc == 0)
        fprintf(stderr, "kata-agent shutdown complete\n");
    return rc;
}
