/* Unit tests of the agent configuration (src/agent/config.c): command line, environment, TOML, load order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.pb-c.h"
#include "unit.h"
#include "agent/config.h"
#include "util/log.h"

/* Warnings about ignored options go to stderr, away from the TAP stream. */
__attribute__((constructor)) static void log_to_stderr(void)
{
    ka_log_set_fd(STDERR_FILENO);
}

/* ---- helpers ---- */

/* The fields that differ from the defaults, e.g. "log=debug console trace"; "defaults" if none. */
static char *summary(const struct agent_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        abort();
    if (c->log_level != KA_LOG_INFO)
        fprintf(f, " log=%s", ka_log_level_name(c->log_level));
    if (!c->server_addr || strcmp(c->server_addr, KA_DEFAULT_SERVER_ADDR) != 0)
        fprintf(f, " addr=%s", c->server_addr ? c->server_addr : "(null)");
    if (c->debug_console)
        fputs(" console", f);
    if (c->debug_console_vport)
        fprintf(f, " console_vport=%d", (int)c->debug_console_vport);
    if (c->log_vport)
        fprintf(f, " log_vport=%d", (int)c->log_vport);
    if (c->dev_mode)
        fputs(" devmode", f);
    if (c->hotplug_timeout_ms != KA_DEFAULT_HOTPLUG_TIMEOUT_MS)
        fprintf(f, " hotplug_ms=%llu", (unsigned long long)c->hotplug_timeout_ms);
    if (c->container_pipe_size)
        fprintf(f, " pipe=%lld", (long long)c->container_pipe_size);
    if (c->unified_cgroup_hierarchy)
        fputs(" unified", f);
    if (c->tracing)
        fputs(" trace", f);
    if (c->config_file)
        fprintf(f, " file=%s", c->config_file);
    if (c->allowlist_enabled) {
        fputs(" allowlist=[", f);
        for (size_t i = 0; i < c->n_allowed; i++)
            fprintf(f, "%s%s", i ? "," : "", c->allowed[i]);
        fputc(']', f);
    }
    fclose(f);
    if (!*buf) {
        free(buf);
        return strdup("defaults");
    }
    memmove(buf, buf + 1, strlen(buf)); /* drop the leading space */
    return buf;
}

/* Prints "# input <s>" as one TAP diagnostic line: control bytes escaped, long inputs cut. */
static void show_input(const char *s)
{
    printf("# input ");
    for (size_t i = 0; s[i] && i < 100; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f)
            putchar(c);
        else
            printf("\\x%02x", c);
    }
    printf("%s\n", strlen(s) > 100 ? "..." : "");
}

static int summary_is(const struct agent_config *c, const char *input, const char *want)
{
    char *got = summary(c);
    int ok = strcmp(got, want) == 0;
    if (!ok) {
        show_input(input);
        printf("#   got  %s\n#   want %s\n", got, want);
    }
    free(got);
    return ok;
}

static int error_is(int r, const ka_err *e, const char *input, const char *want)
{
    if (r == 0) {
        show_input(input);
        printf("#   accepted, expected error %s\n", want);
        return 0;
    }
    if (!strstr(e->msg, want)) {
        show_input(input);
        printf("#   error %s\n#   want  %s\n", e->msg, want);
        return 0;
    }
    return 1;
}

static void clear_env(void)
{
    unsetenv("KATA_AGENT_SERVER_ADDR");
    unsetenv("KATA_AGENT_LOG_LEVEL");
    unsetenv("KATA_AGENT_TRACING");
}

/* A temporary file holding text (len bytes); path is written into path[32]. */
static void write_temp(char *path, const char *text, size_t len)
{
    strcpy(path, "/tmp/test_config_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len)
        abort();
    close(fd);
}

#define LEVELS "want one of trace, debug, info, warn, error, critical"

/* ---- defaults ---- */

TEST(defaults)
{
    struct agent_config c;
    config_init(&c);
    CHECK_INT(c.log_level, KA_LOG_INFO);
    CHECK_STR(c.server_addr, "vsock://-1:1024");
    CHECK_INT(c.hotplug_timeout_ms, 3000);
    CHECK(!c.debug_console && !c.dev_mode && !c.tracing && !c.unified_cgroup_hierarchy);
    CHECK(c.debug_console_vport == 0 && c.log_vport == 0 && c.container_pipe_size == 0);
    CHECK(!c.config_file && !c.allowlist_enabled && !c.allowed && c.n_allowed == 0);
    CHECK(summary_is(&c, "(init)", "defaults"));
    config_free(&c);
    CHECK(!c.server_addr);
    config_free(&c); /* twice is harmless */
}

/* ---- kernel command line ---- */

static const struct {
    const char *cmdline, *want;
} cmdline_valid_cases[] = {
    {"", "defaults"},
    {"console=ttyS0 quiet root=/dev/vda1 ro", "defaults"},
    {"agent.debug_console", "console"},
    {"agent.devmode", "devmode"},
    {"agent.trace", "trace"},
    {"agent.trace=true", "trace"},
    {"agent.trace=1", "trace"},
    {"agent.trace=17", "trace"},
    {"agent.trace=+1", "trace"},
    {"agent.trace=0", "defaults"},
    {"agent.trace agent.trace=false", "defaults"},
    {"agent.log=debug", "log=debug"},
    {"agent.log=warning", "log=warn"},
    {"agent.log=fatal", "log=critical"},
    {"agent.log=panic", "log=critical"},
    {"agent.log=trace agent.log=error", "log=error"},
    {"agent.server_addr=vsock://2:1024", "addr=vsock://2:1024"},
    {"agent.server_addr=unix:///run/a=b=c", "addr=unix:///run/a=b=c"},
    {"agent.server_addr=a agent.server_addr==", "addr=="},
    {"agent.hotplug_timeout=10", "hotplug_ms=10000"},
    {"agent.hotplug_timeout=0", "defaults"},
    {"agent.hotplug_timeout=5 agent.hotplug_timeout=0", "hotplug_ms=5000"},
    {"agent.hotplug_timeout=18446744073709551", "hotplug_ms=18446744073709551000"},
    {"agent.debug_console_vport=1026", "console_vport=1026"},
    {"agent.debug_console_vport=0", "defaults"},
    {"agent.debug_console_vport=-5", "defaults"},
    {"agent.debug_console_vport=2147483647", "console_vport=2147483647"},
    {"agent.log_vport=1025", "log_vport=1025"},
    {"agent.log_vport=1025 agent.log_vport=-1", "log_vport=1025"},
    {"agent.container_pipe_size=2097152", "pipe=2097152"},
    {"agent.container_pipe_size=0", "defaults"},
    {"agent.container_pipe_size=2147483647", "pipe=2147483647"},
    {"agent.unified_cgroup_hierarchy=true", "unified"},
    {"agent.unified_cgroup_hierarchy=1", "unified"},
    {"agent.unified_cgroup_hierarchy=1 agent.unified_cgroup_hierarchy=false", "defaults"},
    {"\tagent.devmode\n\ragent.debug_console\f ", "console devmode"},
    /* what the Kata runtime generates */
    {"tsc=reliable no_timer_check rcupdate.rcu_expedited=1 i8042.direct=1 agent.log=debug agent.trace=true "
     "agent.container_pipe_size=1048576 agent.debug_console agent.debug_console_vport=1026 "
     "agent.log_vport=1025 "
     "systemd.show_status=false panic=1 nr_cpus=2 scsi_mod.scan=none",
     "log=debug console console_vport=1026 log_vport=1025 pipe=1048576 trace"},
    /* later upstream options: accepted and ignored */
    {"agent.https_proxy=http://p:3128 agent.no_proxy=x agent.rest_api=all "
     "agent.aa_kbc_params=cc_kbc::http://1.2.3.4 "
     "agent.guest_components_procs=none agent.cdh_api_timeout=50 agent.enable_signature_verification=false "
     "agent.image_registry_auth=file:///x agent.guest_components_rest_api=all agent.https_proxy",
     "defaults"},
    /* unknown agent.* tokens and flags given a value: warned about and ignored */
    {"agent.bogus=1 agent.foo agent.debug_console=1 agent.devmode=true agent. agent.=x", "defaults"},
    /* not agent.* options */
    {"xagent.log=foo AGENT.log=foo agent_log=foo", "defaults"},
    /* the config file is only recorded here; the first one counts */
    {"agent.config_file=/x.toml", "file=/x.toml"},
    {"agent.config_file=/a agent.config_file=/b", "file=/a"},
};

TEST(cmdline_valid)
{
    for (size_t i = 0; i < sizeof(cmdline_valid_cases) / sizeof(cmdline_valid_cases[0]); i++) {
        struct agent_config c;
        ka_err e = {0};
        config_init(&c);
        int r = config_parse_cmdline(&c, cmdline_valid_cases[i].cmdline, &e);
        if (r < 0) {
            show_input(cmdline_valid_cases[i].cmdline);
            printf("#   error %s\n", e.msg);
        }
        CHECK(r == 0 && summary_is(&c, cmdline_valid_cases[i].cmdline, cmdline_valid_cases[i].want));
        config_free(&c);
    }
}

static const struct {
    const char *cmdline, *want;
} cmdline_invalid_cases[] = {
    {"agent.log=foo", "invalid agent.log value \"foo\": " LEVELS},
    {"agent.log=", "invalid agent.log value \"\": " LEVELS},
    {"agent.log=DEBUG", "invalid agent.log value \"DEBUG\""},
    {"agent.log=debug=x", "invalid agent.log value \"debug=x\""},
    {"agent.log", "invalid agent.log: want agent.log=<value>"},
    {"agent.server_addr=", "invalid agent.server_addr value \"\": must not be empty"},
    {"agent.hotplug_timeout=abc", "invalid agent.hotplug_timeout value \"abc\": want a number of seconds"},
    {"agent.hotplug_timeout=-1", "invalid agent.hotplug_timeout value \"-1\""},
    {"agent.hotplug_timeout=1.5", "invalid agent.hotplug_timeout value \"1.5\""},
    {"agent.hotplug_timeout=", "invalid agent.hotplug_timeout value \"\""},
    {"agent.hotplug_timeout=18446744073709551616", "want a number of seconds"},
    {"agent.hotplug_timeout=18446744073709552",
     "invalid agent.hotplug_timeout value \"18446744073709552\": too large"},
    {"agent.debug_console_vport=x", "invalid agent.debug_console_vport value \"x\": want a 32-bit integer"},
    {"agent.debug_console_vport=2147483648", "invalid agent.debug_console_vport value \"2147483648\""},
    {"agent.debug_console_vport=-2147483649", "invalid agent.debug_console_vport value"},
    {"agent.debug_console_vport=-+1", "invalid agent.debug_console_vport value"},
    {"agent.log_vport=1k", "invalid agent.log_vport value \"1k\""},
    {"agent.log_vport= 1", "invalid agent.log_vport value \"\""},
    {"agent.container_pipe_size=-1", "invalid agent.container_pipe_size value \"-1\": must not be negative"},
    {"agent.container_pipe_size=abc", "invalid agent.container_pipe_size value \"abc\": want an integer"},
    {"agent.container_pipe_size=2147483648",
     "invalid agent.container_pipe_size value \"2147483648\": too large"},
    {"agent.unified_cgroup_hierarchy=yes",
     "invalid agent.unified_cgroup_hierarchy value \"yes\": want true, false or an integer"},
    {"agent.unified_cgroup_hierarchy=True", "invalid agent.unified_cgroup_hierarchy value \"True\""},
    {"agent.trace=maybe", "invalid agent.trace value \"maybe\": want true, false or an integer"},
    {"agent.trace=-1", "invalid agent.trace value \"-1\""},
    {"agent.trace=", "invalid agent.trace value \"\""},
    {"agent.config_file=", "invalid agent.config_file value \"\": must not be empty"},
    {"agent.config_file", "invalid agent.config_file: want agent.config_file=<value>"},
    {"agent.devmode agent.log=debug agent.log=foo", "invalid agent.log value \"foo\""},
};

TEST(cmdline_invalid)
{
    for (size_t i = 0; i < sizeof(cmdline_invalid_cases) / sizeof(cmdline_invalid_cases[0]); i++) {
        struct agent_config c;
        ka_err e = {0};
        config_init(&c);
        int r = config_parse_cmdline(&c, cmdline_invalid_cases[i].cmdline, &e);
        CHECK(error_is(r, &e, cmdline_invalid_cases[i].cmdline, cmdline_invalid_cases[i].want));
        CHECK_INT(e.status, KA_INVALID_ARGUMENT);
        config_free(&c);
    }
}

TEST(cmdline_null_and_long)
{
    struct agent_config c;
    ka_err e = {0};
    config_init(&c);
    CHECK_INT(config_parse_cmdline(&c, NULL, &e), 0);
    CHECK(summary_is(&c, "(null)", "defaults"));

    size_t n = 200000;
    char *line = malloc(n + 64);
    if (!line)
        abort();
    strcpy(line, "agent.server_addr=unix:///");
    size_t len = strlen(line);
    memset(line + len, 'a', n);
    strcpy(line + len + n, " agent.devmode");
    CHECK_INT(config_parse_cmdline(&c, line, &e), 0);
    CHECK(c.dev_mode && strlen(c.server_addr) == n + strlen("unix:///"));
    free(line);
    config_free(&c);
}

/* ---- environment ---- */

TEST(env_overrides)
{
    struct agent_config c;
    ka_err e = {0};
    clear_env();
    config_init(&c);
    CHECK_INT(config_apply_env(&c, &e), 0);
    CHECK(summary_is(&c, "(no env)", "defaults"));

    setenv("KATA_AGENT_SERVER_ADDR", "vsock://3:1", 1);
    setenv("KATA_AGENT_LOG_LEVEL", "debug", 1);
    setenv("KATA_AGENT_TRACING", "true", 1);
    CHECK_INT(config_apply_env(&c, &e), 0);
    CHECK(summary_is(&c, "(env)", "log=debug addr=vsock://3:1 trace"));

    setenv("KATA_AGENT_TRACING", "0", 1);
    setenv("KATA_AGENT_LOG_LEVEL", "warning", 1);
    CHECK_INT(config_apply_env(&c, &e), 0);
    CHECK(summary_is(&c, "(env)", "log=warn addr=vsock://3:1"));
    setenv("KATA_AGENT_TRACING", "7", 1);
    CHECK_INT(config_apply_env(&c, &e), 0);
    CHECK(c.tracing);
    config_free(&c);
    clear_env();
}

static const struct {
    const char *var, *value, *want;
} env_invalid_cases[] = {
    {"KATA_AGENT_SERVER_ADDR", "", "invalid KATA_AGENT_SERVER_ADDR value \"\": must not be empty"},
    {"KATA_AGENT_LOG_LEVEL", "nope", "invalid KATA_AGENT_LOG_LEVEL value \"nope\": " LEVELS},
    {"KATA_AGENT_LOG_LEVEL", "", "invalid KATA_AGENT_LOG_LEVEL value \"\""},
    {"KATA_AGENT_TRACING", "maybe",
     "invalid KATA_AGENT_TRACING value \"maybe\": want true, false or an integer"},
    {"KATA_AGENT_TRACING", "", "invalid KATA_AGENT_TRACING value \"\""},
};

TEST(env_invalid_values)
{
    for (size_t i = 0; i < sizeof(env_invalid_cases) / sizeof(env_invalid_cases[0]); i++) {
        struct agent_config c;
        ka_err e = {0};
        clear_env();
        setenv(env_invalid_cases[i].var, env_invalid_cases[i].value, 1);
        config_init(&c);
        CHECK(error_is(config_apply_env(&c, &e), &e, env_invalid_cases[i].var, env_invalid_cases[i].want));
        config_free(&c);
    }
    clear_env();
}

/* ---- TOML config file ---- */

#define SAMPLE_ALL_ENDPOINTS                                                                                 \
    "[endpoints]\n"                                                                                          \
    "allowed = [\"AddARPNeighborsRequest\", \"AddSwapRequest\", \"CloseStdinRequest\", "                     \
    "\"CopyFileRequest\",\n"                                                                                 \
    "  \"CreateContainerRequest\", \"CreateSandboxRequest\", \"DestroySandboxRequest\", "                    \
    "\"ExecProcessRequest\",\n"                                                                              \
    "  \"GetMetricsRequest\", \"GetOOMEventRequest\", \"GuestDetailsRequest\", \"ListInterfacesRequest\",\n" \
    "  \"ListRoutesRequest\", \"MemHotplugByProbeRequest\", \"OnlineCPUMemRequest\", "                       \
    "\"PauseContainerRequest\",\n"                                                                           \
    "  \"PullImageRequest\", \"ReadStreamRequest\", \"RemoveContainerRequest\", "                            \
    "\"ReseedRandomDevRequest\",\n"                                                                          \
    "  \"ResizeVolumeRequest\", \"ResumeContainerRequest\", \"SetGuestDateTimeRequest\", "                   \
    "\"SignalProcessRequest\",\n"                                                                            \
    "  \"StartContainerRequest\", \"StatsContainerRequest\", \"TtyWinResizeRequest\", "                      \
    "\"UpdateContainerRequest\",\n"                                                                          \
    "  \"UpdateInterfaceRequest\", \"UpdateRoutesRequest\", \"VolumeStatsRequest\", "                        \
    "\"WaitProcessRequest\",\n"                                                                              \
    "  \"WriteStreamRequest\"]\n"

static const struct {
    const char *toml, *want;
} toml_valid_cases[] = {
    {"", "allowlist=[]"},
    {"# all defaults\n", "allowlist=[]"},
    {"debug_console = true\ndev_mode = true\nlog_level = \"debug\"\n"
     "hotplug_timeout = { secs = 7, nanos = 0 }\ndebug_console_vport = 1026\nlog_vport = 1025\n"
     "container_pipe_size = 1048576\nserver_addr = \"vsock://-1:2048\"\nunified_cgroup_hierarchy = true\n"
     "tracing = true\n[endpoints]\nallowed = [\"CreateContainerRequest\", \"StartContainerRequest\"]\n",
     "log=debug addr=vsock://-1:2048 console console_vport=1026 log_vport=1025 devmode hotplug_ms=7000 "
     "pipe=1048576 unified trace allowlist=[CreateContainerRequest,StartContainerRequest]"},
    {"debug_console = false\ntracing = false\nlog_level = \"info\"", "allowlist=[]"},
    {"log_level = \"warning\"", "log=warn allowlist=[]"},
    {"log_level = 'trace'", "log=trace allowlist=[]"},
    {"hotplug_timeout = 5", "hotplug_ms=5000 allowlist=[]"},
    {"hotplug_timeout = 0", "hotplug_ms=0 allowlist=[]"},
    {"hotplug_timeout = {secs = 0, nanos = 1}", "hotplug_ms=1 allowlist=[]"},
    {"hotplug_timeout = {secs = 1, nanos = 500_000_000}", "hotplug_ms=1500 allowlist=[]"},
    {"hotplug_timeout = {secs = 2}", "hotplug_ms=2000 allowlist=[]"},
    {"[hotplug_timeout]\nsecs = 0x10\nnanos = 0", "hotplug_ms=16000 allowlist=[]"},
    {"debug_console_vport = 0\nlog_vport = 0\ncontainer_pipe_size = 0", "allowlist=[]"},
    /* unknown keys are warned about and ignored */
    {"foo = 1\n[bar]\nx = 2\n[endpoints]\ndenied = []", "allowlist=[]"},
    /* endpoint lists */
    {"[endpoints]\nallowed = []", "allowlist=[]"},
    {"endpoints.allowed = [\"CreateContainerRequest\"]", "allowlist=[CreateContainerRequest]"},
    {"endpoints = { allowed = [\"ReadStreamRequest\"] }", "allowlist=[ReadStreamRequest]"},
    {"[endpoints]\nallowed = [\"WaitProcessRequest\", \"WaitProcessRequest\", 'ExecProcessRequest',]",
     "allowlist=[WaitProcessRequest,ExecProcessRequest]"},
    {"[endpoints]\nallowed = [\"FooRequest\", \"_private9\"]", "allowlist=[FooRequest,_private9]"},
};

TEST(toml_valid_configs)
{
    for (size_t i = 0; i < sizeof(toml_valid_cases) / sizeof(toml_valid_cases[0]); i++) {
        struct agent_config c;
        ka_err e = {0};
        config_init(&c);
        int r = config_parse_toml(&c, toml_valid_cases[i].toml, "c.toml", &e);
        if (r < 0) {
            show_input(toml_valid_cases[i].toml);
            printf("#   error %s\n", e.msg);
        }
        CHECK(r == 0 && summary_is(&c, toml_valid_cases[i].toml, toml_valid_cases[i].want));
        config_free(&c);
    }
}

static const struct {
    const char *toml, *want;
} toml_invalid_cases[] = {
    {"debug_console = 1", "c.toml:1: debug_console: expected boolean, found integer"},
    {"\ndev_mode = \"true\"", "c.toml:2: dev_mode: expected boolean, found string"},
    {"tracing = 1", "c.toml:1: tracing: expected boolean, found integer"},
    {"unified_cgroup_hierarchy = \"yes\"",
     "c.toml:1: unified_cgroup_hierarchy: expected boolean, found string"},
    {"log_level = 1", "c.toml:1: log_level: expected string, found integer"},
    {"log_level = \"foo\"", "c.toml:1: invalid log_level value \"foo\": " LEVELS},
    {"server_addr = \"\"", "c.toml:1: invalid server_addr value \"\": must not be empty"},
    {"server_addr = [\"vsock://-1:1024\"]", "c.toml:1: server_addr: expected string, found array"},
    {"debug_console_vport = -1", "c.toml:1: debug_console_vport = -1: must be between 0 and 2147483647"},
    {"log_vport = 4294967296", "c.toml:1: log_vport = 4294967296: must be between 0 and 2147483647"},
    {"log_vport = \"1025\"", "c.toml:1: log_vport: expected integer, found string"},
    {"container_pipe_size = -5", "c.toml:1: container_pipe_size = -5: must be between 0 and 2147483647"},
    {"container_pipe_size = true", "c.toml:1: container_pipe_size: expected integer, found boolean"},
    {"hotplug_timeout = \"3s\"",
     "c.toml:1: hotplug_timeout: expected integer or table {secs, nanos}, found string"},
    {"hotplug_timeout = -1", "c.toml:1: hotplug_timeout = -1: must be between 0 and"},
    {"hotplug_timeout = {nanos = 5}", "c.toml:1: hotplug_timeout: missing field secs"},
    {"hotplug_timeout = {secs = 1, millis = 5}", "c.toml:1: hotplug_timeout: unknown field millis"},
    {"hotplug_timeout = {secs = 1, nanos = 1000000000}",
     "c.toml:1: hotplug_timeout.nanos = 1000000000: must be between 0 and 999999999"},
    {"hotplug_timeout = {secs = 9223372036854775807}",
     "c.toml:1: hotplug_timeout.secs = 9223372036854775807"},
    {"[hotplug_timeout]\nsecs = \"x\"", "c.toml:2: hotplug_timeout.secs: expected integer, found string"},
    {"endpoints = 1", "c.toml:1: endpoints: expected table, found integer"},
    {"[endpoints]\nallowed = \"CreateContainerRequest\"",
     "c.toml:2: endpoints.allowed: expected array, found string"},
    {"[endpoints]\nallowed = [\"CreateContainerRequest\", 1]",
     "c.toml:2: endpoints.allowed: expected string, found integer"},
    {"[endpoints]\n\nallowed = [\"Create Container\"]",
     "c.toml:3: endpoints.allowed: invalid request name \"Create Container\""},
    {"[endpoints]\nallowed = [\"\"]", "c.toml:2: endpoints.allowed: invalid request name \"\""},
    {"[endpoints]\nallowed = [\"9Request\"]", "invalid request name \"9Request\""},
    {"[endpoints]\nallowed = [\"a/b\"]", "invalid request name \"a/b\""},
    /* TOML errors come through with origin and line */
    {"debug_console = yes", "c.toml:1: invalid value yes (strings must be quoted)"},
    {"log_level = \"debug\"\nlog_level = \"info\"", "c.toml:2: duplicate key log_level"},
    {"[endpoints]\nallowed = [\"CreateContainerRequest\"\n", "unterminated array (opened on line 2)"},
};

TEST(toml_invalid_configs)
{
    for (size_t i = 0; i < sizeof(toml_invalid_cases) / sizeof(toml_invalid_cases[0]); i++) {
        struct agent_config c;
        ka_err e = {0};
        config_init(&c);
        int r = config_parse_toml(&c, toml_invalid_cases[i].toml, "c.toml", &e);
        CHECK(error_is(r, &e, toml_invalid_cases[i].toml, toml_invalid_cases[i].want));
        config_free(&c); /* also after a partial update: no leak */
    }
}

TEST(toml_replaces_allowlist)
{
    struct agent_config c;
    ka_err e = {0};
    config_init(&c);
    CHECK_INT(config_parse_toml(&c, "[endpoints]\nallowed = [\"CopyFileRequest\"]", "a", &e), 0);
    CHECK_INT(config_parse_toml(&c, "[endpoints]\nallowed = [\"AddSwapRequest\"]", "b", &e), 0);
    CHECK(summary_is(&c, "(two files)", "allowlist=[AddSwapRequest]"));
    CHECK_INT(config_parse_toml(&c, "", "c", &e), 0);
    CHECK(summary_is(&c, "(empty file)", "allowlist=[]"));
    config_free(&c);
}

/* ---- endpoint allowlist ---- */

TEST(allowlist_lookups)
{
    static const char *const omitted_by_sample[] = {"GetIPTablesRequest", "SetIPTablesRequest",
                                                    "UpdateEphemeralMountsRequest",
                                                    "RemoveStaleVirtiofsShareMountsRequest"};
    /* the distinct request names of agent.proto (ReadStdout and ReadStderr share ReadStreamRequest) */
    const char *proto_requests[64];
    size_t n = 0;
    for (unsigned i = 0; i < grpc__agent_service__descriptor.n_methods; i++) {
        const char *name = grpc__agent_service__descriptor.methods[i].input->short_name;
        bool dup = false;
        for (size_t j = 0; j < n; j++)
            dup |= strcmp(proto_requests[j], name) == 0;
        if (!dup)
            proto_requests[n++] = name;
    }
    struct agent_config c;
    ka_err e = {0};
    CHECK_INT(n, 36);

    /* command-line mode: everything allowed */
    config_init(&c);
    for (size_t i = 0; i < n; i++)
        CHECK(config_endpoint_allowed(&c, proto_requests[i]));
    CHECK(config_endpoint_allowed(&c, "AnythingRequest"));
    config_free(&c);

    /* a config file without [endpoints]: everything blocked */
    config_init(&c);
    CHECK_INT(config_parse_toml(&c, "debug_console = true\n", "c.toml", &e), 0);
    CHECK(c.allowlist_enabled && c.n_allowed == 0);
    for (size_t i = 0; i < n; i++)
        CHECK(!config_endpoint_allowed(&c, proto_requests[i]));
    CHECK(!config_endpoint_allowed(&c, NULL));
    config_free(&c);

    /* the upstream all-endpoints sample */
    config_init(&c);
    CHECK_INT(config_parse_toml(&c, SAMPLE_ALL_ENDPOINTS, "sample.toml", &e), 0);
    CHECK_INT(c.n_allowed, 33);
    size_t allowed = 0;
    for (size_t i = 0; i < n; i++)
        allowed += config_endpoint_allowed(&c, proto_requests[i]);
    CHECK_INT(allowed, 32);
    for (size_t i = 0; i < sizeof(omitted_by_sample) / sizeof(omitted_by_sample[0]); i++)
        CHECK(!config_endpoint_allowed(&c, omitted_by_sample[i]));
    CHECK(config_endpoint_allowed(&c, "PullImageRequest"));
    CHECK(!config_endpoint_allowed(&c, "createcontainerrequest"));
    CHECK(!config_endpoint_allowed(&c, "CreateContainer"));
    CHECK(!config_endpoint_allowed(&c, ""));
    config_free(&c);
}

/* ---- config_load: the order of sources ---- */

static int load(struct agent_config *c, const struct config_sources *src, ka_err *e)
{
    int r = config_load(c, src, e);
    if (r < 0)
        printf("# config_load: %s\n", e->msg);
    return r;
}

TEST(load_cmdline_then_env)
{
    struct agent_config c;
    ka_err e = {0};
    clear_env();
    struct config_sources src = {.cmdline = "agent.log=debug agent.server_addr=vsock://2:5 agent.trace"};
    CHECK_INT(load(&c, &src, &e), 0);
    CHECK(summary_is(&c, src.cmdline, "log=debug addr=vsock://2:5 trace"));
    config_free(&c);

    setenv("KATA_AGENT_LOG_LEVEL", "trace", 1);
    setenv("KATA_AGENT_SERVER_ADDR", "unix:///e", 1);
    setenv("KATA_AGENT_TRACING", "false", 1);
    CHECK_INT(load(&c, &src, &e), 0); /* use_env off: the environment is not read */
    CHECK(summary_is(&c, src.cmdline, "log=debug addr=vsock://2:5 trace"));
    config_free(&c);

    src.use_env = true; /* env overrides the command line */
    CHECK_INT(load(&c, &src, &e), 0);
    CHECK(summary_is(&c, src.cmdline, "log=trace addr=unix:///e"));
    CHECK(config_endpoint_allowed(&c, "CreateContainerRequest"));
    config_free(&c);

    src.flag_log_level = "error"; /* flags override everything */
    src.flag_server_addr = "vsock://9:9";
    CHECK_INT(load(&c, &src, &e), 0);
    CHECK(summary_is(&c, src.cmdline, "log=error addr=vsock://9:9"));
    config_free(&c);

    struct config_sources none = {.use_env = false};
    CHECK_INT(load(&c, &none, &e), 0);
    CHECK(summary_is(&c, "(nothing)", "defaults"));
    config_free(&c);
    clear_env();
}

TEST(load_file_replaces_cmdline_and_env)
{
    static const char toml[] = "log_level = \"warn\"\nserver_addr = \"vsock://-1:2048\"\n"
                               "[endpoints]\nallowed = [\"CreateContainerRequest\"]\n";
    char path[32], cmdline[128], want[160];
    struct agent_config c;
    ka_err e = {0};
    write_temp(path, toml, sizeof(toml) - 1);
    clear_env();
    setenv("KATA_AGENT_LOG_LEVEL", "trace", 1);
    setenv("KATA_AGENT_TRACING", "1", 1);

    /* agent.config_file= on the command line: other agent.* tokens (even invalid ones) and env ignored */
    snprintf(cmdline, sizeof(cmdline), "agent.log=debug agent.devmode agent.config_file=%s agent.log=foo",
             path);
    snprintf(want, sizeof(want), "log=warn addr=vsock://-1:2048 file=%s allowlist=[CreateContainerRequest]",
             path);
    struct config_sources src = {.cmdline = cmdline, .use_env = true};
    CHECK_INT(load(&c, &src, &e), 0);
    CHECK(summary_is(&c, cmdline, want));
    CHECK(config_endpoint_allowed(&c, "CreateContainerRequest"));
    CHECK(!config_endpoint_allowed(&c, "StartContainerRequest"));
    config_free(&c);

    /* --config wins over agent.config_file= (which would fail to read) */
    struct config_sources flag = {.cmdline = "agent.config_file=/nonexistent/agent.toml agent.log=debug",
                                  .config_file = path,
                                  .use_env = true};
    CHECK_INT(load(&c, &flag, &e), 0);
    CHECK(summary_is(&c, "--config", want));
    config_free(&c);

    /* flags still override the file */
    flag.flag_server_addr = "vsock://9:9";
    flag.flag_log_level = "critical";
    snprintf(want, sizeof(want), "log=critical addr=vsock://9:9 file=%s allowlist=[CreateContainerRequest]",
             path);
    CHECK_INT(load(&c, &flag, &e), 0);
    CHECK(summary_is(&c, "--config + flags", want));
    config_free(&c);

    unlink(path);
    clear_env();
}

TEST(load_file_without_endpoints_blocks_everything)
{
    static const char toml[] = "debug_console = true\n";
    char path[32], want[96];
    struct agent_config c;
    ka_err e = {0};
    write_temp(path, toml, sizeof(toml) - 1);
    struct config_sources src = {.config_file = path};
    CHECK_INT(load(&c, &src, &e), 0);
    snprintf(want, sizeof(want), "console file=%s allowlist=[]", path);
    CHECK(summary_is(&c, path, want));
    CHECK(!config_endpoint_allowed(&c, "CreateSandboxRequest"));
    CHECK(!config_endpoint_allowed(&c, "DestroySandboxRequest"));
    config_free(&c);
    unlink(path);
}

TEST(load_errors)
{
    struct agent_config c;
    ka_err e = {0};
    char path[32], cmdline[64], want[128];

    struct config_sources missing = {.config_file = "/nonexistent/agent.toml"};
    CHECK(error_is(config_load(&c, &missing, &e), &e, "missing",
                   "read config file /nonexistent/agent.toml: No such"));
    CHECK(!c.server_addr); /* released on failure */
    config_free(&c);

    struct config_sources missing_cmdline = {.cmdline = "agent.config_file=/nonexistent/x.toml"};
    CHECK(error_is(config_load(&c, &missing_cmdline, &e), &e, "cmdline",
                   "read config file /nonexistent/x.toml"));

    struct config_sources dir = {.config_file = "/tmp"};
    CHECK(error_is(config_load(&c, &dir, &e), &e, "dir", "config file /tmp is not a regular file"));

    struct config_sources empty = {.config_file = ""};
    CHECK(
        error_is(config_load(&c, &empty, &e), &e, "empty", "invalid --config value \"\": must not be empty"));

    struct config_sources empty_cmdline = {.cmdline = "agent.config_file="};
    CHECK(error_is(config_load(&c, &empty_cmdline, &e), &e, "empty", "invalid agent.config_file value \"\""));

    struct config_sources bad_cmdline = {.cmdline = "agent.hotplug_timeout=soon"};
    CHECK(error_is(config_load(&c, &bad_cmdline, &e), &e, "cmdline",
                   "invalid agent.hotplug_timeout value \"soon\""));

    struct config_sources bad_flag = {.flag_log_level = "loud"};
    CHECK(
        error_is(config_load(&c, &bad_flag, &e), &e, "flag", "invalid --log-level value \"loud\": " LEVELS));
    struct config_sources empty_flag = {.flag_server_addr = ""};
    CHECK(error_is(config_load(&c, &empty_flag, &e), &e, "flag", "invalid --server-addr value \"\""));

    clear_env();
    setenv("KATA_AGENT_LOG_LEVEL", "loud", 1);
    struct config_sources bad_env = {.use_env = true};
    CHECK(error_is(config_load(&c, &bad_env, &e), &e, "env", "invalid KATA_AGENT_LOG_LEVEL value \"loud\""));
    clear_env();

    static const char nul[] = "debug_console = true\n\0tracing = true\n";
    write_temp(path, nul, sizeof(nul) - 1);
    struct config_sources with_nul = {.config_file = path};
    snprintf(want, sizeof(want), "config file %s contains a NUL byte", path);
    CHECK(error_is(config_load(&c, &with_nul, &e), &e, path, want));
    unlink(path);

    write_temp(path, "", 0);
    if (truncate(path, 2 * 1024 * 1024) < 0)
        abort();
    struct config_sources big = {.config_file = path};
    snprintf(want, sizeof(want), "config file %s is too large (2097152 bytes, max 1048576)", path);
    CHECK(error_is(config_load(&c, &big, &e), &e, path, want));
    unlink(path);

    CHECK_INT(config_load(&c, NULL, &e), 0);
    CHECK(summary_is(&c, "(NULL sources)", "defaults"));
    config_free(&c);

    static const char bad_toml[] = "# x\nlog_level = \"loud\"\n";
    write_temp(path, bad_toml, sizeof(bad_toml) - 1);
    snprintf(cmdline, sizeof(cmdline), "agent.config_file=%s", path);
    struct config_sources bad_file = {.cmdline = cmdline};
    snprintf(want, sizeof(want), "%s:2: invalid log_level value \"loud\"", path);
    CHECK(error_is(config_load(&c, &bad_file, &e), &e, path, want));
    unlink(path);
    config_free(&c);
}

/* ---- JSON ---- */

TEST(to_json)
{
    struct agent_config c;
    ka_err e = {0};
    config_init(&c);
    char *json = config_to_json(&c);
    CHECK_STR(json,
              "{\"log_level\":\"info\",\"server_addr\":\"vsock://-1:1024\",\"debug_console\":false,"
              "\"debug_console_vport\":0,\"log_vport\":0,\"dev_mode\":false,\"hotplug_timeout_ms\":3000,"
              "\"container_pipe_size\":0,\"unified_cgroup_hierarchy\":false,\"tracing\":false,"
              "\"config_file\":null,\"allowlist_enabled\":false,\"allowed\":[]}");
    free(json);

    CHECK_INT(
        config_parse_toml(&c,
                          "log_level = \"debug\"\ndebug_console = true\ndebug_console_vport = 1026\n"
                          "log_vport = 1025\ndev_mode = true\nhotplug_timeout = 10\n"
                          "container_pipe_size = 4096\nunified_cgroup_hierarchy = true\ntracing = true\n"
                          "server_addr = \"a\\\"b\\\\c\\n\\u0001\\t\xc3\xa9\\u007f\"\n"
                          "[endpoints]\nallowed = [\"CopyFileRequest\", \"AddSwapRequest\"]\n",
                          "c.toml", &e),
        0);
    c.config_file = strdup("/etc/k\xff.toml"); /* invalid UTF-8 from a command line */
    json = config_to_json(&c);
    CHECK_STR(json,
              "{\"log_level\":\"debug\",\"server_addr\":\"a\\\"b\\\\c\\n\\u0001\\t\xc3\xa9\\u007f\","
              "\"debug_console\":true,\"debug_console_vport\":1026,\"log_vport\":1025,\"dev_mode\":true,"
              "\"hotplug_timeout_ms\":10000,\"container_pipe_size\":4096,\"unified_cgroup_hierarchy\":true,"
              "\"tracing\":true,\"config_file\":\"/etc/k\\ufffd.toml\",\"allowlist_enabled\":true,"
              "\"allowed\":[\"CopyFileRequest\",\"AddSwapRequest\"]}");
    free(json);
    config_free(&c);
}

RUN(defaults, cmdline_valid, cmdline_invalid, cmdline_null_and_long, env_overrides, env_invalid_values,
    toml_valid_configs, toml_invalid_configs, toml_replaces_allowlist, allowlist_lookups,
    load_cmdline_then_env, load_file_replaces_cmdline_and_env, load_file_without_endpoints_blocks_everything,
    load_errors, to_json)
