/* Kernel module loading tests: fake modprobe scripts driven by a real event loop. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest/kmod.h"
#include "loop/loop.h"
#include "util/fs.h"
#include "util/log.h"
#include "unit.h"

static char g_dir[128];

struct result {
    int calls;
    bool failed;
    ka_err err;
};

static void on_done(void *arg, const ka_err *err)
{
    struct result *r = arg;
    r->calls++;
    r->failed = err != NULL;
    if (err)
        r->err = *err;
}

static const char *tmp(const char *name)
{
    static char bufs[4][PATH_MAX];
    static int i;
    char *b = bufs[i++ % 4];
    snprintf(b, PATH_MAX, "%s/%s", g_dir, name);
    return b;
}

/* A modprobe stand-in: "bad" fails with stderr, "sig" kills itself, "slow" sleeps, "big" floods stderr,
 * anything else appends its arguments and "--" to <dir>/args. */
static const char *write_script(void)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "#!/bin/sh\n"
             "case \"$2\" in\n"
             "bad) echo \"insmod attempt\"; echo \"modprobe: FATAL: Module $2 not found\" >&2; exit 3;;\n"
             "sig) kill -9 $$;;\n"
             "slow) echo $$ > %s/pid; exec sleep 30;;\n"
             "big) i=0; while [ $i -lt 300 ]; do echo \"line $i of noise noise noise\" >&2; i=$((i+1)); done;"
             " echo THE-END >&2; exit 1;;\n"

             "esac\n"
             "printf '%%s\\n' \"$@\" -- >> %s/args\n"
             "echo \"insmod /lib/modules/$2.ko\"\n",
             g_dir, g_dir);
    const char *p = tmp("modprobe");
    ka_err e;
    if (fs_create_file(p, text, (size_t)-1, 0755, &e) < 0)
        printf("# %s\n", e.msg);
    return p;
}

static char *read_text(const char *p)
{
    char *s = NULL;
    ka_err e;
    if (fs_read_file(p, &s, NULL, &e) < 0)
        return NULL;
    return s;
}

static struct loop *setup(void)
{
    ka_err e;
    snprintf(g_dir, sizeof(g_dir), "/tmp/ka-kmod-XXXXXX");
    if (!mkdtemp(g_dir))
        return NULL;
    struct loop *l = loop_new(&e);
    if (l && loop_children_init(l, &e) < 0) {
        loop_free(l);
        return NULL;
    }
    return l;
}

static void teardown(struct loop *l)
{
    char cmd[256];
    loop_free(l);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        printf("# cleanup failed\n");
}

/* Run the loop until *calls becomes non-zero, at most 10 s. */
static bool run_until_done(struct loop *l, const int *calls)
{
    ka_err e;
    uint64_t deadline = loop_now_ns() + 10ull * 1000000000ull;
    while (*calls == 0 && loop_now_ns() < deadline)
        if (loop_run_once(l, 50, &e) < 0)
            return false;
    return *calls != 0;
}

static Grpc__KernelModule module(const char *name, char **params, size_t n)
{
    Grpc__KernelModule m = GRPC__KERNEL_MODULE__INIT;
    m.name = (char *)name;
    m.parameters = params;
    m.n_parameters = n;
    return m;
}

TEST(args_passed)
{
    struct loop *l = setup();
    struct result r = {0};
    ka_err e;
    char *params[] = {"a=1", "b=two words"};
    Grpc__KernelModule m = module("foo", params, 2);
    Grpc__KernelModule *mods[] = {&m};
    CHECK(l != NULL);
    struct kmod_load *k = kmod_load_async(l, write_script(), mods, 1, on_done, &r, &e);
    CHECK(k != NULL);
    CHECK(run_until_done(l, &r.calls));
    CHECK_INT(r.calls, 1);
    CHECK(!r.failed);
    char *args = read_text(tmp("args"));
    CHECK_STR(args, "-v\nfoo\na=1\nb=two words\n--\n");
    free(args);
    teardown(l);
}

TEST(modules_in_order)
{
    struct loop *l = setup();
    struct result r = {0};
    ka_err e;
    char *p2[] = {"x=2"};
    Grpc__KernelModule a = module("one", NULL, 0), b = module("two", p2, 1), c = module("three", NULL, 0);
    Grpc__KernelModule *mods[] = {&a, &b, &c};
    CHECK(kmod_load_async(l, write_script(), mods, 3, on_done, &r, &e) != NULL);
    CHECK(run_until_done(l, &r.calls));
    CHECK(!r.failed);
    char *args = read_text(tmp("args"));
    CHECK_STR(args, "-v\none\n--\n-v\ntwo\nx=2\n--\n-v\nthree\n--\n");
    free(args);
    teardown(l);
}

TEST(failure_reports_code_and_stderr)
{
    struct loop *l = setup();
    struct result r = {0};
    ka_err e;
    Grpc__KernelModule a = module("bad", NULL, 0), b = module("after", NULL, 0);
    Grpc__KernelModule *mods[] = {&a, &b};
    CHECK(kmod_load_async(l, write_script(), mods, 2, on_done, &r, &e) != NULL);
    CHECK(run_until_done(l, &r.calls));
    CHECK(r.failed);
    CHECK_INT(r.err.status, KA_INTERNAL);
    CHECK(strstr(r.err.msg, "return code: 3") != NULL);
    CHECK(strstr(r.err.msg, "stderr: modprobe: FATAL: Module bad not found") != NULL);
    CHECK(strstr(r.err.msg, "stdout: insmod attempt") != NULL);
    printf("# %s\n", r.err.msg);
    /* the sequence stops at the failure */
    char *args = read_text(tmp("args"));
    CHECK(args == NULL);
    free(args);
    /* a few more rounds: done is not called again */
    for (int i = 0; i < 3; i++)
        loop_run_once(l, 20, &e);
    CHECK_INT(r.calls, 1);
    teardown(l);
}

TEST(killed_by_signal)
{
    struct loop *l = setup();
    struct result r = {0};
    ka_err e;
    Grpc__KernelModule a = module("sig", NULL, 0);
    Grpc__KernelModule *mods[] = {&a};
    CHECK(kmod_load_async(l, write_script(), mods, 1, on_done, &r, &e) != NULL);
    CHECK(run_until_done(l, &r.calls));
    CHECK(r.failed);
    CHECK(strstr(r.err.msg, "terminated by signal 9") != NULL);
    teardown(l);
}

TEST(stderr_tail_is_bounded)
{
    struct loop *l = setup();
    struct result r = {0};
    ka_err e;
    Grpc__KernelModule a = module("big", NULL, 0);
    Grpc__KernelModule *mods[] = {&a};
    CHECK(kmod_load_async(l, write_script(), mods, 1, on_done, &r, &e) != NULL);
    CHECK(run_until_done(l, &r.calls));
    CHECK(r.failed);
    CHECK(strstr(r.err.msg, "THE-END") != NULL);
    CHECK(strstr(r.err.msg, "stderr: ...") != NULL);
    CHECK(strstr(r.err.msg, "line 0 ") == NULL);
    teardown(l);
}

TEST(empty_name)
{
    struct loop *l = setup();
    struct result r = {0};
    ka_err e = {0};
    Grpc__KernelModule a = module("ok", NULL, 0), b = module("", NULL, 0);
    Grpc__KernelModule *mods[] = {&a, &b};
    CHECK(kmod_load_async(l, write_script(), mods, 2, on_done, &r, &e) == NULL);
    CHECK_STR(e.msg, "Kernel module name is empty");
    CHECK_INT(e.status, KA_INVALID_ARGUMENT);
    for (int i = 0; i < 3; i++)
        loop_run_once(l, 20, &e);
    CHECK_INT(r.calls, 0);
    CHECK(access(tmp("args"), F_OK) < 0); /* nothing ran */
    teardown(l);
}

TEST(no_modules)
{
    struct loop *l = setup();
    struct result r = {0};
    ka_err e;
    CHECK(kmod_load_async(l, "/nonexistent/modprobe", NULL, 0, on_done, &r, &e) != NULL);
    CHECK_INT(r.calls, 0); /* from the loop, not from inside the call */
    CHECK(run_until_done(l, &r.calls));
    CHECK_INT(r.calls, 1);
    CHECK(!r.failed);
    teardown(l);
}

TEST(missing_modprobe)
{
    struct loop *l = setup();
    struct result r = {0};
    ka_err e;
    Grpc__KernelModule a = module("foo", NULL, 0);
    Grpc__KernelModule *mods[] = {&a};
    CHECK(kmod_load_async(l, tmp("no-such-modprobe"), mods, 1, on_done, &r, &e) != NULL);
    CHECK(run_until_done(l, &r.calls));
    CHECK(r.failed);
    printf("# %s\n", r.err.msg);
    CHECK(strstr(r.err.msg, "return code: 127") != NULL);
    CHECK(strstr(r.err.msg, "No such file or directory") != NULL);
    teardown(l);
}

/* This binary run as "modprobe -v selfmask" writes its blocked-signal mask to $KMOD_TEST_MASK (a shell would
 * not do: it may reset the mask itself). */
__attribute__((constructor)) static void fake_modprobe(int argc, char **argv)
{
    const char *out = getenv("KMOD_TEST_MASK");
    if (argc < 3 || strcmp(argv[1], "-v") != 0 || strcmp(argv[2], "selfmask") != 0 || !out)
        return;
    char line[256];
    FILE *in = fopen("/proc/self/status", "re"), *f = fopen(out, "we");
    while (in && f && fgets(line, sizeof(line), in))
        if (strncmp(line, "SigBlk:", 7) == 0)
            fputs(line, f);
    if (f)
        fclose(f);
    _exit(in ? 0 : 1);
}

TEST(signal_mask_reset_in_child)
{
    struct loop *l = setup();
    struct result r = {0};
    ka_err e;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    setenv("KMOD_TEST_MASK", tmp("mask"), 1);
    Grpc__KernelModule a = module("selfmask", NULL, 0);
    Grpc__KernelModule *mods[] = {&a};
    CHECK(kmod_load_async(l, self, mods, 1, on_done, &r, &e) != NULL);
    CHECK(run_until_done(l, &r.calls));
    CHECK(!r.failed);
    char *mask = read_text(tmp("mask"));
    CHECK_STR(mask, "SigBlk:\t0000000000000000\n");
    free(mask);
    teardown(l);
}

static pid_t wait_for_pid_file(struct loop *l, const char *p)
{
    ka_err e;
    uint64_t deadline = loop_now_ns() + 10ull * 1000000000ull;
    while (loop_now_ns() < deadline) {
        char *s = read_text(p);
        pid_t pid = s ? (pid_t)atoi(s) : 0;
        free(s);
        if (pid > 0)
            return pid;
        loop_run_once(l, 20, &e);
    }
    return 0;
}

TEST(cancel_leaves_no_zombie)
{
    struct loop *l = setup();
    struct result r = {0};
    ka_err e;
    Grpc__KernelModule a = module("slow", NULL, 0), b = module("never", NULL, 0);
    Grpc__KernelModule *mods[] = {&a, &b};
    struct kmod_load *k = kmod_load_async(l, write_script(), mods, 2, on_done, &r, &e);
    CHECK(k != NULL);
    pid_t pid = wait_for_pid_file(l, tmp("pid"));
    CHECK(pid > 0);
    kmod_load_cancel(k);
    /* the loop reaps the killed child: kill(pid, 0) fails with ESRCH once it is gone (zombies still exist) */
    uint64_t deadline = loop_now_ns() + 10ull * 1000000000ull;
    while (pid > 0 && kill(pid, 0) == 0 && loop_now_ns() < deadline)
        loop_run_once(l, 20, &e);
    CHECK(pid > 0 && kill(pid, 0) < 0 && errno == ESRCH);
    CHECK_INT(r.calls, 0);
    CHECK(access(tmp("args"), F_OK) < 0);
    teardown(l);
}

TEST(main_setup)
{
    ka_log_set_fd(STDERR_FILENO);
}

RUN(main_setup, args_passed, modules_in_order, failure_reports_code_and_stderr, killed_by_signal,
    stderr_tail_is_bounded, empty_name, no_modules, missing_modprobe, signal_mask_reset_in_child,
    cancel_leaves_no_zombie)
