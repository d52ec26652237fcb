/* kata-agent-ctl: talk to a kata agent over ttrpc from the command line.
 *   kata-agent-ctl -a ADDR health | version | guest-details | methods
 *   kata-agent-ctl -a ADDR call [Service.]Method ['<proto3 JSON request>']
 *   kata-agent-ctl -a ADDR run [OPTIONS] ROOTFS -- CMD [ARGS...]   (tools/ctl/run.c)
 * ADDR: vsock://CID:PORT, unix:///path, unix://@name, serial:///dev/..., hvsock:///vmm.sock:PORT
 * (or env KATA_AGENT_ADDR). Replies are printed as proto3 JSON; an error status exits 1 with its code. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.pb-c.h"
#include "health.pb-c.h"
#include "pbjson.h"
#include "ttrpc/addr.h"
#include "ttrpc/client.h"
#include "util/cleanup.h"

struct ctl {
    const char *addr;
    int64_t timeout_ns;
    bool compact;
};

static const ProtobufCServiceDescriptor *const services[] = {
    &grpc__agent_service__descriptor,
    &grpc__health__descriptor,
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: kata-agent-ctl [-a ADDR] [-t SECONDS] [--compact] COMMAND [ARGS]\n"
               "Commands:\n"
               "  health                       grpc.Health/Check\n"
               "  version                      grpc.Health/Version\n"
               "  guest-details                grpc.AgentService/GetGuestDetails\n"
               "  call [SERVICE.]METHOD [JSON] any method, the request given as proto3 JSON (default {})\n"
               "  methods                      list every method with its request and reply types\n"
               "  run [OPTIONS] ROOTFS -- CMD  run a container as the Kata shim would (see 'run --help')\n"
               "Options:\n"
               "  -a, --addr ADDR     vsock://CID:PORT, unix:///path, unix://@name, serial:///dev/...,\n"
               "                      hvsock:///path/to/vmm.sock:PORT (default: $KATA_AGENT_ADDR)\n"
               "  -t, --timeout SECS  per-call timeout sent as timeout_nano (default 30, 0 = none)\n"
               "      --compact       one-line JSON output\n");
}

/* "grpc.AgentService.CreateContainer", "AgentService.CreateContainer" or "CreateContainer". */
static int find_method(const char *spec, const ProtobufCServiceDescriptor **svc_out,
                       const ProtobufCMethodDescriptor **m_out)
{
    const char *dot = strrchr(spec, '.');
    const char *method = dot ? dot + 1 : spec;
    size_t svc_len = dot ? (size_t)(dot - spec) : 0;
    for (size_t i = 0; i < ARRAY_SIZE(services); i++) {
        const ProtobufCServiceDescriptor *s = services[i];
        if (dot) {
            size_t full = strlen(s->name), shrt = strlen(s->short_name);
            bool match = (svc_len == full && strncmp(spec, s->name, full) == 0) ||
                         (svc_len == shrt && strncmp(spec, s->short_name, shrt) == 0);
            if (!match)
                continue;
        }
        const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(s, method);
        if (m) {
            *svc_out = s;
            *m_out = m;
            return 0;
        }
    }
    return -1;
}

static int call(const struct ctl *ctl, const char *spec, const char *json)
{
    const ProtobufCServiceDescriptor *svc;
    const ProtobufCMethodDescriptor *m;
    ka_err e;
    if (find_method(spec, &svc, &m) < 0) {
        fprintf(stderr, "kata-agent-ctl: unknown method '%s' (see 'kata-agent-ctl methods')\n", spec);
        return 2;
    }
    ProtobufCMessage *req = pbjson_parse(m->input, json ? json : "{}", &e);
    if (!req) {
        fprintf(stderr, "kata-agent-ctl: %s request: %s\n", m->input->short_name, e.msg);
        return 2;
    }
    struct ka_addr addr;
    int rc = 1;
    if (ka_addr_parse(ctl->addr, &addr, &e) < 0) {
        fprintf(stderr, "kata-agent-ctl: %s\n", e.msg);
        protobuf_c_message_free_unpacked(req, NULL);
        return 2;
    }
    int fd = ka_addr_dial(&addr, 10000, &e);
    if (fd < 0) {
        fprintf(stderr, "kata-agent-ctl: %s\n", e.msg);
        protobuf_c_message_free_unpacked(req, NULL);
        return 1;
    }
    struct ttrpc_client client;
    ttrpc_client_init(&client, fd);
    ProtobufCMessage *resp = NULL;
    if (ttrpc_client_call(&client, svc->name, m->name, req, m->output, &resp, ctl->timeout_ns, &e) < 0) {
        fprintf(stderr, "Error: %s (code %d): %s\n", ka_status_name(e.status), e.status, e.msg);
    } else {
        char *out = pbjson_to_string(resp, !ctl->compact);
        if (out) {
            printf("%s\n", out);
            rc = 0;
        } else {
            fprintf(stderr, "kata-agent-ctl: cannot print the %s reply\n", m->output->short_name);
        }
        free(out);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    ttrpc_client_close(&client);
    protobuf_c_message_free_unpacked(req, NULL);
    return rc;
}

int ctl_run(const char *addr, int64_t timeout_ns, int argc, char **argv); /* tools/ctl/run.c */

static void list_methods(void)
{
    for (size_t i = 0; i < ARRAY_SIZE(services); i++)
        for (unsigned j = 0; j < services[i]->n_methods; j++)
            printf("%s.%s(%s) returns %s\n", services[i]->name, services[i]->methods[j].name,
                   services[i]->methods[j].input->name, services[i]->methods[j].output->name);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"addr", required_argument, NULL, 'a'},
        {"timeout", required_argument, NULL, 't'},
        {"compact", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct ctl ctl = {.addr = getenv("KATA_AGENT_ADDR"), .timeout_ns = 30 * 1000000000ll};
    int opt;
    while ((opt = getopt_long(argc, argv, "+a:t:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'a':
            ctl.addr = optarg;
            break;
        case 't': {
            char *end;
            errno = 0;
            double secs = strtod(optarg, &end);
            if (errno || *end || secs < 0 || secs > 1e9) {
                fprintf(stderr, "kata-agent-ctl: invalid timeout '%s'\n", optarg);
                return 2;
            }
            ctl.timeout_ns = (int64_t)(secs * 1e9);
            break;
        }
        case 'C':
            ctl.compact = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind++];
    if (strcmp(cmd, "methods") == 0) {
        list_methods();
        return 0;
    }
    if (strcmp(cmd, "run") == 0) /* tools/ctl/run.c */
        return ctl_run(ctl.addr, ctl.timeout_ns, argc - optind + 1, argv + optind - 1);
    if (!ctl.addr) {
        fprintf(stderr, "kata-agent-ctl: no agent address: give -a ADDR or set KATA_AGENT_ADDR\n");
        return 2;
    }
    if (strcmp(cmd, "health") == 0)
        return call(&ctl, "grpc.Health.Check", "{}");
    if (strcmp(cmd, "version") == 0)
        return call(&ctl, "grpc.Health.Version", "{}");
    if (strcmp(cmd, "guest-details") == 0)
        return call(&ctl, "grpc.AgentService.GetGuestDetails",
                    "{\"memBlockSize\":true,\"memHotplugProbe\":true}");
    if (strcmp(cmd, "call") == 0) {
        if (optind >= argc || argc - optind > 2) {
            fprintf(stderr, "kata-agent-ctl: usage: call [SERVICE.]METHOD ['<json>']\n");
            return 2;
        }
        return call(&ctl, argv[optind], optind + 1 < argc ? argv[optind + 1] : NULL);
    }
    fprintf(stderr, "kata-agent-ctl: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
