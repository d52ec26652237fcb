/* Agent configuration: defaults, the kernel command line (agent.* options), the environment, the TOML
 * config file and command-line flags, combined in the documented order (docs/CONFIGURATION in README):
 *   1. defaults;
 *   2. if a config file is named (--config FILE, else agent.config_file= on the kernel command line) it is
 *      the only source besides flags: every other agent.* option and the KATA_AGENT_* environment are
 *      ignored, and the [endpoints] allowlist is enforced (no [endpoints] section blocks every
 *      AgentService method), as upstream;
 *   3. otherwise the kernel command line, then KATA_AGENT_SERVER_ADDR / KATA_AGENT_LOG_LEVEL /
 *      KATA_AGENT_TRACING; every endpoint is allowed;
 *   4. command-line flags (--server-addr, --log-level) override everything.
 * Any invalid value stops startup with an error naming the option. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../util/err.h"

#define KA_DEFAULT_SERVER_ADDR        "vsock://-1:1024"
#define KA_DEFAULT_HOTPLUG_TIMEOUT_MS 3000

struct agent_config {
    int log_level;               /* enum ka_log_level, default info */
    char *server_addr;           /* malloc'd; default KA_DEFAULT_SERVER_ADDR */
    bool debug_console;          /* agent.debug_console */
    int32_t debug_console_vport; /* 0 = serial console */
    int32_t log_vport;           /* 0 = stdout */
    bool dev_mode;               /* agent.devmode */
    uint64_t hotplug_timeout_ms; /* agent.hotplug_timeout (seconds on the cmdline) */
    int64_t container_pipe_size; /* 0 = kernel default */
    bool unified_cgroup_hierarchy;
    bool tracing;           /* agent.trace */
    char *config_file;      /* malloc'd path of the TOML file used, NULL if none */
    bool allowlist_enabled; /* true when a config file is used */
    char **allowed;         /* request message names, e.g. "CreateContainerRequest" */
    size_t n_allowed;
};

/* Where configuration comes from; NULL members mean "not given". */
struct config_sources {
    const char *cmdline;          /* contents of the kernel command line (/proc/cmdline) */
    const char *config_file;      /* --config FILE */
    const char *flag_server_addr; /* --server-addr */
    const char *flag_log_level;   /* --log-level */
    bool use_env;                 /* read KATA_AGENT_* (true for the agent; tests may turn it off) */
};

void config_init(struct agent_config *cfg); /* defaults */
void config_free(struct agent_config *cfg);
/* Build the configuration from all sources in the order above. 0, or -1 with e naming the bad option. */
int config_load(struct agent_config *cfg, const struct config_sources *src, ka_err *e);
/* Individual steps, also used by the unit tests. */
int config_parse_cmdline(struct agent_config *cfg, const char *cmdline, ka_err *e);
int config_parse_toml(struct agent_config *cfg, const char *text, const char *origin, ka_err *e);
int config_apply_env(struct agent_config *cfg, ka_err *e);
/* Is the request message name (e.g. "CreateContainerRequest") allowed by the endpoint allowlist? */
bool config_endpoint_allowed(const struct agent_config *cfg, const char *request_name);
/* A JSON object describing the configuration, for the startup log line "config". malloc'd. */
char *config_to_json(const struct agent_config *cfg);
