/* Unit tests for runtime/seccomp: profile validation errors and filters loaded in forked children (root). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/seccomp.h"
#include "util/cleanup.h"
#include "unit.h"

/* ---- profile builders ---- */

#define MAX_RULES 8

struct profile {
    Grpc__LinuxSeccomp sc;
    Grpc__LinuxSyscall rules[MAX_RULES];
    Grpc__LinuxSyscall *rule_ptrs[MAX_RULES];
    Grpc__LinuxSeccompArg args[MAX_RULES][4];
    Grpc__LinuxSeccompArg *arg_ptrs[MAX_RULES][4];
};

static void profile_init(struct profile *p, const char *def)
{
    memset(p, 0, sizeof(*p));
    p->sc = (Grpc__LinuxSeccomp)GRPC__LINUX_SECCOMP__INIT;
    p->sc.defaultaction = (char *)def;
    p->sc.syscalls = p->rule_ptrs;
}

/* Adds a rule; errnum < 0 leaves errnoret unset. Returns the rule index. */
static size_t add_rule(struct profile *p, const char *action, int errnum, char **names, size_t n_names)
{
    size_t i = p->sc.n_syscalls++;
    Grpc__LinuxSyscall *r = &p->rules[i];
    *r = (Grpc__LinuxSyscall)GRPC__LINUX_SYSCALL__INIT;
    r->action = (char *)action;
    r->names = names;
    r->n_names = n_names;
    if (errnum >= 0) {
        r->errno_ret_case = GRPC__LINUX_SYSCALL__ERRNO_RET_ERRNORET;
        r->errnoret = (uint32_t)errnum;
    }
    r->args = p->arg_ptrs[i];
    p->rule_ptrs[i] = r;
    return i;
}

static void add_arg(struct profile *p, size_t rule, uint64_t index, const char *op, uint64_t v, uint64_t v2)
{
    Grpc__LinuxSyscall *r = &p->rules[rule];
    Grpc__LinuxSeccompArg *a = &p->args[rule][r->n_args];
    *a = (Grpc__LinuxSeccompArg)GRPC__LINUX_SECCOMP_ARG__INIT;
    a->index = index;
    a->op = (char *)op;
    a->value = v;
    a->valuetwo = v2;
    p->arg_ptrs[rule][r->n_args++] = a;
}

static struct seccomp_prog *compile_ok(const struct profile *p)
{
    struct seccomp_prog *prog = NULL;
    ka_err e = {0};
    int rc = seccomp_compile(&p->sc, &prog, &e);
    if (rc != 0)
        printf("# compile failed: %s\n", e.msg);
    CHECK_INT(rc, 0);
    CHECK(prog != NULL);
    return prog;
}

/* Compilation must fail with INVALID_ARGUMENT and a message containing want1 and want2. */
static void compile_fails(const struct profile *p, const char *want1, const char *want2)
{
    struct seccomp_prog *prog = (struct seccomp_prog *)1;
    ka_err e = {0};
    CHECK_INT(seccomp_compile(&p->sc, &prog, &e), -1);
    CHECK(prog == NULL);
    CHECK_INT(e.status, KA_INVALID_ARGUMENT);
    if (!strstr(e.msg, want1) || (want2 && !strstr(e.msg, want2)))
        printf("# message '%s' lacks '%s'/'%s'\n", e.msg, want1, want2 ? want2 : "");
    CHECK(strstr(e.msg, want1) != NULL);
    CHECK(!want2 || strstr(e.msg, want2) != NULL);
}

/* ---- child runner: checks in the child report the failing line through a pipe ---- */

static int child_fd = -1;

static void child_fail(int line, const char *what)
{
    dprintf(child_fd, "line %d: %s (errno %d)\n", line, what, errno);
    _exit(1);
}
#define CCHECK(cond)                                                                                         \
    do {                                                                                                     \
        if (!(cond))                                                                                         \
            child_fail(__LINE__, #cond);                                                                     \
    } while (0)

typedef void (*child_fn)(const struct seccomp_prog *prog);

/* Runs fn in a forked child; returns its wait status after echoing what it reported. */
static int run_child(child_fn fn, const struct seccomp_prog *prog)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        child_fd = p[1];
        fn(prog);
        _exit(0);
    }
    close(p[1]);
    char buf[512];
    ssize_t n;
    while ((n = read(p[0], buf, sizeof(buf) - 1)) > 0) {
        buf[n] = '\0';
        printf("# child: %s", buf);
    }
    close(p[0]);
    int st = -1;
    waitpid(pid, &st, 0);
    return st;
}

static int exited_ok(int st)
{
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* In the child: NNP then load (the NNP path of spec 4.6). */
static void load_nnp(const struct seccomp_prog *prog)
{
    ka_err e = {0};
    CCHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
    if (seccomp_prog_load(prog, &e) != 0)
        dprintf(child_fd, "seccomp_load: %s\n", e.msg);
    CCHECK(e.msg[0] == '\0');
}

static const char *tmp_path(void)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/test_seccomp_%d", (int)getpid());
    return path;
}

/* ---- tests ---- */

TEST(null_profile)
{
    struct seccomp_prog *prog = (struct seccomp_prog *)1;
    ka_err e = {0};
    CHECK_INT(seccomp_compile(NULL, &prog, &e), 0);
    CHECK(prog == NULL);
    CHECK_INT(seccomp_prog_load(NULL, &e), 0);
    seccomp_prog_free(NULL);
}

TEST(error_default_action)
{
    struct profile p;
    profile_init(&p, "SCMP_ACT_FOO");
    compile_fails(&p, "default action", "SCMP_ACT_FOO");
    profile_init(&p, "");
    compile_fails(&p, "default action", NULL);
}

TEST(error_rule_action)
{
    static char *names[] = {"mkdir"};
    struct profile p;
    profile_init(&p, "SCMP_ACT_ALLOW");
    add_rule(&p, "SCMP_ACT_ERRNO", 1, names, 1);
    add_rule(&p, "SCMP_ACT_NOPE", -1, names, 1);
    compile_fails(&p, "syscalls[1]", "SCMP_ACT_NOPE");
    profile_init(&p, "SCMP_ACT_ALLOW");
    add_rule(&p, "SCMP_ACT_NOTIFY", -1, names, 1); /* needs a listener the agent does not have */
    compile_fails(&p, "syscalls[0]", "SCMP_ACT_NOTIFY");
}

TEST(error_op_and_index)
{
    static char *names[] = {"personality"};
    struct profile p;
    profile_init(&p, "SCMP_ACT_ALLOW");
    size_t r = add_rule(&p, "SCMP_ACT_ERRNO", 1, names, 1);
    add_arg(&p, r, 0, "SCMP_CMP_EQ", 1, 0);
    add_arg(&p, r, 1, "SCMP_CMP_BOGUS", 1, 0);
    compile_fails(&p, "args[1]", "SCMP_CMP_BOGUS");
    profile_init(&p, "SCMP_ACT_ALLOW");
    r = add_rule(&p, "SCMP_ACT_ERRNO", 1, names, 1);
    add_arg(&p, r, 6, "SCMP_CMP_EQ", 1, 0);
    compile_fails(&p, "syscalls[0]", "index 6");
}

TEST(error_arch_names_flags)
{
    static char *arches[] = {"SCMP_ARCH_X86_64", "SCMP_ARCH_FOO"};
    static char *flags[] = {"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_FOO"};
    static char *names[] = {"mkdir"};
    struct profile p;
    profile_init(&p, "SCMP_ACT_ALLOW");
    p.sc.architectures = arches;
    p.sc.n_architectures = 2;
    compile_fails(&p, "architectures[1]", "SCMP_ARCH_FOO");

    profile_init(&p, "SCMP_ACT_ALLOW");
    add_rule(&p, "SCMP_ACT_ERRNO", 1, names, 1);
    add_rule(&p, "SCMP_ACT_ERRNO", 1, names, 0);
    compile_fails(&p, "syscalls[1]", "name");

    profile_init(&p, "SCMP_ACT_ALLOW");
    p.sc.flags = flags;
    p.sc.n_flags = 2;
    compile_fails(&p, "flags[1]", "SECCOMP_FILTER_FLAG_FOO");

    profile_init(&p, "SCMP_ACT_ALLOW");
    add_rule(&p, "SCMP_ACT_ERRNO", 70000, names, 1);
    compile_fails(&p, "syscalls[0]", "70000");
}

TEST(compile_variants)
{
    static char *arches[] = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"};
    static char *flags[] = {"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                            "SECCOMP_FILTER_FLAG_TSYNC"};
    static char *names[] = {"no_such_syscall_xyz", "getcwd", "socketcall"};
    static const char *actions[] = {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO",        "SCMP_ACT_KILL",
                                    "SCMP_ACT_TRAP",  "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                                    "SCMP_ACT_TRACE", "SCMP_ACT_LOG"};
    for (size_t i = 0; i < ARRAY_SIZE(actions); i++) {
        struct profile p;
        profile_init(&p, "SCMP_ACT_ALLOW");
        p.sc.architectures = arches;
        p.sc.n_architectures = ARRAY_SIZE(arches);
        p.sc.flags = flags;
        p.sc.n_flags = ARRAY_SIZE(flags);
        /* rule == default action is skipped, unknown names are skipped */
        add_rule(&p, actions[i], -1, names, ARRAY_SIZE(names));
        seccomp_prog_free(compile_ok(&p));
    }
}

static void child_mkdir_denied(const struct seccomp_prog *prog)
{
    load_nnp(prog);
    errno = 0;
    CCHECK(mkdir(tmp_path(), 0700) == -1 && errno == 123);
    CCHECK(syscall(SYS_mkdirat, AT_FDCWD, tmp_path(), 0700) == -1 && errno == 123);
    CCHECK(getpid() > 0);
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    CCHECK(fd >= 0);
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    CCHECK(n > 0);
    buf[n] = '\0';
    CCHECK(strstr(buf, "Seccomp:\t2") != NULL);
    close(fd);
}

TEST(errno_rule)
{
    static char *names[] = {"mkdir", "no_such_syscall_xyz", "mkdirat"};
    struct profile p;
    profile_init(&p, "SCMP_ACT_ALLOW");
    add_rule(&p, "SCMP_ACT_ERRNO", 123, names, ARRAY_SIZE(names));
    struct seccomp_prog *prog = compile_ok(&p);
    CHECK(exited_ok(run_child(child_mkdir_denied, prog)));
    CHECK(access(tmp_path(), F_OK) != 0);
    seccomp_prog_free(prog);
}

static void child_eperm(const struct seccomp_prog *prog)
{
    load_nnp(prog);
    errno = 0;
    CCHECK(syscall(SYS_getcwd, NULL, 0) == -1 && errno == EPERM);
    char buf[64];
    CCHECK(syscall(SYS_uname, buf) == -1 && errno == ENOSYS);
}

TEST(errnoret_unset_is_eperm)
{
    static char *n1[] = {"getcwd"};
    static char *n2[] = {"uname"};
    struct profile p;
    profile_init(&p, "SCMP_ACT_ALLOW");
    add_rule(&p, "SCMP_ACT_ERRNO", -1, n1, 1);
    add_rule(&p, "SCMP_ACT_ERRNO", ENOSYS, n2, 1);
    struct seccomp_prog *prog = compile_ok(&p);
    CHECK(exited_ok(run_child(child_eperm, prog)));
    seccomp_prog_free(prog);
}

static void child_args(const struct seccomp_prog *prog)
{
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    CCHECK(fd >= 0);
    load_nnp(prog);
    errno = 0;
    /* EQ */
    CCHECK(syscall(SYS_personality, 0xffffffffUL) == -1 && errno == 77);
    CCHECK(syscall(SYS_personality, 0UL) >= 0);
    /* MASKED_EQ: value is the mask (0x0f), valuetwo the datum (0x03) */
    CCHECK(syscall(SYS_personality, 0x13UL) == -1 && errno == 78);
    CCHECK(syscall(SYS_personality, 0x10UL) >= 0);
    CCHECK(syscall(SYS_personality, 0UL) >= 0);
    /* two comparisons on one index: separate rules, OR-ed */
    CCHECK(syscall(SYS_getpriority, 5, 0) == -1 && errno == 79);
    CCHECK(syscall(SYS_getpriority, 6, 0) == -1 && errno == 79);
    CCHECK(syscall(SYS_getpriority, PRIO_PROCESS, 0) >= 0);
    /* different indexes: one rule, AND-ed */
    CCHECK(lseek(fd, 12345, SEEK_SET) == -1 && errno == 80);
    CCHECK(lseek(fd, 0, SEEK_SET) == 0);
    CCHECK(lseek(fd, 12345, SEEK_CUR) >= 0);
}

TEST(argument_rules)
{
    static char *pers[] = {"personality"};
    static char *prio[] = {"getpriority"};
    static char *seek[] = {"lseek"};
    struct profile p;
    profile_init(&p, "SCMP_ACT_ALLOW");
    add_arg(&p, add_rule(&p, "SCMP_ACT_ERRNO", 77, pers, 1), 0, "SCMP_CMP_EQ", 0xffffffffUL, 0);
    add_arg(&p, add_rule(&p, "SCMP_ACT_ERRNO", 78, pers, 1), 0, "SCMP_CMP_MASKED_EQ", 0x0f, 0x03);
    size_t r = add_rule(&p, "SCMP_ACT_ERRNO", 79, prio, 1);
    add_arg(&p, r, 0, "SCMP_CMP_EQ", 5, 0);
    add_arg(&p, r, 0, "SCMP_CMP_EQ", 6, 0);
    r = add_rule(&p, "SCMP_ACT_ERRNO", 80, seek, 1);
    add_arg(&p, r, 1, "SCMP_CMP_EQ", 12345, 0);
    add_arg(&p, r, 2, "SCMP_CMP_EQ", SEEK_SET, 0);
    struct seccomp_prog *prog = compile_ok(&p);
    CHECK(exited_ok(run_child(child_args, prog)));
    seccomp_prog_free(prog);
}

/* Every operator on getpriority's first argument: the blocked value gets errno 90, the other passes
 * the filter (and fails with EINVAL or succeeds in the kernel). */
static const struct op_case {
    const char *op;
    uint64_t value, valuetwo;
    long blocked, allowed;
} op_cases[] = {
    {"SCMP_CMP_NE", 7, 0, 8, 7},
    {"SCMP_CMP_LT", 7, 0, 6, 7},
    {"SCMP_CMP_LE", 7, 0, 7, 8},
    {"SCMP_CMP_EQ", 7, 0, 7, 6},
    {"SCMP_CMP_GE", 7, 0, 7, 6},
    {"SCMP_CMP_GT", 7, 0, 8, 7},
    {"SCMP_CMP_MASKED_EQ", 0xf0, 0x30, 0x35, 0x45},
};
static const struct op_case *cur_case;

static void child_op(const struct seccomp_prog *prog)
{
    load_nnp(prog);
    errno = 0;
    CCHECK(syscall(SYS_getpriority, cur_case->blocked, 0) == -1 && errno == 90);
    errno = 0;
    syscall(SYS_getpriority, cur_case->allowed, 0);
    CCHECK(errno != 90);
}

TEST(every_operator)
{
    static char *prio[] = {"getpriority"};
    for (size_t i = 0; i < ARRAY_SIZE(op_cases); i++) {
        struct profile p;
        cur_case = &op_cases[i];
        profile_init(&p, "SCMP_ACT_ALLOW");
        add_arg(&p, add_rule(&p, "SCMP_ACT_ERRNO", 90, prio, 1), 0, cur_case->op, cur_case->value,
                cur_case->valuetwo);
        struct seccomp_prog *prog = compile_ok(&p);
        int st = run_child(child_op, prog);
        if (!exited_ok(st))
            printf("# operator %s failed\n", cur_case->op);
        CHECK(exited_ok(st));
        seccomp_prog_free(prog);
    }
}

static void child_killed(const struct seccomp_prog *prog)
{
    load_nnp(prog);
    syscall(SYS_getppid);
    CCHECK(!"still alive after a SCMP_ACT_KILL_PROCESS syscall");
}

TEST(kill_process)
{
    static char *names[] = {"getppid"};
    struct profile p;
    profile_init(&p, "SCMP_ACT_ALLOW");
    add_rule(&p, "SCMP_ACT_KILL_PROCESS", -1, names, 1);
    struct seccomp_prog *prog = compile_ok(&p);
    int st = run_child(child_killed, prog);
    CHECK(WIFSIGNALED(st));
    CHECK_INT(WIFSIGNALED(st) ? WTERMSIG(st) : 0, SIGSYS);
    seccomp_prog_free(prog);
}

/* Without NNP the load needs CAP_SYS_ADMIN: the caller must load before dropping capabilities. */
static void child_no_nnp(const struct seccomp_prog *prog)
{
    ka_err e = {0};
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2];
    CCHECK(capget(&hdr, d) == 0);
    d[CAP_SYS_ADMIN / 32].effective &= ~(1u << (CAP_SYS_ADMIN % 32));
    CCHECK(capset(&hdr, d) == 0);
    CCHECK(seccomp_prog_load(prog, &e) == -1 && e.errnum == EACCES);
    CCHECK(strstr(e.msg, "seccomp") != NULL);
    d[CAP_SYS_ADMIN / 32].effective |= 1u << (CAP_SYS_ADMIN % 32);
    CCHECK(capset(&hdr, d) == 0);
    CCHECK(seccomp_prog_load(prog, &e) == 0);
    CCHECK(mkdir(tmp_path(), 0700) == -1 && errno == 124);
}

TEST(load_without_nnp_needs_sys_admin)
{
    static char *names[] = {"mkdir", "mkdirat"};
    static char *flags[] = {"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                            "SECCOMP_FILTER_FLAG_TSYNC"};
    struct profile p;
    profile_init(&p, "SCMP_ACT_ALLOW");
    p.sc.flags = flags;
    p.sc.n_flags = ARRAY_SIZE(flags);
    add_rule(&p, "SCMP_ACT_ERRNO", 124, names, ARRAY_SIZE(names));
    struct seccomp_prog *prog = compile_ok(&p);
    CHECK(exited_ok(run_child(child_no_nnp, prog)));
    CHECK(access(tmp_path(), F_OK) != 0);
    seccomp_prog_free(prog);
}

RUN(null_profile, error_default_action, error_rule_action, error_op_and_index, error_arch_names_flags,
    compile_variants, errno_rule, errnoret_unset_is_eperm, argument_rules, every_operator, kill_process,
    load_without_nnp_needs_sys_admin)
