/* Seccomp: OCI LinuxSeccomp compiled to classic BPF with libseccomp in the agent, loaded raw in the child. */
#include "seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "../util/log.h"

#define SECCOMP_MAX_ARGS 6 /* syscall arguments a rule can compare (runc: syscallMaxArguments) */

/* What the child needs: flags for seccomp(2) and the program (filter array owned by this struct). */
struct seccomp_prog {
    unsigned int flags;
    struct sock_fprog prog;
};

struct name_val {
    const char *name;
    uint32_t val;
};

static const struct name_val arch_table[] = {
    {"SCMP_ARCH_X86", SCMP_ARCH_X86},
    {"SCMP_ARCH_X86_64", SCMP_ARCH_X86_64},
    {"SCMP_ARCH_X32", SCMP_ARCH_X32},
    {"SCMP_ARCH_ARM", SCMP_ARCH_ARM},
    {"SCMP_ARCH_AARCH64", SCMP_ARCH_AARCH64},
    {"SCMP_ARCH_MIPS", SCMP_ARCH_MIPS},
    {"SCMP_ARCH_MIPS64", SCMP_ARCH_MIPS64},
    {"SCMP_ARCH_MIPS64N32", SCMP_ARCH_MIPS64N32},
    {"SCMP_ARCH_MIPSEL", SCMP_ARCH_MIPSEL},
    {"SCMP_ARCH_MIPSEL64", SCMP_ARCH_MIPSEL64},
    {"SCMP_ARCH_MIPSEL64N32", SCMP_ARCH_MIPSEL64N32},
    {"SCMP_ARCH_PPC", SCMP_ARCH_PPC},
    {"SCMP_ARCH_PPC64", SCMP_ARCH_PPC64},
    {"SCMP_ARCH_PPC64LE", SCMP_ARCH_PPC64LE},
    {"SCMP_ARCH_S390", SCMP_ARCH_S390},
    {"SCMP_ARCH_S390X", SCMP_ARCH_S390X},
    {"SCMP_ARCH_PARISC", SCMP_ARCH_PARISC},
    {"SCMP_ARCH_PARISC64", SCMP_ARCH_PARISC64},
    {"SCMP_ARCH_RISCV64", SCMP_ARCH_RISCV64},
};

static const struct name_val op_table[] = {
    {"SCMP_CMP_NE", SCMP_CMP_NE},
    {"SCMP_CMP_LT", SCMP_CMP_LT},
    {"SCMP_CMP_LE", SCMP_CMP_LE},
    {"SCMP_CMP_EQ", SCMP_CMP_EQ},
    {"SCMP_CMP_GE", SCMP_CMP_GE},
    {"SCMP_CMP_GT", SCMP_CMP_GT},
    {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
};

static const struct name_val flag_table[] = {
    {"SECCOMP_FILTER_FLAG_TSYNC", SECCOMP_FILTER_FLAG_TSYNC},
    {"SECCOMP_FILTER_FLAG_LOG", SECCOMP_FILTER_FLAG_LOG},
    {"SECCOMP_FILTER_FLAG_SPEC_ALLOW", SECCOMP_FILTER_FLAG_SPEC_ALLOW},
};

static int lookup(const struct name_val *t, size_t n, const char *name, uint32_t *out)
{
    for (size_t i = 0; name && i < n; i++) {
        if (strcmp(t[i].name, name) == 0) {
            *out = t[i].val;
            return 0;
        }
    }
    return -1;
}

static void ctx_releasep(scmp_filter_ctx *ctx)
{
    if (*ctx)
        seccomp_release(*ctx);
}
#define cleanup_scmp __attribute__((cleanup(ctx_releasep)))

/* Action name to libseccomp action; ERRNO and TRACE carry errnum (EPERM when errnoret is unset, 3.1.a).
 * SCMP_ACT_NOTIFY is refused: it needs a listener fd the agent has no use for. */
static int parse_action(const char *name, uint32_t errnum, uint32_t *out)
{
    static const struct name_val plain[] = {
        {"SCMP_ACT_ALLOW", SCMP_ACT_ALLOW},
        {"SCMP_ACT_KILL", SCMP_ACT_KILL},
        {"SCMP_ACT_KILL_THREAD", SCMP_ACT_KILL_THREAD},
        {"SCMP_ACT_KILL_PROCESS", SCMP_ACT_KILL_PROCESS},
        {"SCMP_ACT_TRAP", SCMP_ACT_TRAP},
        {"SCMP_ACT_LOG", SCMP_ACT_LOG},
    };
    if (!name)
        return -1;
    if (strcmp(name, "SCMP_ACT_ERRNO") == 0) {
        *out = SCMP_ACT_ERRNO(errnum);
        return 0;
    }
    if (strcmp(name, "SCMP_ACT_TRACE") == 0) {
        *out = SCMP_ACT_TRACE(errnum);
        return 0;
    }
    return lookup(plain, ARRAY_SIZE(plain), name, out);
}

static int parse_flags(const Grpc__LinuxSeccomp *sc, unsigned int *flags, ka_err *e)
{
    *flags = 0;
    for (size_t i = 0; i < sc->n_flags; i++) {
        uint32_t f;
        if (lookup(flag_table, ARRAY_SIZE(flag_table), sc->flags[i], &f) < 0)
            return ka_fail(e, KA_INVALID_ARGUMENT, "seccomp: flags[%zu]: unknown flag \"%s\"", i,
                           sc->flags[i]);
        *flags |= f;
    }
    return 0;
}

/* Listed architectures are added; the native one stays (runc). */
static int add_arches(scmp_filter_ctx ctx, const Grpc__LinuxSeccomp *sc, ka_err *e)
{
    for (size_t i = 0; i < sc->n_architectures; i++) {
        const char *name = sc->architectures[i];
        uint32_t arch;
        if (lookup(arch_table, ARRAY_SIZE(arch_table), name, &arch) < 0)
            return ka_fail(e, KA_INVALID_ARGUMENT, "seccomp: architectures[%zu]: unknown architecture \"%s\"",
                           i, name);
        int rc = seccomp_arch_add(ctx, arch);
        if (rc < 0 && rc != -EEXIST) {
            ka_fail_errno(e, -rc, "seccomp: architectures[%zu]: cannot add \"%s\"", i, name);
            e->status = KA_INVALID_ARGUMENT;
            return -1;
        }
    }
    return 0;
}

/* OCI args to libseccomp comparisons. MASKED_EQ: value is the mask, valuetwo the datum (runc, upstream). */
static int build_conds(const Grpc__LinuxSyscall *sys, size_t idx, struct scmp_arg_cmp *conds, bool *shared,
                       ka_err *e)
{
    unsigned int per_index[SECCOMP_MAX_ARGS] = {0};
    *shared = false;
    for (size_t j = 0; j < sys->n_args; j++) {
        const Grpc__LinuxSeccompArg *a = sys->args[j];
        uint32_t op;
        if (a->index >= SECCOMP_MAX_ARGS)
            return ka_fail(e, KA_INVALID_ARGUMENT, "seccomp: syscalls[%zu]: args[%zu]: invalid index %llu",
                           idx, j, (unsigned long long)a->index);
        if (lookup(op_table, ARRAY_SIZE(op_table), a->op, &op) < 0)
            return ka_fail(e, KA_INVALID_ARGUMENT,
                           "seccomp: syscalls[%zu]: args[%zu]: unknown operator \"%s\"", idx, j,
                           a->op ? a->op : "");
        conds[j] = (struct scmp_arg_cmp){.arg = (unsigned int)a->index,
                                         .op = (enum scmp_compare)op,
                                         .datum_a = a->value,
                                         .datum_b = a->valuetwo};
        if (++per_index[a->index] > 1)
            *shared = true;
    }
    return 0;
}

static int rule_fail(ka_err *e, int rc, size_t idx, const char *name)
{
    ka_fail_errno(e, -rc, "seccomp: syscalls[%zu]: cannot add rule for \"%s\"", idx, name);
    e->status = KA_INVALID_ARGUMENT;
    return -1;
}

/* Several comparisons on one argument index: one rule per comparison (runc), i.e. they are OR-ed. */
static int add_one(scmp_filter_ctx ctx, uint32_t act, int nr, const struct scmp_arg_cmp *conds, size_t n,
                   bool shared)
{
    if (!shared)
        return seccomp_rule_add_array(ctx, act, nr, (unsigned int)n, n ? conds : NULL);
    for (size_t j = 0; j < n; j++) {
        int rc = seccomp_rule_add_array(ctx, act, nr, 1, &conds[j]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int add_syscall(scmp_filter_ctx ctx, uint32_t def_act, const Grpc__LinuxSyscall *sys, size_t idx,
                       size_t *skipped, ka_err *e)
{
    uint32_t errnum = sys->errno_ret_case == GRPC__LINUX_SYSCALL__ERRNO_RET_ERRNORET ? sys->errnoret : EPERM;
    uint32_t act;
    bool shared;
    if (sys->n_names == 0)
        return ka_fail(e, KA_INVALID_ARGUMENT, "seccomp: syscalls[%zu]: syscall name is required", idx);
    if (parse_action(sys->action, errnum, &act) < 0)
        return ka_fail(e, KA_INVALID_ARGUMENT, "seccomp: syscalls[%zu]: unknown action \"%s\"", idx,
                       sys->action ? sys->action : "");
    if (errnum > 0xffff && (act == SCMP_ACT_ERRNO(errnum) || act == SCMP_ACT_TRACE(errnum)))
        return ka_fail(e, KA_INVALID_ARGUMENT, "seccomp: syscalls[%zu]: errno %u out of range", idx, errnum);
    cleanup_free struct scmp_arg_cmp *conds = calloc(sys->n_args ? sys->n_args : 1, sizeof(*conds));
    if (!conds)
        return ka_fail_errno(e, ENOMEM, "seccomp: syscalls[%zu]", idx);
    if (build_conds(sys, idx, conds, &shared, e) < 0)
        return -1;
    if (act == def_act) /* libseccomp refuses rules equal to the default; they are no-ops anyway */
        return 0;
    for (size_t k = 0; k < sys->n_names; k++) {
        int nr = seccomp_syscall_resolve_name(sys->names[k]);
        if (nr == __NR_SCMP_ERROR) { /* unknown to libseccomp: assume the kernel lacks it (runc) */
            log_debug("seccomp", "skipping unknown syscall \"%s\"", sys->names[k]);
            (*skipped)++;
            continue;
        }
        int rc = add_one(ctx, act, nr, conds, sys->n_args, shared);
        if (rc < 0)
            return rule_fail(e, rc, idx, sys->names[k]);
    }
    return 0;
}

static int add_syscalls(scmp_filter_ctx ctx, uint32_t def_act, const Grpc__LinuxSeccomp *sc, ka_err *e)
{
    size_t skipped = 0;
    for (size_t i = 0; i < sc->n_syscalls; i++) {
        if (add_syscall(ctx, def_act, sc->syscalls[i], i, &skipped, e) < 0)
            return -1;
    }
    if (skipped)
        log_debug("seccomp", "skipped %zu unknown syscall name(s)", skipped);
    return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = pread(fd, (char *)buf + off, len - off, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        off += (size_t)n;
    }
    return 0;
}

/* libseccomp 2.5 can only export to an fd: go through a memfd and keep the instructions in memory. */
static int export_prog(scmp_filter_ctx ctx, struct sock_fprog *prog, ka_err *e)
{
    cleanup_close int fd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return ka_fail_errno(e, errno, "seccomp: memfd_create");
    int rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0)
        return ka_fail_errno(e, -rc, "seccomp: exporting the filter");
    if (fstat(fd, &st) < 0)
        return ka_fail_errno(e, errno, "seccomp: fstat");
    size_t len = (size_t)st.st_size, n = len / sizeof(struct sock_filter);
    if (n == 0 || len % sizeof(struct sock_filter) != 0)
        return ka_fail(e, KA_INTERNAL, "seccomp: exported filter has an invalid size %zu", len);
    if (n > BPF_MAXINSNS)
        return ka_fail(e, KA_INVALID_ARGUMENT, "seccomp: filter too large (%zu instructions, max %d)", n,
                       BPF_MAXINSNS);
    cleanup_free struct sock_filter *f = malloc(len);
    if (!f)
        return ka_fail_errno(e, ENOMEM, "seccomp: filter");
    if ((rc = read_all(fd, f, len)) < 0)
        return ka_fail_errno(e, -rc, "seccomp: reading the exported filter");
    prog->len = (unsigned short)n;
    prog->filter = steal_ptr(f);
    return 0;
}

static int build_filter(const Grpc__LinuxSeccomp *sc, struct sock_fprog *prog, ka_err *e)
{
    uint32_t def_act;
    if (parse_action(sc->defaultaction, EPERM, &def_act) < 0)
        return ka_fail(e, KA_INVALID_ARGUMENT, "seccomp: unknown default action \"%s\"",
                       sc->defaultaction ? sc->defaultaction : "");
    cleanup_scmp scmp_filter_ctx ctx = seccomp_init(def_act);
    if (!ctx)
        return ka_fail(e, KA_INVALID_ARGUMENT, "seccomp: default action \"%s\" is not supported",
                       sc->defaultaction);
    if (add_arches(ctx, sc, e) < 0 || add_syscalls(ctx, def_act, sc, e) < 0)
        return -1;
    return export_prog(ctx, prog, e);
}

int seccomp_compile(const Grpc__LinuxSeccomp *sc, struct seccomp_prog **out, ka_err *e)
{
    *out = NULL;
    if (!sc)
        return 0;
    cleanup_free struct seccomp_prog *p = calloc(1, sizeof(*p));
    if (!p)
        return ka_fail_errno(e, ENOMEM, "seccomp");
    if (parse_flags(sc, &p->flags, e) < 0 || build_filter(sc, &p->prog, e) < 0)
        return -1;
    *out = steal_ptr(p);
    return 0;
}

/* Raw seccomp(2): no allocation, no libseccomp state. Without NO_NEW_PRIVS the kernel requires
 * CAP_SYS_ADMIN in the effective set, so the caller loads before dropping capabilities (spec 4.6). */
int seccomp_prog_load(const struct seccomp_prog *p, ka_err *e)
{
    if (!p)
        return 0;
    long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, p->flags, &p->prog);
    if (rc < 0)
        return ka_fail_errno(e, errno, "loading the seccomp filter");
    if (rc > 0) /* TSYNC: the id of a thread that could not be synchronized */
        return ka_fail(e, KA_INTERNAL, "loading the seccomp filter: thread %ld cannot be synchronized", rc);
    return 0;
}

void seccomp_prog_free(struct seccomp_prog *p)
{
    if (!p)
        return;
    free(p->prog.filter);
    free(p);
}
