/* Agent configuration: defaults, kernel command line, environment, TOML file and flags (order in config.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "agent.pb-c.h"
#include "../util/log.h"
#include "../util/toml.h"

#define LEVELS_WANTED   "want one of trace, debug, info, warn, error, critical"
#define BOOL_WANTED     "want true, false or an integer"
#define CONFIG_FILE_MAX (1024 * 1024)

/* Options of later upstream agents (confidential containers): accepted and ignored. */
static const char *const ignored_options[] = {
    "agent.cdh_api_timeout",
    "agent.https_proxy",
    "agent.no_proxy",
    "agent.guest_components_rest_api",
    "agent.guest_components_procs",
    "agent.image_registry_auth",
    "agent.enable_signature_verification",
    "agent.aa_kbc_params",
    "agent.rest_api",
};

static int oom(ka_err *e)
{
    return ka_fail(e, KA_RESOURCE_EXHAUSTED, "out of memory");
}

static int bad_value(ka_err *e, const char *name, const char *value, const char *want)
{
    return ka_fail(e, KA_INVALID_ARGUMENT, "invalid %s value \"%s\": %s", name, value, want);
}

static int set_string(char **dst, const char *value, ka_err *e)
{
    char *copy = strdup(value);
    if (!copy)
        return oom(e);
    free(*dst);
    *dst = copy;
    return 0;
}

/* ---- number and boolean syntax (as Rust's FromStr: optional sign, decimal digits only) ---- */

/* [+]digits; 0 or -1 (malformed or above UINT64_MAX). */
static int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '+')
        s++;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* [+-]digits within [min, max]; 0 or -1. */
static int parse_i64_range(const char *s, int64_t min, int64_t max, int64_t *out)
{
    bool neg = *s == '-';
    uint64_t u;
    if (parse_u64(s + neg, &u) < 0 || (neg && s[1] == '+'))
        return -1;
    if (neg) {
        if (u > (uint64_t)INT64_MAX + 1)
            return -1;
        *out = u == 0 ? 0 : -(int64_t)(u - 1) - 1;
    } else {
        if (u > (uint64_t)INT64_MAX)
            return -1;
        *out = (int64_t)u;
    }
    return *out < min || *out > max ? -1 : 0;
}

/* "true", "false" or an unsigned integer (non-zero = true), as upstream's get_bool_value minus its
 * "anything else is false" fallback. */
static int parse_bool(const char *s, bool *out)
{
    uint64_t u;
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
        *out = s[0] == 't';
        return 0;
    }
    if (parse_u64(s, &u) < 0)
        return -1;
    *out = u != 0;
    return 0;
}

/* ---- option values shared by the command line, the environment and flags ---- */

static int opt_log(struct agent_config *cfg, const char *name, const char *value, ka_err *e)
{
    return ka_log_parse_level(value, &cfg->log_level) < 0 ? bad_value(e, name, value, LEVELS_WANTED) : 0;
}

static int opt_server_addr(struct agent_config *cfg, const char *name, const char *value, ka_err *e)
{
    if (!*value)
        return bad_value(e, name, value, "must not be empty");
    return set_string(&cfg->server_addr, value, e);
}

static int opt_trace(struct agent_config *cfg, const char *name, const char *value, ka_err *e)
{
    return parse_bool(value, &cfg->tracing) < 0 ? bad_value(e, name, value, BOOL_WANTED) : 0;
}

static int opt_unified_cgroup_hierarchy(struct agent_config *cfg, const char *name, const char *value,
                                        ka_err *e)
{
    return parse_bool(value, &cfg->unified_cgroup_hierarchy) < 0 ? bad_value(e, name, value, BOOL_WANTED) : 0;
}

/* Seconds; 0 keeps the current value. */
static int opt_hotplug_timeout(struct agent_config *cfg, const char *name, const char *value, ka_err *e)
{
    uint64_t secs;
    if (parse_u64(value, &secs) < 0)
        return bad_value(e, name, value, "want a number of seconds");
    if (secs > UINT64_MAX / 1000)
        return bad_value(e, name, value, "too large");
    if (secs > 0)
        cfg->hotplug_timeout_ms = secs * 1000;
    return 0;
}

/* A vsock port (i32); <= 0 keeps the current value. */
static int set_vport(int32_t *dst, const char *name, const char *value, ka_err *e)
{
    int64_t port;
    if (parse_i64_range(value, INT32_MIN, INT32_MAX, &port) < 0)
        return bad_value(e, name, value, "want a 32-bit integer");
    if (port > 0)
        *dst = (int32_t)port;
    return 0;
}

static int opt_debug_console_vport(struct agent_config *cfg, const char *name, const char *value, ka_err *e)
{
    return set_vport(&cfg->debug_console_vport, name, value, e);
}

static int opt_log_vport(struct agent_config *cfg, const char *name, const char *value, ka_err *e)
{
    return set_vport(&cfg->log_vport, name, value, e);
}

/* Bytes for F_SETPIPE_SZ: an int there (and an i32 upstream). */
static int opt_container_pipe_size(struct agent_config *cfg, const char *name, const char *value, ka_err *e)
{
    int64_t size;
    if (parse_i64_range(value, INT64_MIN, INT64_MAX, &size) < 0)
        return bad_value(e, name, value, "want an integer");
    if (size < 0)
        return bad_value(e, name, value, "must not be negative");
    if (size > INT32_MAX)
        return bad_value(e, name, value, "too large");
    cfg->container_pipe_size = size;
    return 0;
}

/* Validated and recorded by cmdline_config_file() (the first one counts, as upstream). */
static int opt_config_file(struct agent_config *cfg, const char *name, const char *value, ka_err *e)
{
    (void)cfg, (void)name, (void)value, (void)e;
    return 0;
}

/* ---- kernel command line ---- */

typedef int (*option_fn)(struct agent_config *cfg, const char *name, const char *value, ka_err *e);

static const struct value_option {
    const char *name;
    option_fn set;
} value_options[] = {
    {"agent.config_file", opt_config_file},
    {"agent.trace", opt_trace},
    {"agent.log", opt_log},
    {"agent.server_addr", opt_server_addr},
    {"agent.hotplug_timeout", opt_hotplug_timeout},
    {"agent.debug_console_vport", opt_debug_console_vport},
    {"agent.log_vport", opt_log_vport},
    {"agent.container_pipe_size", opt_container_pipe_size},
    {"agent.unified_cgroup_hierarchy", opt_unified_cgroup_hierarchy},
};

static const struct value_option *find_value_option(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(value_options); i++)
        if (strcmp(value_options[i].name, name) == 0)
            return &value_options[i];
    return NULL;
}

/* The exact-token flags. */
static bool *flag_field(struct agent_config *cfg, const char *name)
{
    if (strcmp(name, "agent.debug_console") == 0)
        return &cfg->debug_console;
    if (strcmp(name, "agent.devmode") == 0)
        return &cfg->dev_mode;
    if (strcmp(name, "agent.trace") == 0) /* bare form, for Kata 1.x compatibility */
        return &cfg->tracing;
    return NULL;
}

static bool is_ignored_option(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(ignored_options); i++)
        if (strcmp(ignored_options[i], name) == 0)
            return true;
    return false;
}

/* Rust's split_ascii_whitespace: space, tab, newline, form feed, carriage return. */
static bool is_ascii_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r';
}

/* The next whitespace-separated token of *cursor as a malloc'd string; NULL at the end (or on ENOMEM,
 * reported through *oom_out). */
static char *next_token(const char **cursor, bool *oom_out)
{
    const char *s = *cursor;
    while (*s && is_ascii_space(*s))
        s++;
    const char *start = s;
    while (*s && !is_ascii_space(*s))
        s++;
    *cursor = s;
    if (s == start)
        return NULL;
    char *tok = strndup(start, (size_t)(s - start));
    *oom_out = !tok;
    return tok;
}

/* One agent.* token "name" or "name=value" (tok is modified). */
static int parse_agent_token(struct agent_config *cfg, char *tok, ka_err *e)
{
    char *eq = strchr(tok, '=');
    if (eq)
        *eq = '\0';
    const struct value_option *opt = find_value_option(tok);
    bool *flag = flag_field(cfg, tok);
    if (eq && opt)
        return opt->set(cfg, opt->name, eq + 1, e);
    if (!eq && flag) {
        *flag = true;
        return 0;
    }
    if (opt)
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid %s: want %s=<value>", tok, tok);
    if (is_ignored_option(tok)) {
        log_debug("config", "kernel command line option %s is not supported; ignored", tok);
        return 0;
    }
    if (flag)
        log_warn("config", "kernel command line flag %s takes no value; %s=%s ignored", tok, tok, eq + 1);
    else
        log_warn("config", "unknown kernel command line option %s%s%s ignored", tok, eq ? "=" : "",
                 eq ? eq + 1 : "");
    return 0;
}

/* The first agent.config_file=<path> of the command line (malloc'd into *path), or *path = NULL. */
static int cmdline_config_file(const char *cmdline, char **path, ka_err *e)
{
    static const char prefix[] = "agent.config_file=";
    bool no_mem = false;
    char *tok;
    *path = NULL;
    while ((tok = next_token(&cmdline, &no_mem))) {
        if (strncmp(tok, prefix, sizeof(prefix) - 1) == 0) {
            if (!tok[sizeof(prefix) - 1]) {
                free(tok);
                return bad_value(e, "agent.config_file", "", "must not be empty");
            }
            *path = strdup(tok + sizeof(prefix) - 1);
            free(tok);
            return *path ? 0 : oom(e);
        }
        free(tok);
    }
    return no_mem ? oom(e) : 0;
}

int config_parse_cmdline(struct agent_config *cfg, const char *cmdline, ka_err *e)
{
    char *path;
    bool no_mem = false;
    if (!cmdline)
        return 0;
    if (cmdline_config_file(cmdline, &path, e) < 0)
        return -1;
    if (path) {
        free(cfg->config_file);
        cfg->config_file = path;
    }
    char *tok;
    while ((tok = next_token(&cmdline, &no_mem))) {
        int r = strncmp(tok, "agent.", 6) == 0 ? parse_agent_token(cfg, tok, e) : 0;
        free(tok);
        if (r < 0)
            return -1;
    }
    return no_mem ? oom(e) : 0;
}

/* ---- environment ---- */

int config_apply_env(struct agent_config *cfg, ka_err *e)
{
    const char *v;
    if ((v = getenv("KATA_AGENT_SERVER_ADDR")) && opt_server_addr(cfg, "KATA_AGENT_SERVER_ADDR", v, e) < 0)
        return -1;
    if ((v = getenv("KATA_AGENT_LOG_LEVEL")) && opt_log(cfg, "KATA_AGENT_LOG_LEVEL", v, e) < 0)
        return -1;
    if ((v = getenv("KATA_AGENT_TRACING")) && opt_trace(cfg, "KATA_AGENT_TRACING", v, e) < 0)
        return -1;
    return 0;
}

/* ---- TOML config file ---- */

enum toml_kind { K_BOOL, K_PORT, K_PIPE_SIZE, K_LEVEL, K_ADDR, K_DURATION, K_ENDPOINTS };

static const struct toml_key {
    const char *key;
    enum toml_kind kind;
    size_t offset;
} toml_keys[] = {
    {"debug_console", K_BOOL, offsetof(struct agent_config, debug_console)},
    {"dev_mode", K_BOOL, offsetof(struct agent_config, dev_mode)},
    {"log_level", K_LEVEL, offsetof(struct agent_config, log_level)},
    {"hotplug_timeout", K_DURATION, offsetof(struct agent_config, hotplug_timeout_ms)},
    {"debug_console_vport", K_PORT, offsetof(struct agent_config, debug_console_vport)},
    {"log_vport", K_PORT, offsetof(struct agent_config, log_vport)},
    {"container_pipe_size", K_PIPE_SIZE, offsetof(struct agent_config, container_pipe_size)},
    {"server_addr", K_ADDR, offsetof(struct agent_config, server_addr)},
    {"unified_cgroup_hierarchy", K_BOOL, offsetof(struct agent_config, unified_cgroup_hierarchy)},
    {"tracing", K_BOOL, offsetof(struct agent_config, tracing)},
    {"endpoints", K_ENDPOINTS, 0},
};

/* name is the key as written in the file (e.g. hotplug_timeout.secs), for messages. */
static int toml_want(const struct toml_kv *kv, const char *name, enum toml_type type, const char *origin,
                     ka_err *e)
{
    if (kv->value->type == type)
        return 0;
    return ka_fail(e, KA_INVALID_ARGUMENT, "%s:%d: %s: expected %s, found %s", origin, kv->line, name,
                   toml_type_name(type), toml_type_name(kv->value->type));
}

static int toml_int_range(const struct toml_kv *kv, const char *name, int64_t min, int64_t max, int64_t *out,
                          const char *origin, ka_err *e)
{
    if (toml_want(kv, name, TOML_INT, origin, e) < 0)
        return -1;
    if (kv->value->u.i < min || kv->value->u.i > max)
        return ka_fail(e, KA_INVALID_ARGUMENT, "%s:%d: %s = %lld: must be between %lld and %lld", origin,
                       kv->line, name, (long long)kv->value->u.i, (long long)min, (long long)max);
    *out = kv->value->u.i;
    return 0;
}

#define MAX_SECS (INT64_MAX / 1000 - 1) /* secs * 1000 + 1000 fits */

/* serde's Duration { secs = N, nanos = M } (nanos optional here); rounded up to milliseconds. */
static int toml_duration_table(const struct toml_kv *kv, uint64_t *ms, const char *origin, ka_err *e)
{
    int64_t secs = -1, nanos = 0;
    for (size_t i = 0; i < kv->value->u.tab.n; i++) {
        const struct toml_kv *f = &kv->value->u.tab.kvs[i];
        int r;
        if (strcmp(f->key, "secs") == 0)
            r = toml_int_range(f, "hotplug_timeout.secs", 0, MAX_SECS, &secs, origin, e);
        else if (strcmp(f->key, "nanos") == 0)
            r = toml_int_range(f, "hotplug_timeout.nanos", 0, 999999999, &nanos, origin, e);
        else
            r = ka_fail(e, KA_INVALID_ARGUMENT,
                        "%s:%d: hotplug_timeout: unknown field %s (want secs and nanos)", origin, f->line,
                        f->key);
        if (r < 0)
            return -1;
    }
    if (secs < 0)
        return ka_fail(e, KA_INVALID_ARGUMENT, "%s:%d: hotplug_timeout: missing field secs", origin,
                       kv->line);
    *ms = (uint64_t)secs * 1000 + (uint64_t)(nanos + 999999) / 1000000;
    return 0;
}

/* The table form above, or a plain integer of seconds. */
static int toml_duration(const struct toml_kv *kv, uint64_t *ms, const char *origin, ka_err *e)
{
    int64_t secs;
    if (kv->value->type == TOML_TABLE)
        return toml_duration_table(kv, ms, origin, e);
    if (kv->value->type != TOML_INT)
        return ka_fail(e, KA_INVALID_ARGUMENT,
                       "%s:%d: hotplug_timeout: expected integer or table {secs, nanos}, found %s", origin,
                       kv->line, toml_type_name(kv->value->type));
    if (toml_int_range(kv, kv->key, 0, MAX_SECS, &secs, origin, e) < 0)
        return -1;
    *ms = (uint64_t)secs * 1000;
    return 0;
}

static bool is_identifier(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

/* A request message name of an AgentService method (from the generated service descriptor), or
 * PullImageRequest, which the upstream sample configuration lists although this proto has no such method. */
static bool is_known_request(const char *name)
{
    const ProtobufCServiceDescriptor *svc = &grpc__agent_service__descriptor;
    for (unsigned i = 0; i < svc->n_methods; i++)
        if (strcmp(svc->methods[i].input->short_name, name) == 0)
            return true;
    return strcmp(name, "PullImageRequest") == 0;
}

static void free_allowed(struct agent_config *cfg)
{
    for (size_t i = 0; i < cfg->n_allowed; i++)
        free(cfg->allowed[i]);
    free(cfg->allowed);
    cfg->allowed = NULL;
    cfg->n_allowed = 0;
}

/* endpoints.allowed = ["CreateContainerRequest", ...] (cfg->allowed has room for every item). */
static int toml_allowed(struct agent_config *cfg, const struct toml_kv *kv, const char *origin, ka_err *e)
{
    if (toml_want(kv, "endpoints.allowed", TOML_ARRAY, origin, e) < 0)
        return -1;
    free_allowed(cfg);
    cfg->allowed = calloc(kv->value->u.arr.n + 1, sizeof(*cfg->allowed));
    if (!cfg->allowed)
        return oom(e);
    for (size_t i = 0; i < kv->value->u.arr.n; i++) {
        const struct toml_value *item = kv->value->u.arr.items[i];
        if (item->type != TOML_STRING)
            return ka_fail(e, KA_INVALID_ARGUMENT, "%s:%d: endpoints.allowed: expected string, found %s",
                           origin, kv->line, toml_type_name(item->type));
        if (!is_identifier(item->u.s))
            return ka_fail(e, KA_INVALID_ARGUMENT, "%s:%d: endpoints.allowed: invalid request name \"%s\"",
                           origin, kv->line, item->u.s);
        if (!is_known_request(item->u.s))
            log_warn("config", "%s:%d: endpoints.allowed: %s is not a known request message name", origin,
                     kv->line, item->u.s);
        if (config_endpoint_allowed(cfg, item->u.s)) /* duplicate */
            continue;
        cfg->allowed[cfg->n_allowed] = strdup(item->u.s);
        if (!cfg->allowed[cfg->n_allowed])
            return oom(e);
        cfg->n_allowed++;
    }
    return 0;
}

static int toml_endpoints(struct agent_config *cfg, const struct toml_kv *kv, const char *origin, ka_err *e)
{
    if (toml_want(kv, kv->key, TOML_TABLE, origin, e) < 0)
        return -1;
    for (size_t i = 0; i < kv->value->u.tab.n; i++) {
        const struct toml_kv *f = &kv->value->u.tab.kvs[i];
        if (strcmp(f->key, "allowed") == 0) {
            if (toml_allowed(cfg, f, origin, e) < 0)
                return -1;
        } else {
            log_warn("config", "%s:%d: unknown key endpoints.%s ignored", origin, f->line, f->key);
        }
    }
    return 0;
}

static int toml_apply(struct agent_config *cfg, const struct toml_key *k, const struct toml_kv *kv,
                      const char *origin, ka_err *e)
{
    void *field = (char *)cfg + k->offset;
    int64_t i;
    switch (k->kind) {
    case K_BOOL:
        if (toml_want(kv, kv->key, TOML_BOOL, origin, e) < 0)
            return -1;
        *(bool *)field = kv->value->u.b;
        return 0;
    case K_PORT:
        if (toml_int_range(kv, kv->key, 0, INT32_MAX, &i, origin, e) < 0)
            return -1;
        *(int32_t *)field = (int32_t)i;
        return 0;
    case K_PIPE_SIZE:
        if (toml_int_range(kv, kv->key, 0, INT32_MAX, &i, origin, e) < 0)
            return -1;
        *(int64_t *)field = i;
        return 0;
    case K_LEVEL:
        if (toml_want(kv, kv->key, TOML_STRING, origin, e) < 0)
            return -1;
        if (opt_log(cfg, kv->key, kv->value->u.s, e) < 0)
            return ka_wrap(e, "%s:%d", origin, kv->line);
        return 0;
    case K_ADDR:
        if (toml_want(kv, kv->key, TOML_STRING, origin, e) < 0)
            return -1;
        if (opt_server_addr(cfg, kv->key, kv->value->u.s, e) < 0)
            return ka_wrap(e, "%s:%d", origin, kv->line);
        return 0;
    case K_DURATION:
        return toml_duration(kv, field, origin, e);
    case K_ENDPOINTS:
        return toml_endpoints(cfg, kv, origin, e);
    }
    return 0;
}

int config_parse_toml(struct agent_config *cfg, const char *text, const char *origin, ka_err *e)
{
    struct toml_value *root = toml_parse(text, origin, e);
    if (!root)
        return -1;
    free_allowed(cfg);
    cfg->allowlist_enabled = true; /* no [endpoints] section: everything blocked */
    int r = 0;
    for (size_t i = 0; i < root->u.tab.n && r == 0; i++) {
        const struct toml_kv *kv = &root->u.tab.kvs[i];
        const struct toml_key *k = NULL;
        for (size_t j = 0; j < ARRAY_SIZE(toml_keys) && !k; j++)
            if (strcmp(toml_keys[j].key, kv->key) == 0)
                k = &toml_keys[j];
        if (k)
            r = toml_apply(cfg, k, kv, origin, e);
        else
            log_warn("config", "%s:%d: unknown key %s ignored", origin, kv->line, kv->key);
    }
    toml_free(root);
    return r;
}

/* ---- loading ---- */

static int read_file(const char *path, char **out, ka_err *e)
{
    struct stat st;
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0)
        return ka_fail_errno(e, errno, "read config file %s", path);
    if (!S_ISREG(st.st_mode))
        return ka_fail(e, KA_INVALID_ARGUMENT, "config file %s is not a regular file", path);
    if (st.st_size > CONFIG_FILE_MAX)
        return ka_fail(e, KA_INVALID_ARGUMENT, "config file %s is too large (%lld bytes, max %d)", path,
                       (long long)st.st_size, CONFIG_FILE_MAX);
    size_t size = (size_t)st.st_size, len = 0;
    cleanup_free char *buf = malloc(size + 1);
    if (!buf)
        return oom(e);
    while (len < size) {
        ssize_t n = read(fd, buf + len, size - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ka_fail_errno(e, errno, "read config file %s", path);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (memchr(buf, '\0', len))
        return ka_fail(e, KA_INVALID_ARGUMENT, "config file %s contains a NUL byte", path);
    buf[len] = '\0';
    *out = steal_ptr(buf);
    return 0;
}

static int load_file(struct agent_config *cfg, const char *path, ka_err *e)
{
    cleanup_free char *text = NULL;
    if (read_file(path, &text, e) < 0 || config_parse_toml(cfg, text, path, e) < 0)
        return -1;
    return set_string(&cfg->config_file, path, e);
}

static int load_sources(struct agent_config *cfg, const struct config_sources *src, ka_err *e)
{
    cleanup_free char *path = NULL;
    if (src->config_file) {
        if (!*src->config_file)
            return bad_value(e, "--config", "", "must not be empty");
        path = strdup(src->config_file);
        if (!path)
            return oom(e);
    } else if (src->cmdline && cmdline_config_file(src->cmdline, &path, e) < 0) {
        return -1;
    }
    if (path) {
        if (load_file(cfg, path, e) < 0)
            return -1;
    } else {
        if (config_parse_cmdline(cfg, src->cmdline, e) < 0)
            return -1;
        if (src->use_env && config_apply_env(cfg, e) < 0)
            return -1;
    }
    if (src->flag_server_addr && opt_server_addr(cfg, "--server-addr", src->flag_server_addr, e) < 0)
        return -1;
    if (src->flag_log_level && opt_log(cfg, "--log-level", src->flag_log_level, e) < 0)
        return -1;
    return 0;
}

int config_load(struct agent_config *cfg, const struct config_sources *src, ka_err *e)
{
    static const struct config_sources none;
    config_init(cfg);
    if (!src)
        src = &none;
    if (load_sources(cfg, src, e) < 0) {
        config_free(cfg);
        return -1;
    }
    return 0;
}

/* ---- the rest of the interface ---- */

void config_init(struct agent_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->log_level = KA_LOG_INFO;
    cfg->server_addr = strdup(KA_DEFAULT_SERVER_ADDR);
    cfg->hotplug_timeout_ms = KA_DEFAULT_HOTPLUG_TIMEOUT_MS;
}

void config_free(struct agent_config *cfg)
{
    free(cfg->server_addr);
    free(cfg->config_file);
    free_allowed(cfg);
    memset(cfg, 0, sizeof(*cfg));
}

bool config_endpoint_allowed(const struct agent_config *cfg, const char *request_name)
{
    if (!cfg->allowlist_enabled)
        return true;
    if (!request_name)
        return false;
    for (size_t i = 0; i < cfg->n_allowed; i++)
        if (strcmp(cfg->allowed[i], request_name) == 0)
            return true;
    return false;
}

/* Length of the valid UTF-8 sequence at s (s[0] >= 0x80), 0 if invalid. */
static size_t utf8_len(const unsigned char *s)
{
    size_t n = s[0] >= 0xc2 && s[0] <= 0xdf   ? 2
               : (s[0] & 0xf0) == 0xe0        ? 3
               : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
                                              : 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* overlong 3/4-byte forms, surrogates and code points above U+10FFFF */
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) || (s[0] == 0xf0 && s[1] < 0x90) ||
        (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return n;
}

/* A JSON string literal; invalid UTF-8 becomes U+FFFD. NULL becomes null. */
static void json_string(FILE *f, const char *str)
{
    if (!str) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *s = (const unsigned char *)str; *s;) {
        size_t n;
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else if (*s == '\t')
            fputs("\\t", f);
        else if (*s == '\r')
            fputs("\\r", f);
        else if (*s < 0x20 || *s == 0x7f)
            fprintf(f, "\\u%04x", *s);
        else if (*s < 0x80)
            fputc(*s, f);
        else if ((n = utf8_len(s)) > 0) {
            fwrite(s, 1, n, f);
            s += n;
            continue;
        } else
            fputs("\\ufffd", f);
        s++;
    }
    fputc('"', f);
}

static void json_bool(FILE *f, const char *key, bool v)
{
    fprintf(f, ",\"%s\":%s", key, v ? "true" : "false");
}

char *config_to_json(const struct agent_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    fputs("{\"log_level\":", f);
    json_string(f, ka_log_level_name(cfg->log_level));
    fputs(",\"server_addr\":", f);
    json_string(f, cfg->server_addr);
    json_bool(f, "debug_console", cfg->debug_console);
    fprintf(f, ",\"debug_console_vport\":%d,\"log_vport\":%d", (int)cfg->debug_console_vport,
            (int)cfg->log_vport);
    json_bool(f, "dev_mode", cfg->dev_mode);
    fprintf(f, ",\"hotplug_timeout_ms\":%llu,\"container_pipe_size\":%lld",
            (unsigned long long)cfg->hotplug_timeout_ms, (long long)cfg->container_pipe_size);
    json_bool(f, "unified_cgroup_hierarchy", cfg->unified_cgroup_hierarchy);
    json_bool(f, "tracing", cfg->tracing);
    fputs(",\"config_file\":", f);
    json_string(f, cfg->config_file);
    json_bool(f, "allowlist_enabled", cfg->allowlist_enabled);
    fputs(",\"allowed\":[", f);
    for (size_t i = 0; i < cfg->n_allowed; i++) {
        if (i)
            fputc(',', f);
        json_string(f, cfg->allowed[i]);
    }
    fputs("]}", f);
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(buf);
        return NULL;
    }
    return buf;
}
