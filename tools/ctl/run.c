/* kata-agent-ctl run: run one container through the agent the way the Kata runtime and shim do (spec §1.6):
 *   CreateSandbox -> CreateContainer -> StartContainer -> [ReadStdout, ReadStderr, WriteStdin/CloseStdin
 *   pipelined on one connection until both output streams end] -> WaitProcess -> RemoveContainer ->
 *   DestroySandbox; exits with the container's exit status (signal number for a signal death, as the agent
 *   reports it). Signals to this tool are forwarded with SignalProcess, window changes with TtyWinResize.
 * The OCI spec is runc's default (tests/integration/oci.py has the same): mount, pid, ipc and uts
 * namespaces, /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys, runc's capabilities, masked and read-only
 * paths. An error status prints "kata-agent-ctl: <Method>: <CODE>: <message>" and exits 1. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "agent.pb-c.h"
#include "ttrpc/addr.h"
#include "ttrpc/client.h"
#include "util/cleanup.h"

#define SVC      "grpc.AgentService"
#define READ_LEN 32768 /* what the shim asks for */
#define MAX_ENV  256

/* --- the default spec ---------------------------------------------------------------------------------- */

static const char *const default_caps[] = {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"};
static const char *const default_namespaces[] = {"mount", "pid", "ipc", "uts"};
static const char *const masked_paths[] = {"/proc/acpi",
                                           "/proc/asound",
                                           "/proc/kcore",
                                           "/proc/keys",
                                           "/proc/latency_stats",
                                           "/proc/timer_list",
                                           "/proc/timer_stats",
                                           "/proc/sched_debug",
                                           "/sys/firmware",
                                           "/proc/scsi",
                                           "/sys/devices/virtual/tpm"};
static const char *const readonly_paths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                             "/proc/sysrq-trigger"};

struct mount_def {
    const char *dest, *type, *source;
    const char *opts[6];
};
static const struct mount_def default_mounts[] = {
    {"/proc", "proc", "proc", {NULL}},
    {"/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}},
    {"/dev/pts",
     "devpts",
     "devpts",
     {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
    {"/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
    {"/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}},
    {"/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}},
};

#define STRV(a) ((char **)(a)) /* protobuf-c wants char **; these arrays are only read */

/* --- options and state --------------------------------------------------------------------------------- */

struct run {
    const char *addr;
    int64_t timeout_ns;
    bool tty, no_sandbox;
    char *cid, *hostname, *cwd, *rootfs;
    uint32_t uid, gid;
    const char *env[MAX_ENV];
    size_t n_env;
    char **args;
    size_t n_args;

    struct ttrpc_client c;
    bool sandbox_created, container_created;
    struct winsize ws;
    bool have_ws;
};

static void usage(FILE *f)
{
    fprintf(
        f, "Usage: kata-agent-ctl [-a ADDR] [-t SECONDS] run [OPTIONS] ROOTFS -- CMD [ARGS...]\n"
           "Runs CMD in a container whose root is ROOTFS (a path where the agent runs), forwarding stdin,\n"
           "stdout, stderr and signals; exits with the container's exit status.\n"
           "Options:\n"
           "      --tty               allocate a terminal (stdin in raw mode when it is a terminal)\n"
           "      --id CID            container and sandbox id (default ctl-run-<pid>)\n"
           "      --hostname H        sandbox and container hostname\n"
           "  -e, --env K=V           add an environment variable (repeatable; PATH and TERM have defaults)\n"
           "      --cwd DIR           working directory (default /)\n"
           "  -u, --user UID[:GID]    user (default 0:0)\n"
           "      --no-sandbox        skip CreateSandbox/DestroySandbox (the agent already has a sandbox)\n");
}

static void report(const char *method, const ka_err *e)
{
    fprintf(stderr, "kata-agent-ctl: %s: %s: %s\n", method, ka_status_name(e->status), e->msg);
}

/* One blocking call answered by google.protobuf.Empty; an error status is reported unless quiet. */
static int rpc(struct run *r, const char *method, const void *req, bool quiet)
{
    ka_err e;
    ProtobufCMessage *m = NULL;
    if (ttrpc_client_call(&r->c, SVC, method, req, &google__protobuf__empty__descriptor, &m, r->timeout_ns,
                          &e) < 0) {
        if (!quiet)
            report(method, &e);
        return -1;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

static int queue(struct run *r, const char *method, const void *req, int64_t timeout_ns, uint32_t *stream)
{
    ka_err e;
    if (ttrpc_client_queue(&r->c, SVC, method, req, timeout_ns, stream, &e) < 0) {
        report(method, &e);
        return -1;
    }
    return 0;
}

/* --- the lifecycle calls ------------------------------------------------------------------------------- */

static int create_sandbox(struct run *r)
{
    Grpc__CreateSandboxRequest req = GRPC__CREATE_SANDBOX_REQUEST__INIT;
    req.hostname = r->hostname;
    req.sandbox_id = r->cid;
    if (rpc(r, "CreateSandbox", &req, false) < 0)
        return -1;
    r->sandbox_created = true;
    return 0;
}

static int create_container(struct run *r)
{
    Grpc__LinuxCapabilities caps = GRPC__LINUX_CAPABILITIES__INIT;
    caps.n_bounding = caps.n_effective = caps.n_permitted = ARRAY_SIZE(default_caps);
    caps.bounding = caps.effective = caps.permitted = STRV(default_caps);

    Grpc__POSIXRlimit nofile = GRPC__POSIXRLIMIT__INIT, *rlimits[] = {&nofile};
    nofile.type = "RLIMIT_NOFILE";
    nofile.hard = nofile.soft = 1024;

    Grpc__User user = GRPC__USER__INIT;
    user.uid = r->uid;
    user.gid = r->gid;

    Grpc__Box box = GRPC__BOX__INIT;
    box.height = r->ws.ws_row;
    box.width = r->ws.ws_col;

    Grpc__Process proc = GRPC__PROCESS__INIT;
    proc.terminal = r->tty;
    proc.consolesize = r->have_ws ? &box : NULL;
    proc.user = &user;
    proc.n_args = r->n_args;
    proc.args = r->args;
    proc.n_env = r->n_env;
    proc.env = STRV(r->env);
    proc.cwd = r->cwd;
    proc.capabilities = &caps;
    proc.n_rlimits = ARRAY_SIZE(rlimits);
    proc.rlimits = rlimits;
    proc.nonewprivileges = true;

    Grpc__Root root = GRPC__ROOT__INIT;
    root.path = r->rootfs;

    Grpc__Mount mounts[ARRAY_SIZE(default_mounts)], *mount_ptrs[ARRAY_SIZE(default_mounts)];
    for (size_t i = 0; i < ARRAY_SIZE(default_mounts); i++) {
        const struct mount_def *d = &default_mounts[i];
        mounts[i] = (Grpc__Mount)GRPC__MOUNT__INIT;
        mounts[i].destination = (char *)d->dest;
        mounts[i].type = (char *)d->type;
        mounts[i].source = (char *)d->source;
        while (mounts[i].n_options < ARRAY_SIZE(d->opts) && d->opts[mounts[i].n_options])
            mounts[i].n_options++;
        mounts[i].options = STRV(d->opts);
        mount_ptrs[i] = &mounts[i];
    }

    Grpc__LinuxNamespace ns[ARRAY_SIZE(default_namespaces)], *ns_ptrs[ARRAY_SIZE(default_namespaces)];
    for (size_t i = 0; i < ARRAY_SIZE(default_namespaces); i++) {
        ns[i] = (Grpc__LinuxNamespace)GRPC__LINUX_NAMESPACE__INIT;
        ns[i].type = (char *)default_namespaces[i];
        ns_ptrs[i] = &ns[i];
    }

    Grpc__Linux linux_ = GRPC__LINUX__INIT;
    linux_.n_namespaces = ARRAY_SIZE(ns_ptrs);
    linux_.namespaces = ns_ptrs;
    linux_.n_maskedpaths = ARRAY_SIZE(masked_paths);
    linux_.maskedpaths = STRV(masked_paths);
    linux_.n_readonlypaths = ARRAY_SIZE(readonly_paths);
    linux_.readonlypaths = STRV(readonly_paths);

    Grpc__Spec spec = GRPC__SPEC__INIT;
    spec.version = "1.0.2";
    spec.process = &proc;
    spec.root = &root;
    spec.hostname = r->hostname;
    spec.n_mounts = ARRAY_SIZE(mount_ptrs);
    spec.mounts = mount_ptrs;
    spec.linux = &linux_;

    Grpc__CreateContainerRequest req = GRPC__CREATE_CONTAINER_REQUEST__INIT;
    req.container_id = req.exec_id = r->cid;
    req.oci = &spec;
    if (rpc(r, "CreateContainer", &req, false) < 0)
        return -1;
    r->container_created = true;
    return 0;
}

static int start_container(struct run *r)
{
    Grpc__StartContainerRequest req = GRPC__START_CONTAINER_REQUEST__INIT;
    req.container_id = r->cid;
    return rpc(r, "StartContainer", &req, false);
}

static int remove_container(struct run *r, bool quiet)
{
    Grpc__RemoveContainerRequest req = GRPC__REMOVE_CONTAINER_REQUEST__INIT;
    req.container_id = r->cid;
    req.timeout = 10;
    r->container_created = false;
    return rpc(r, "RemoveContainer", &req, quiet);
}

static int destroy_sandbox(struct run *r, bool quiet)
{
    Grpc__DestroySandboxRequest req = GRPC__DESTROY_SANDBOX_REQUEST__INIT;
    r->sandbox_created = false;
    return rpc(r, "DestroySandbox", &req, quiet);
}

/* --- the I/O phase: one connection, several calls in flight -------------------------------------------- */

struct io {
    uint32_t read_stream[2]; /* ReadStdout, ReadStderr in flight; 0 = that stream has ended */
    uint32_t write_stream;   /* WriteStdin in flight */
    uint32_t wait_stream;    /* WaitProcess in flight */
    bool stdin_open;
    bool out_broken[2]; /* our stdout/stderr failed: drain and discard */
    uint8_t buf[READ_LEN];
};

static const char *const read_method[2] = {"ReadStdout", "ReadStderr"};

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A whole reply is already buffered in the client (poll on the socket would not report it). */
static bool reply_buffered(const struct ttrpc_client *c)
{
    size_t n = kbuf_avail(&c->rd.in);
    if (n < TTRPC_HDR_LEN)
        return false;
    struct ttrpc_hdr h;
    ttrpc_hdr_decode(c->rd.in.data + c->rd.in.off, &h);
    return h.len > TTRPC_MAX_DATA || n - TTRPC_HDR_LEN >= h.len;
}

static int queue_read(struct run *r, struct io *io, int which)
{
    Grpc__ReadStreamRequest req = GRPC__READ_STREAM_REQUEST__INIT;
    req.container_id = req.exec_id = r->cid;
    req.len = READ_LEN;
    return queue(r, read_method[which], &req, 0, &io->read_stream[which]);
}

static int queue_resize(struct run *r)
{
    uint32_t stream;
    Grpc__TtyWinResizeRequest req = GRPC__TTY_WIN_RESIZE_REQUEST__INIT;
    req.container_id = req.exec_id = r->cid;
    req.row = r->ws.ws_row;
    req.column = r->ws.ws_col;
    return queue(r, "TtyWinResize", &req, r->timeout_ns, &stream);
}

/* stdin readable: forward a chunk, or CloseStdin at EOF. */
static int on_stdin(struct run *r, struct io *io)
{
    ssize_t n = read(STDIN_FILENO, io->buf, sizeof(io->buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n > 0) {
        Grpc__WriteStreamRequest req = GRPC__WRITE_STREAM_REQUEST__INIT;
        req.container_id = req.exec_id = r->cid;
        req.data.data = io->buf;
        req.data.len = (size_t)n;
        return queue(r, "WriteStdin", &req, r->timeout_ns, &io->write_stream);
    }
    io->stdin_open = false;
    uint32_t stream;
    Grpc__CloseStdinRequest req = GRPC__CLOSE_STDIN_REQUEST__INIT;
    req.container_id = req.exec_id = r->cid;
    return queue(r, "CloseStdin", &req, r->timeout_ns, &stream);
}

static int on_signal(struct run *r, int sfd)
{
    struct signalfd_siginfo si;
    if (read(sfd, &si, sizeof(si)) != sizeof(si))
        return 0;
    if (si.ssi_signo == SIGWINCH) {
        if (!r->tty || ioctl(STDOUT_FILENO, TIOCGWINSZ, &r->ws) < 0)
            return 0;
        return queue_resize(r);
    }
    uint32_t stream;
    Grpc__SignalProcessRequest req = GRPC__SIGNAL_PROCESS_REQUEST__INIT;
    req.container_id = req.exec_id = r->cid;
    req.signal = si.ssi_signo;
    return queue(r, "SignalProcess", &req, r->timeout_ns, &stream);
}

/* A reply arrived. Returns 1 when WaitProcess answered (*status set), 0 to go on, -1 on error. */
static int on_reply(struct run *r, struct io *io, struct ttrpc_result *res, int *status)
{
    for (int k = 0; k < 2; k++) {
        if (!io->read_stream[k] || res->stream != io->read_stream[k])
            continue;
        io->read_stream[k] = 0;
        if (res->code != KA_OK) /* any error is end of stream, as for the shim */
            return 0;
        Grpc__ReadStreamResponse *m = grpc__read_stream_response__unpack(
            NULL, res->payload_len, res->payload ? res->payload : (uint8_t *)"");
        if (!m) {
            ka_err e;
            ka_fail(&e, KA_INTERNAL, "undecodable reply");
            report(read_method[k], &e);
            return -1;
        }
        if (!io->out_broken[k] &&
            write_all(k == 0 ? STDOUT_FILENO : STDERR_FILENO, m->data.data, m->data.len) < 0)
            io->out_broken[k] = true;
        grpc__read_stream_response__free_unpacked(m, NULL);
        return queue_read(r, io, k);
    }
    if (io->write_stream && res->stream == io->write_stream) {
        io->write_stream = 0;
        if (res->code != KA_OK) /* the process no longer reads stdin: stop forwarding */
            io->stdin_open = false;
        return 0;
    }
    if (io->wait_stream && res->stream == io->wait_stream) {
        if (res->code != KA_OK) {
            ka_err e;
            ka_fail(&e, res->code, "%s", res->message ? res->message : "");
            report("WaitProcess", &e);
            return -1;
        }
        Grpc__WaitProcessResponse *m = grpc__wait_process_response__unpack(
            NULL, res->payload_len, res->payload ? res->payload : (uint8_t *)"");
        *status = m ? m->status : 0;
        if (m)
            grpc__wait_process_response__free_unpacked(m, NULL);
        return 1;
    }
    return 0; /* CloseStdin, SignalProcess, TtyWinResize: best effort, as in the shim */
}

/* Pump stdio until both output streams end, then WaitProcess (still forwarding signals). */
static int io_loop(struct run *r, int sfd, int *status)
{
    ka_err e;
    struct io *io = calloc(1, sizeof(*io));
    if (!io) {
        fprintf(stderr, "kata-agent-ctl: out of memory\n");
        return -1;
    }
    io->stdin_open = true;
    int rc = queue_read(r, io, 0);
    if (rc == 0 && !r->tty) /* a terminal has one stream: ReadStderr would read the same pty */
        rc = queue_read(r, io, 1);
    if (rc == 0 && r->tty && r->have_ws)
        rc = queue_resize(r);
    while (rc == 0) {
        if (!io->read_stream[0] && !io->read_stream[1] && !io->wait_stream) {
            Grpc__WaitProcessRequest req = GRPC__WAIT_PROCESS_REQUEST__INIT;
            req.container_id = req.exec_id = r->cid;
            if ((rc = queue(r, "WaitProcess", &req, 0, &io->wait_stream)) < 0)
                break;
        }
        if (ttrpc_client_flush(&r->c, &e) < 0) {
            report(io->wait_stream ? "WaitProcess" : "ReadStdout", &e);
            rc = -1;
            break;
        }
        if (!reply_buffered(&r->c)) {
            bool want_stdin = io->stdin_open && !io->write_stream && !io->wait_stream;
            struct pollfd p[3] = {{.fd = r->c.fd, .events = POLLIN},
                                  {.fd = sfd, .events = POLLIN},
                                  {.fd = want_stdin ? STDIN_FILENO : -1, .events = POLLIN}};
            if (poll(p, 3, -1) < 0) {
                if (errno == EINTR)
                    continue;
                ka_fail_errno(&e, errno, "poll");
                report("ReadStdout", &e);
                rc = -1;
                break;
            }
            if (p[1].revents & POLLIN)
                rc = on_signal(r, sfd);
            if (rc == 0 && p[2].revents)
                rc = on_stdin(r, io);
            if (rc < 0 || !p[0].revents)
                continue;
        }
        struct ttrpc_result res;
        if (ttrpc_client_recv(&r->c, &res, 0, &e) < 0) {
            report(io->wait_stream ? "WaitProcess" : "ReadStdout", &e);
            rc = -1;
            break;
        }
        rc = on_reply(r, io, &res, status);
        ttrpc_result_free(&res);
    }
    free(io);
    return rc < 0 ? -1 : 0;
}

/* --- options ------------------------------------------------------------------------------------------- */

static bool env_has(const struct run *r, const char *key, size_t len)
{
    for (size_t i = 0; i < r->n_env; i++)
        if (strncmp(r->env[i], key, len) == 0 && r->env[i][len] == '=')
            return true;
    return false;
}

static int parse_user(struct run *r, const char *s)
{
    char *end;
    errno = 0;
    unsigned long uid = strtoul(s, &end, 10), gid = 0;
    if (errno || end == s || uid > UINT32_MAX || (*end && *end != ':'))
        return -1;
    if (*end == ':') {
        const char *g = end + 1;
        gid = strtoul(g, &end, 10);
        if (errno || end == g || *end || gid > UINT32_MAX)
            return -1;
    }
    r->uid = (uint32_t)uid;
    r->gid = (uint32_t)gid;
    return 0;
}

static int parse_args(struct run *r, int argc, char **argv)
{
    enum { O_TTY = 256, O_ID, O_HOSTNAME, O_CWD, O_NO_SANDBOX };
    static const struct option opts[] = {
        {"tty", no_argument, NULL, O_TTY},
        {"id", required_argument, NULL, O_ID},
        {"hostname", required_argument, NULL, O_HOSTNAME},
        {"env", required_argument, NULL, 'e'},
        {"cwd", required_argument, NULL, O_CWD},
        {"user", required_argument, NULL, 'u'},
        {"no-sandbox", no_argument, NULL, O_NO_SANDBOX},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    optind = 0; /* restart getopt on the arguments after "run" */
    while ((opt = getopt_long(argc, argv, "+e:u:h", opts, NULL)) != -1) {
        switch (opt) {
        case O_TTY:
            r->tty = true;
            break;
        case O_ID:
            r->cid = optarg;
            break;
        case O_HOSTNAME:
            r->hostname = optarg;
            break;
        case 'e':
            if (!strchr(optarg, '=') || optarg[0] == '=' || r->n_env >= MAX_ENV - 2) {
                fprintf(stderr, "kata-agent-ctl: run: invalid or too many --env '%s' (want K=V)\n", optarg);
                return 2;
            }
            r->env[r->n_env++] = optarg;
            break;
        case O_CWD:
            r->cwd = optarg;
            break;
        case 'u':
            if (parse_user(r, optarg) < 0) {
                fprintf(stderr, "kata-agent-ctl: run: invalid --user '%s' (want UID[:GID])\n", optarg);
                return 2;
            }
            break;
        case O_NO_SANDBOX:
            r->no_sandbox = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc)
        r->rootfs = argv[optind++];
    if (optind < argc && strcmp(argv[optind], "--") == 0)
        optind++;
    if (!r->rootfs || optind >= argc) {
        fprintf(stderr, "kata-agent-ctl: run: need ROOTFS -- CMD [ARGS...]\n");
        usage(stderr);
        return 2;
    }
    r->args = argv + optind;
    r->n_args = (size_t)(argc - optind);
    if (!env_has(r, "PATH", 4))
        r->env[r->n_env++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    if (!env_has(r, "TERM", 4))
        r->env[r->n_env++] = "TERM=xterm";
    return -1; /* go on */
}

/* --- entry --------------------------------------------------------------------------------------------- */

static int run_container(struct run *r, int sfd)
{
    int status = 0;
    if (!r->no_sandbox && create_sandbox(r) < 0)
        return -1;
    if (create_container(r) < 0 || start_container(r) < 0 || io_loop(r, sfd, &status) < 0)
        return -1;
    if (remove_container(r, false) < 0)
        return -1;
    if (!r->no_sandbox && destroy_sandbox(r, false) < 0)
        return -1;
    return status & 0xff;
}

int ctl_run(const char *addr, int64_t timeout_ns, int argc, char **argv)
{
    struct run r = {.addr = addr, .timeout_ns = timeout_ns, .hostname = "", .cwd = "/"};
    char default_id[64];
    snprintf(default_id, sizeof(default_id), "ctl-run-%d", (int)getpid());
    r.cid = default_id;
    int rc = parse_args(&r, argc, argv);
    if (rc >= 0)
        return rc;
    cleanup_free char *abs_rootfs = NULL;
    if (r.rootfs[0] != '/') { /* a relative ROOTFS is taken as local; an absolute one may be a guest path */
        abs_rootfs = realpath(r.rootfs, NULL);
        if (!abs_rootfs) {
            fprintf(stderr, "kata-agent-ctl: run: %s: %s\n", r.rootfs, strerror(errno));
            return 2;
        }
        r.rootfs = abs_rootfs;
    }

    struct ka_addr a;
    ka_err e;
    if (!addr) {
        fprintf(stderr, "kata-agent-ctl: no agent address: give -a ADDR or set KATA_AGENT_ADDR\n");
        return 2;
    }
    if (ka_addr_parse(addr, &a, &e) < 0) {
        fprintf(stderr, "kata-agent-ctl: %s\n", e.msg);
        return 2;
    }
    int fd = ka_addr_dial(&a, 10000, &e);
    if (fd < 0) {
        fprintf(stderr, "kata-agent-ctl: %s\n", e.msg);
        return 1;
    }
    ttrpc_client_init(&r.c, fd);

    /* Signals become SignalProcess (and SIGWINCH TtyWinResize) once the container exists. */
    sigset_t fwd;
    sigemptyset(&fwd);
    sigaddset(&fwd, SIGINT);
    sigaddset(&fwd, SIGTERM);
    sigaddset(&fwd, SIGHUP);
    sigaddset(&fwd, SIGQUIT);
    sigaddset(&fwd, SIGWINCH);
    sigprocmask(SIG_BLOCK, &fwd, NULL); /* kept blocked: a late signal must not kill us before exit */
    signal(SIGPIPE, SIG_IGN);
    cleanup_close int sfd = signalfd(-1, &fwd, SFD_CLOEXEC | SFD_NONBLOCK);

    struct termios saved;
    bool raw = false;
    if (r.tty) {
        r.have_ws = ioctl(STDOUT_FILENO, TIOCGWINSZ, &r.ws) == 0 && r.ws.ws_row;
        if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
            struct termios t = saved;
            cfmakeraw(&t);
            raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
        }
    }

    if (sfd < 0)
        perror("kata-agent-ctl: signalfd");
    rc = sfd < 0 ? -1 : run_container(&r, sfd);
    if (rc < 0) { /* best effort: leave no container or sandbox behind */
        if (r.container_created)
            remove_container(&r, true);
        if (r.sandbox_created)
            destroy_sandbox(&r, true);
        rc = 1;
    }
    if (raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    ttrpc_client_close(&r.c);
    return rc;
}
