/* Capabilities, ids, NNP, rlimits, oom_score_adj: parsed in the agent, applied in the child by syscalls. */
#include <sys/types.h> /* uid_t/gid_t, which creds.h uses without including */

#include "creds.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/log.h"

#define CAP_BIT(n) ((uint64_t)1 << (n))

/* ---- capabilities (agent side) ---- */

/* The kernel's highest capability; caps above it are skipped at prepare time. */
static int kernel_last_cap(void)
{
    ka_err e;
    cleanup_free char *s = NULL;
    if (fs_read_file("/proc/sys/kernel/cap_last_cap", &s, NULL, &e) == 0) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end != s && v >= 0 && v < 64)
            return (int)v;
    }
    int bits = cap_max_bits(); /* libcap probes the bounding set */
    return bits > 0 && bits <= 64 ? bits - 1 : CAP_LAST_CAP;
}

/* Strict: "CAP_" then upper-case letters and '_' only, and the whole name must be one libcap knows
 * (cap_from_name alone also accepts numbers, lower case and trailing garbage). */
static int parse_cap_name(const char *name, cap_value_t *v)
{
    if (!name || strncmp(name, "CAP_", 4) != 0 || name[4] == '\0')
        return -1;
    for (const char *p = name + 4; *p; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || *p == '_'))
            return -1;
    }
    if (cap_from_name(name, v) != 0 || *v < 0 || *v > 63)
        return -1;
    char *back = cap_to_name(*v);
    int ok = back && strcasecmp(back, name) == 0;
    cap_free(back);
    return ok ? 0 : -1;
}

static int parse_cap_set(char **names, size_t n, const char *set, int last, uint64_t *mask, ka_err *e)
{
    *mask = 0;
    for (size_t i = 0; i < n; i++) {
        cap_value_t v;
        if (parse_cap_name(names[i], &v) < 0)
            return ka_fail(e, KA_INVALID_ARGUMENT, "unknown capability \"%s\" in the %s set",
                           names[i] ? names[i] : "", set);
        if (v > last) {
            log_warn("caps", "capability %s is not supported by the kernel (cap_last_cap %d): skipped",
                     names[i], last);
            continue;
        }
        *mask |= CAP_BIT(v);
    }
    return 0;
}

int caps_prepare(const Grpc__LinuxCapabilities *c, struct caps_sets *out, ka_err *e)
{
    memset(out, 0, sizeof(*out));
    if (!c)
        return 0;
    int last = kernel_last_cap();
    if (parse_cap_set(c->bounding, c->n_bounding, "bounding", last, &out->bounding, e) < 0 ||
        parse_cap_set(c->effective, c->n_effective, "effective", last, &out->effective, e) < 0 ||
        parse_cap_set(c->inheritable, c->n_inheritable, "inheritable", last, &out->inheritable, e) < 0 ||
        parse_cap_set(c->permitted, c->n_permitted, "permitted", last, &out->permitted, e) < 0 ||
        parse_cap_set(c->ambient, c->n_ambient, "ambient", last, &out->ambient, e) < 0)
        return -1;
    return 0;
}

/* ---- capabilities (child side: syscalls only) ---- */

static int drop_bounding(uint64_t keep, ka_err *e)
{
    for (int i = 0; i < 64; i++) {
        int r = prctl(PR_CAPBSET_READ, i, 0, 0, 0);
        if (r < 0) /* EINVAL: past the kernel's last capability */
            break;
        if (r == 0 || (keep & CAP_BIT(i)))
            continue;
        if (prctl(PR_CAPBSET_DROP, i, 0, 0, 0) < 0)
            return ka_fail_errno(e, errno, "dropping capability %d from the bounding set", i);
    }
    return 0;
}

static int set_eip(uint64_t eff, uint64_t prm, uint64_t inh, ka_err *e)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    for (int i = 0; i < 2; i++) {
        d[i].effective = (uint32_t)(eff >> (32 * i));
        d[i].permitted = (uint32_t)(prm >> (32 * i));
        d[i].inheritable = (uint32_t)(inh >> (32 * i));
    }
    if (capset(&hdr, d) < 0)
        return ka_fail_errno(e, errno, "setting capabilities");
    return 0;
}

/* Ambient failures are ignored, as upstream (old kernels, caps missing from permitted/inheritable). */
static void set_ambient(uint64_t amb)
{
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    for (int i = 0; i < 64; i++) {
        if (amb & CAP_BIT(i))
            (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, i, 0, 0);
    }
}

int caps_apply(const struct caps_sets *c, ka_err *e)
{
    if (drop_bounding(c->bounding, e) < 0 || set_eip(c->effective, c->permitted, c->inheritable, e) < 0)
        return -1;
    set_ambient(c->ambient);
    return 0;
}

/* ---- credentials (agent side) ---- */

static const struct {
    const char *name;
    int resource;
} rlimit_table[] = {
    {"RLIMIT_AS", RLIMIT_AS},
    {"RLIMIT_CORE", RLIMIT_CORE},
    {"RLIMIT_CPU", RLIMIT_CPU},
    {"RLIMIT_DATA", RLIMIT_DATA},
    {"RLIMIT_FSIZE", RLIMIT_FSIZE},
    {"RLIMIT_LOCKS", RLIMIT_LOCKS},
    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
    {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
    {"RLIMIT_NICE", RLIMIT_NICE},
    {"RLIMIT_NOFILE", RLIMIT_NOFILE},
    {"RLIMIT_NPROC", RLIMIT_NPROC},
    {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
    {"RLIMIT_RTTIME", RLIMIT_RTTIME},
    {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_STACK", RLIMIT_STACK},
};

static const char *rlimit_name(int resource)
{
    for (size_t i = 0; i < ARRAY_SIZE(rlimit_table); i++) {
        if (rlimit_table[i].resource == resource)
            return rlimit_table[i].name;
    }
    return "RLIMIT_?";
}

static int parse_rlimit(const Grpc__POSIXRlimit *r, size_t idx, struct creds *out, ka_err *e)
{
    const char *type = r->type ? r->type : "";
    size_t i = 0;
    while (i < ARRAY_SIZE(rlimit_table) && strcmp(rlimit_table[i].name, type) != 0)
        i++;
    if (i == ARRAY_SIZE(rlimit_table))
        return ka_fail(e, KA_INVALID_ARGUMENT, "rlimits[%zu]: unknown rlimit \"%s\"", idx, type);
    if (r->soft > r->hard)
        return ka_fail(e, KA_INVALID_ARGUMENT, "rlimits[%zu]: %s soft limit %llu exceeds hard limit %llu",
                       idx, type, (unsigned long long)r->soft, (unsigned long long)r->hard);
    out->rlimits[out->n_rlimits].resource = rlimit_table[i].resource;
    out->rlimits[out->n_rlimits].lim = (struct rlimit){.rlim_cur = r->soft, .rlim_max = r->hard};
    out->n_rlimits++;
    return 0;
}

static int parse_user(const Grpc__User *u, struct creds *out, ka_err *e)
{
    if (!u)
        return 0;
    if (u->n_additionalgids > CREDS_MAX_GIDS)
        return ka_fail(e, KA_INVALID_ARGUMENT, "too many additional gids (%zu, max %d)", u->n_additionalgids,
                       CREDS_MAX_GIDS);
    out->uid = u->uid;
    out->gid = u->gid;
    out->n_gids = u->n_additionalgids;
    for (size_t i = 0; i < u->n_additionalgids; i++)
        out->gids[i] = u->additionalgids[i];
    return 0;
}

int creds_prepare(const Grpc__Process *p, struct creds *out, ka_err *e)
{
    memset(out, 0, sizeof(*out));
    if (!p)
        return 0;
    if (parse_user(p->user, out, e) < 0)
        return -1;
    out->no_new_privs = p->nonewprivileges;
    if (p->oomscoreadj < -1000 || p->oomscoreadj > 1000)
        return ka_fail(e, KA_INVALID_ARGUMENT, "oom_score_adj %lld out of range [-1000, 1000]",
                       (long long)p->oomscoreadj);
    out->oom_score_adj = p->oomscoreadj;
    if (p->n_rlimits > CREDS_MAX_RLIMITS)
        return ka_fail(e, KA_INVALID_ARGUMENT, "too many rlimits (%zu, max %d)", p->n_rlimits,
                       CREDS_MAX_RLIMITS);
    for (size_t i = 0; i < p->n_rlimits; i++) {
        if (parse_rlimit(p->rlimits[i], i, out, e) < 0)
            return -1;
    }
    return 0;
}

/* ---- credentials (child side: syscalls only, no allocation) ---- */

/* Decimal text of v into buf (>= 24 bytes); returns the length. */
static size_t fmt_i64(int64_t v, char *buf)
{
    char tmp[24];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        buf[len++] = '-';
    while (n)
        buf[len++] = tmp[--n];
    return len;
}

static int write_oom_score_adj(int64_t v, ka_err *e)
{
    char buf[24];
    size_t len = fmt_i64(v, buf);
    cleanup_close int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return ka_fail_errno(e, errno, "open /proc/self/oom_score_adj");
    ssize_t n = write(fd, buf, len);
    if (n != (ssize_t)len)
        return ka_fail_errno(e, n < 0 ? errno : EIO, "writing oom_score_adj %lld", (long long)v);
    return 0;
}

int creds_apply_limits(const struct creds *c, ka_err *e)
{
    if (write_oom_score_adj(c->oom_score_adj, e) < 0)
        return -1;
    for (size_t i = 0; i < c->n_rlimits; i++) {
        if (setrlimit(c->rlimits[i].resource, &c->rlimits[i].lim) < 0)
            return ka_fail_errno(e, errno, "setrlimit %s", rlimit_name(c->rlimits[i].resource));
    }
    return 0;
}

/* Upstream calls setgroups only when additional gids are given, so a container without them inherits the
 * agent's supplementary groups. We clear them instead (setgroups(0, NULL)); when that is refused (no
 * CAP_SETGID, or "deny" in /proc/self/setgroups of a user namespace) we fall back to upstream behaviour. */
static int apply_groups(const struct creds *c, ka_err *e)
{
    if (c->n_gids > 0) {
        if (setgroups(c->n_gids, c->gids) < 0)
            return ka_fail_errno(e, errno, "setgroups failed");
        return 0;
    }
    if (setgroups(0, NULL) < 0 && errno != EPERM)
        return ka_fail_errno(e, errno, "clearing supplementary groups failed");
    return 0;
}

/* setresuid to a non-zero uid clears the effective set even with KEEPCAPS: raise it back to permitted so the
 * later steps (seccomp without NNP, bounding-set drop) still hold CAP_SYS_ADMIN / CAP_SETPCAP. */
static int restore_effective(ka_err *e)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    if (capget(&hdr, d) < 0)
        return ka_fail_errno(e, errno, "capget");
    for (int i = 0; i < 2; i++)
        d[i].effective = d[i].permitted;
    if (capset(&hdr, d) < 0)
        return ka_fail_errno(e, errno, "restoring effective capabilities");
    return 0;
}

static int set_ids(const struct creds *c, ka_err *e)
{
    if (setresgid(c->gid, c->gid, c->gid) < 0)
        return ka_fail_errno(e, errno, "setresgid %u", (unsigned)c->gid);
    if (setresuid(c->uid, c->uid, c->uid) < 0)
        return ka_fail_errno(e, errno, "setresuid %u", (unsigned)c->uid);
    if (c->uid != 0 && restore_effective(e) < 0)
        return -1;
    return 0;
}

/* Groups first, while CAP_SETGID is certainly effective; then gid, uid with KEEPCAPS set around them. */
int creds_apply_ids(const struct creds *c, ka_err *e)
{
    if (apply_groups(c, e) < 0)
        return -1;
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        return ka_fail_errno(e, errno, "prctl(PR_SET_KEEPCAPS)");
    int rc = set_ids(c, e);
    (void)prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    return rc;
}

int creds_apply_nnp(const struct creds *c, ka_err *e)
{
    if (c->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return ka_fail_errno(e, errno, "prctl(PR_SET_NO_NEW_PRIVS)");
    return 0;
}
