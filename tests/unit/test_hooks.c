/* Unit tests for OCI hooks: state JSON, the async (event loop) and sync runners, guest hook scanning. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/hooks.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "unit.h"

#define GUARD_S 10.0

static char tmpdir[64];

/* ---- helpers ---- */

static void tmp_setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-hooks-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
}

static void tmp_cleanup(void)
{
    ka_err e;
    CHECK(fs_remove_tree(tmpdir, &e) == 0);
}

/* tmpdir/name, in one of 8 rotating buffers. */
static const char *tp(const char *name)
{
    static char bufs[8][256];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", tmpdir, name);
    return b;
}

static const char *script(const char *name, const char *body, mode_t mode)
{
    char text[4096];
    ka_err e;
    const char *path = tp(name);
    snprintf(text, sizeof(text), "#!/bin/sh\n%s\n", body);
    CHECK(fs_create_file(path, text, (size_t)-1, mode, &e) == 0);
    CHECK(chmod(path, mode) == 0);
    return path;
}

/* Contents of tmpdir/name ("" when missing), in a static buffer. */
static const char *slurp(const char *name)
{
    static char out[256 * 1024];
    char *data = NULL;
    ka_err e;
    out[0] = '\0';
    if (fs_read_file(tp(name), &data, NULL, &e) == 0)
        snprintf(out, sizeof(out), "%s", data);
    free(data);
    return out;
}

static Grpc__Hook mkhook(const char *path, char **args, size_t n_args, char **env, size_t n_env,
                         int64_t timeout)
{
    Grpc__Hook h = GRPC__HOOK__INIT;
    h.path = (char *)path;
    h.args = args;
    h.n_args = n_args;
    h.env = env;
    h.n_env = n_env;
    h.timeout = timeout;
    return h;
}

static double secs_since(uint64_t t0)
{
    return (double)(loop_now_ns() - t0) / 1e9;
}

/* Child processes of this process (zombies included), from /proc. */
static int count_children(void)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int n = 0;
    while (d && (de = readdir(d))) {
        char path[300], buf[512], st;
        int ppid;
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t k = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        if (fd >= 0)
            close(fd);
        buf[k > 0 ? k : 0] = '\0';
        char *rp = strrchr(buf, ')');
        if (rp && sscanf(rp + 2, "%c %d", &st, &ppid) == 2 && ppid == getpid())
            n++;
    }
    if (d)
        closedir(d);
    return n;
}

/* Whether pid is gone or a zombie, waiting up to 2 s. */
static bool proc_dead(pid_t pid)
{
    uint64_t t0 = loop_now_ns();
    do {
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return true;
        ssize_t k = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        buf[k > 0 ? k : 0] = '\0';
        char *rp = strrchr(buf, ')');
        if (!rp || rp[2] == 'Z' || rp[2] == 'X')
            return true;
        usleep(20000);
    } while (secs_since(t0) < 2.0);
    return false;
}

/* ---- async driver ---- */

struct rec {
    int calls;
    bool failed;
    char msg[KA_ERR_MSG_MAX];
};

static void on_done(void *arg, const ka_err *err)
{
    struct rec *r = arg;
    r->calls++;
    r->failed = err != NULL;
    snprintf(r->msg, sizeof(r->msg), "%s", err ? err->msg : "");
}

static struct loop *mkloop(void)
{
    ka_err e;
    struct loop *l = loop_new(&e);
    CHECK(l != NULL);
    CHECK(loop_children_init(l, &e) == 0);
    return l;
}

static void spin(struct loop *l, double secs)
{
    ka_err e;
    uint64_t t0 = loop_now_ns();
    while (secs_since(t0) < secs)
        loop_run_once(l, 10, &e);
}

static double run_until_done(struct loop *l, struct rec *r)
{
    ka_err e;
    uint64_t t0 = loop_now_ns();
    while (!r->calls && secs_since(t0) < GUARD_S)
        CHECK(loop_run_once(l, 50, &e) >= 0);
    return secs_since(t0);
}

/* Run list on a fresh loop until done; returns the elapsed seconds. */
static double run_async(const struct hook_list *list, const char *state, struct rec *r)
{
    ka_err e;
    struct loop *l = mkloop();
    memset(r, 0, sizeof(*r));
    struct hooks_run *run = hooks_run_async(l, list, state, on_done, r, &e);
    CHECK(run != NULL);
    CHECK_INT(r->calls, 0); /* never from inside hooks_run_async */
    double t = run ? run_until_done(l, r) : 0;
    CHECK_INT(r->calls, 1);
    CHECK_INT(count_children(), 0);
    loop_free(l);
    return t;
}

/* Same with the synchronous runner: msg "" on success. */
static double run_sync(const struct hook_list *list, const char *state, struct rec *r)
{
    ka_err e;
    uint64_t t0 = loop_now_ns();
    memset(r, 0, sizeof(*r));
    r->calls = 1;
    r->failed = hooks_run_sync(list, state, &e) < 0;
    snprintf(r->msg, sizeof(r->msg), "%s", r->failed ? e.msg : "");
    CHECK_INT(count_children(), 0);
    return secs_since(t0);
}

typedef double (*runner)(const struct hook_list *, const char *, struct rec *);

static char *sample_state(void)
{
    Grpc__Spec__AnnotationsEntry a1 = GRPC__SPEC__ANNOTATIONS_ENTRY__INIT, a2 = a1;
    a1.key = "io.katacontainers.x";
    a1.value = "say \"hi\"\n";
    a2.key = "k2";
    a2.value = "v2";
    Grpc__Spec__AnnotationsEntry *ann[] = {&a1, &a2};
    return hooks_state_json("1.0.2", "ctr-1", "created", 1234, "/run/kata/ctr-1", ann, 2);
}

/* 100 annotations of 1 KiB each. */
static char *big_state(void)
{
    static char keys[100][16];
    char *val = malloc(1025);
    memset(val, 'x', 1024);
    val[1024] = '\0';
    Grpc__Spec__AnnotationsEntry ents[100], *ptrs[100];
    for (int i = 0; i < 100; i++) {
        ents[i] = (Grpc__Spec__AnnotationsEntry)GRPC__SPEC__ANNOTATIONS_ENTRY__INIT;
        snprintf(keys[i], sizeof(keys[i]), "key%d", i);
        ents[i].key = keys[i];
        ents[i].value = val;
        ptrs[i] = &ents[i];
    }
    char *s = hooks_state_json("1.0.2", "big", "created", 1, "/b", ptrs, 100);
    free(val);
    return s;
}

/* ---- state JSON ---- */

TEST(state_json_basic)
{
    char *s = sample_state();
    CHECK_STR(s,
              "{\"ociVersion\":\"1.0.2\",\"id\":\"ctr-1\",\"status\":\"created\",\"pid\":1234,"
              "\"bundle\":\"/run/kata/ctr-1\",\"annotations\":{\"io.katacontainers.x\":\"say \\\"hi\\\"\\n\","
              "\"k2\":\"v2\"}}");
    free(s);
    s = hooks_state_json(NULL, NULL, NULL, 0, NULL, NULL, 0);
    CHECK_STR(
        s, "{\"ociVersion\":\"\",\"id\":\"\",\"status\":\"\",\"pid\":0,\"bundle\":\"\",\"annotations\":{}}");
    free(s);
}

TEST(state_json_escaping)
{
    const char *id = "a\"b\\c\n\t\r\b\f\x01\x1f/\x7f"
                     "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\xff|\xc3(|\xc0\xaf|\xed\xa0\x80|\xe2\x82";
    char *s = hooks_state_json("1", id, "running", -1, "b", NULL, 0);
    CHECK_STR(s, "{\"ociVersion\":\"1\",\"id\":\"a\\\"b\\\\c\\n\\t\\r\\b\\f\\u0001\\u001f/\x7f"
                 "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\\ufffd|\\ufffd(|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
                 "\\ufffd\\ufffd\",\"status\":\"running\",\"pid\":-1,\"bundle\":\"b\",\"annotations\":{}}");
    free(s);
    Grpc__Spec__AnnotationsEntry a = GRPC__SPEC__ANNOTATIONS_ENTRY__INIT, *ann[] = {NULL, &a};
    a.key = "k\"";
    a.value = "\\";
    s = hooks_state_json("1", "i", "s", 1, "b", ann, 2);
    CHECK_STR(s, "{\"ociVersion\":\"1\",\"id\":\"i\",\"status\":\"s\",\"pid\":1,\"bundle\":\"b\","
                 "\"annotations\":{\"k\\\"\":\"\\\\\"}}");
    free(s);
}

/* ---- shared scenarios for both runners ---- */

static void check_stdin_args_env(runner run)
{
    char cmd[512], *state = sample_state();
    struct rec r;
    tmp_setup();
    snprintf(cmd, sizeof(cmd),
             "cat > %s; printf '%%s|%%s|%%s' \"$0\" \"$1\" \"$#\" > %s; env > %s; "
             "ls /proc/$$/fd | tr '\\n' ' ' > %s",
             tp("stdin"), tp("args"), tp("env"), tp("fds"));
    char *args[] = {"sh", "-c", cmd, "zero", "one"};
    char *env[] = {"FOO=bar", "  SPACED = v v  ", "NOEQ", "=novalue", "FOO=baz", "EMPTY="};
    Grpc__Hook h = mkhook("/bin/sh", args, 5, env, 6, 0), *hp[] = {&h};
    struct hook_list list = {1, hp};
    run(&list, state, &r);
    CHECK(!r.failed);
    CHECK_STR(r.msg, "");
    CHECK_STR(slurp("fds"), "0 1 2 ");
    CHECK_STR(slurp("stdin"), state);
    CHECK_STR(slurp("args"), "zero|one|1");
    const char *envs = slurp("env");
    CHECK(strstr(envs, "FOO=baz\n") != NULL);
    CHECK(strstr(envs, "SPACED=v v\n") != NULL);
    CHECK(strstr(envs, "EMPTY=\n") != NULL);
    CHECK(strstr(envs, "FOO=bar") == NULL);
    CHECK(strstr(envs, "NOEQ") == NULL);
    CHECK(strstr(envs, "novalue") == NULL);
    CHECK(strncmp(envs, "PATH=", 5) != 0 && strstr(envs, "\nPATH=") == NULL); /* env = hook env only */
    /* no args: argv = [path] */
    snprintf(cmd, sizeof(cmd), "printf '%%s|%%s' \"$0\" \"$#\" > %s", tp("noargs"));
    const char *p = script("noargs.sh", cmd, 0755);
    h = mkhook(p, NULL, 0, NULL, 0, 0);
    run(&list, state, &r);
    CHECK(!r.failed);
    char want[300];
    snprintf(want, sizeof(want), "%s|0", p);
    CHECK_STR(slurp("noargs"), want);
    free(state);
    tmp_cleanup();
}

/* The hook starts with no blocked or ignored signal (a shell would hide that: dash clears its mask). */
static void check_signal_state(runner run)
{
    struct rec r;
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old); /* as the loop (async) or the inherited mask (container child) */
    void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN); /* as the agent */
    char *args[] = {"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status", "/nonexistent"};
    Grpc__Hook h = mkhook("/bin/grep", args, 5, NULL, 0, 0), *hp[] = {&h};
    struct hook_list list = {1, hp};
    run(&list, "{}", &r);
    signal(SIGPIPE, old_pipe);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&chld, NULL, &zero) > 0)
        ;
    sigprocmask(SIG_SETMASK, &old, NULL);
    CHECK_STR(r.msg,
              "hook /bin/grep: exit status 2: /proc/self/status:SigBlk:\t0000000000000000\n"
              "/proc/self/status:SigIgn:\t0000000000000000\ngrep: /nonexistent: No such file or directory");
}

static void check_order_and_failure(runner run)
{
    char b1[300], b2[300], b3[300], want[1024];
    struct rec r;
    tmp_setup();
    snprintf(b1, sizeof(b1), "echo 1 >> %s", tp("order"));
    snprintf(b2, sizeof(b2), "echo 2 >> %s", tp("order"));
    snprintf(b3, sizeof(b3), "echo 3 >> %s", tp("order"));
    Grpc__Hook h1 = mkhook(script("h1", b1, 0755), NULL, 0, NULL, 0, 0);
    Grpc__Hook h2 = mkhook(script("h2", b2, 0755), NULL, 0, NULL, 0, 0);
    Grpc__Hook h3 = mkhook(script("h3", b3, 0755), NULL, 0, NULL, 0, 0);
    Grpc__Hook *hp[] = {&h1, &h2, &h3};
    struct hook_list list = {3, hp};
    run(&list, "{}", &r);
    CHECK(!r.failed);
    CHECK_STR(slurp("order"), "1\n2\n3\n");
    /* a failing middle hook stops the sequence; stdout and stderr tail in the message */
    unlink(tp("order"));
    h2 = mkhook(script("fail", "echo to-stdout; echo oops >&2; exit 3", 0755), NULL, 0, NULL, 0, 0);
    run(&list, "{}", &r);
    CHECK(r.failed);
    snprintf(want, sizeof(want), "hook %s: exit status 3: to-stdout\noops", tp("fail"));
    CHECK_STR(r.msg, want);
    CHECK_STR(slurp("order"), "1\n");
    /* killed by a signal */
    h1 = mkhook(script("sig", "kill -TERM $$", 0755), NULL, 0, NULL, 0, 0);
    run(&list, "{}", &r);
    snprintf(want, sizeof(want), "hook %s: killed by signal 15 (Terminated)", tp("sig"));
    CHECK_STR(r.msg, want);
    tmp_cleanup();
}

static void check_timeout(runner run)
{
    char body[300], want[400], pidbuf[32];
    struct rec r;
    tmp_setup();
    /* the shell's background child is in the hook's process group and must die too */
    snprintf(body, sizeof(body), "sleep 30 & echo $! > %s; wait", tp("bgpid"));
    Grpc__Hook h = mkhook(script("slow", body, 0755), NULL, 0, NULL, 0, 1), *hp[] = {&h};
    struct hook_list list = {1, hp};
    double t = run(&list, "{}", &r);
    printf("# timeout reported after %.3f s\n", t);
    CHECK(t >= 0.95 && t < 1.5);
    snprintf(want, sizeof(want), "hook %s: killed after 1 s timeout", tp("slow"));
    CHECK_STR(r.msg, want);
    snprintf(pidbuf, sizeof(pidbuf), "%s", slurp("bgpid"));
    CHECK(atoi(pidbuf) > 0);
    if (atoi(pidbuf) > 0)
        CHECK(proc_dead(atoi(pidbuf)));
    tmp_cleanup();
}

static void check_exec_errors(runner run)
{
    char want[400];
    struct rec r;
    tmp_setup();
    Grpc__Hook h = mkhook("/nonexistent/hook", NULL, 0, NULL, 0, 0), *hp[] = {&h};
    struct hook_list list = {1, hp};
    run(&list, "{}", &r);
    CHECK_STR(r.msg, "hook /nonexistent/hook: exec: No such file or directory");
    h = mkhook(script("noexec", "exit 0", 0644), NULL, 0, NULL, 0, 0);
    run(&list, "{}", &r);
    snprintf(want, sizeof(want), "hook %s: exec: Permission denied", tp("noexec"));
    CHECK_STR(r.msg, want);
    h = mkhook("relative/hook", NULL, 0, NULL, 0, 0);
    run(&list, "{}", &r);
    CHECK_STR(r.msg, "hook relative/hook: path is not absolute");
    /* a hook whose own exit code is 127 is not an exec failure */
    h = mkhook(script("e127", "exit 127", 0755), NULL, 0, NULL, 0, 0);
    run(&list, "{}", &r);
    snprintf(want, sizeof(want), "hook %s: exit status 127", tp("e127"));
    CHECK_STR(r.msg, want);
    tmp_cleanup();
}

static void check_large_state(runner run)
{
    char body[300];
    struct rec r;
    char *state = big_state();
    CHECK(state && strlen(state) > 100 * 1024);
    tmp_setup();
    Grpc__Hook h = mkhook(script("ignore", "exit 0", 0755), NULL, 0, NULL, 0, 2), *hp[] = {&h};
    struct hook_list list = {1, hp};
    double t = run(&list, state, &r);
    CHECK(!r.failed);
    CHECK(t < 1.0);
    snprintf(body, sizeof(body), "sleep 0.2; cat > %s", tp("big"));
    h = mkhook(script("reader", body, 0755), NULL, 0, NULL, 0, 5);
    run(&list, state, &r);
    CHECK(!r.failed);
    CHECK(strcmp(slurp("big"), state) == 0);
    free(state);
    tmp_cleanup();
}

static void check_output_tail(runner run)
{
    char want[400];
    struct rec r;
    tmp_setup();
    const char *p =
        script("chatty",
               "i=0; while [ $i -lt 400 ]; do echo \"line $i padding padding padding\"; i=$((i+1)); "
               "done; printf 'bad\\001\\377x\\nEND' >&2; exit 1",
               0755);
    Grpc__Hook h = mkhook(p, NULL, 0, NULL, 0, 0), *hp[] = {&h};
    struct hook_list list = {1, hp};
    run(&list, "{}", &r);
    snprintf(want, sizeof(want), "hook %s: exit status 1: ", p);
    CHECK(strncmp(r.msg, want, strlen(want)) == 0);
    size_t n = strlen(r.msg);
    CHECK(n > 900 && n < KA_ERR_MSG_MAX);
    CHECK(n > 10 && strcmp(r.msg + n - 10, "bad??x\nEND") == 0);
    CHECK(strstr(r.msg, "line 399 padding") != NULL);
    tmp_cleanup();
}

/* ---- async ---- */

TEST(async_stdin_args_env)
{
    check_stdin_args_env(run_async);
}

TEST(async_signal_state)
{
    check_signal_state(run_async);
}

TEST(async_order_and_failure)
{
    check_order_and_failure(run_async);
}

TEST(async_timeout)
{
    check_timeout(run_async);
}

TEST(async_exec_errors)
{
    check_exec_errors(run_async);
}

TEST(async_large_state)
{
    check_large_state(run_async);
}

TEST(async_output_tail)
{
    check_output_tail(run_async);
}

TEST(async_empty_list)
{
    struct rec r;
    struct hook_list list = {0, NULL};
    run_async(&list, "{}", &r);
    CHECK(!r.failed);
    run_async(NULL, NULL, &r);
    CHECK(!r.failed);
}

struct tick {
    struct loop_timer t;
    struct rec *r;
    bool fired_before_done;
};

static void on_tick(struct loop_timer *t)
{
    struct tick *k = container_of(t, struct tick, t);
    k->fired_before_done = k->r->calls == 0;
}

TEST(async_loop_stays_responsive)
{
    struct rec r = {0};
    ka_err e;
    char *state = big_state();
    tmp_setup();
    struct loop *l = mkloop();
    struct tick k = {.r = &r};
    loop_timer_init(&k.t, on_tick);
    loop_timer_start(l, &k.t, 100 * 1000000ull);
    Grpc__Hook h = mkhook(script("lazy", "sleep 0.5", 0755), NULL, 0, NULL, 0, 0), *hp[] = {&h};
    struct hook_list list = {1, hp};
    uint64_t t0 = loop_now_ns();
    CHECK(hooks_run_async(l, &list, state, on_done, &r, &e) != NULL);
    CHECK(secs_since(t0) < 0.1);
    run_until_done(l, &r);
    CHECK(!r.failed);
    CHECK(k.fired_before_done);
    loop_free(l);
    free(state);
    tmp_cleanup();
}

TEST(async_cancel)
{
    struct rec r = {0};
    ka_err e;
    char body[300], pidbuf[32];
    tmp_setup();
    struct loop *l = mkloop();
    snprintf(body, sizeof(body), "echo $$ > %s; exec sleep 30", tp("pid"));
    Grpc__Hook h1 = mkhook(script("ok", "exit 0", 0755), NULL, 0, NULL, 0, 0);
    Grpc__Hook h2 = mkhook(script("slow", body, 0755), NULL, 0, NULL, 0, 0), *hp[] = {&h1, &h2};
    struct hook_list list = {2, hp};
    struct hooks_run *run = hooks_run_async(l, &list, "{}", on_done, &r, &e);
    CHECK(run != NULL);
    uint64_t t0 = loop_now_ns();
    while (!slurp("pid")[0] && secs_since(t0) < GUARD_S) /* cancel while the 2nd hook runs */
        spin(l, 0.02);
    snprintf(pidbuf, sizeof(pidbuf), "%s", slurp("pid"));
    CHECK_INT(count_children(), 1);
    hooks_run_cancel(run);
    spin(l, 0.3);
    CHECK_INT(r.calls, 0);
    CHECK_INT(count_children(), 0);
    CHECK(atoi(pidbuf) > 0 && proc_dead(atoi(pidbuf)));
    /* cancelled before the loop ever ran; and an empty run whose done was only deferred */
    run = hooks_run_async(l, &list, "{}", on_done, &r, &e);
    hooks_run_cancel(run);
    run = hooks_run_async(l, NULL, "{}", on_done, &r, &e);
    hooks_run_cancel(run);
    spin(l, 0.3);
    CHECK_INT(r.calls, 0);
    CHECK_INT(count_children(), 0);
    hooks_run_cancel(NULL);
    loop_free(l);
    tmp_cleanup();
}

/* ---- sync ---- */

TEST(sync_stdin_args_env)
{
    check_stdin_args_env(run_sync);
}

TEST(sync_signal_state)
{
    check_signal_state(run_sync);
}

TEST(sync_order_and_failure)
{
    check_order_and_failure(run_sync);
}

TEST(sync_timeout)
{
    check_timeout(run_sync);
}

TEST(sync_exec_errors)
{
    check_exec_errors(run_sync);
}

TEST(sync_large_state)
{
    check_large_state(run_sync);
}

TEST(sync_output_tail)
{
    check_output_tail(run_sync);
}

TEST(sync_sigchld_blocked)
{
    /* as in the container child, which inherits the loop's signal mask */
    sigset_t set, old;
    struct rec r;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &old);
    check_timeout(run_sync);
    tmp_setup();
    Grpc__Hook h = mkhook(script("ok", "cat >/dev/null", 0755), NULL, 0, NULL, 0, 0), *hp[] = {&h};
    struct hook_list list = {1, hp};
    run_sync(&list, "{}", &r);
    CHECK(!r.failed);
    tmp_cleanup();
    struct timespec zero = {0, 0};
    while (sigtimedwait(&set, NULL, &zero) > 0)
        ;
    sigprocmask(SIG_SETMASK, &old, NULL);
}

/* ---- guest hooks ---- */

TEST(scan_guest)
{
    struct hook_list list = {0};
    ka_err e;
    char want[300];
    tmp_setup();
    CHECK(mkdir(tp("prestart"), 0755) == 0);
    script("prestart/b", "exit 0", 0755);
    script("prestart/a", "exit 0", 0700);
    script("prestart/g", "exit 0", 0610); /* group exec bit only */
    script("prestart/c", "exit 0", 0644);
    CHECK(mkdir(tp("prestart/sub"), 0755) == 0);
    CHECK(symlink(tp("prestart/a"), tp("prestart/link")) == 0);
    CHECK(symlink(tp("prestart/sub"), tp("prestart/dirlink")) == 0);
    CHECK(hooks_scan_guest(tmpdir, "prestart", &list, &e) == 0);
    CHECK_INT(list.n, 3);
    const char *names[] = {"a", "b", "g"};
    for (size_t i = 0; i < list.n && i < 3; i++) {
        snprintf(want, sizeof(want), "%s/prestart/%s", tmpdir, names[i]);
        CHECK_STR(list.hooks[i]->path, want);
        CHECK_INT(list.hooks[i]->n_args, 2);
        CHECK_STR(list.hooks[i]->args[0], names[i]);
        CHECK_STR(list.hooks[i]->args[1], "prestart");
        CHECK_INT(list.hooks[i]->n_env, 0);
        CHECK_INT(list.hooks[i]->timeout, 0);
    }
    hooks_list_free(&list);
    CHECK_INT(list.n, 0);
    CHECK(list.hooks == NULL);
    /* missing type directory: empty, not an error; a file in its place is */
    CHECK(hooks_scan_guest(tmpdir, "poststop", &list, &e) == 0);
    CHECK_INT(list.n, 0);
    hooks_list_free(&list);
    CHECK(hooks_scan_guest("/nonexistent-dir", "prestart", &list, &e) == 0);
    CHECK_INT(list.n, 0);
    script("poststart", "", 0644);
    CHECK(hooks_scan_guest(tmpdir, "poststart", &list, &e) == -1);
    CHECK(strstr(e.msg, "Not a directory") != NULL);
    hooks_list_free(&list);
    tmp_cleanup();
}

TEST(scan_guest_then_run)
{
    struct hook_list list = {0};
    struct rec r;
    ka_err e;
    char body[300];
    tmp_setup();
    CHECK(mkdir(tp("poststart"), 0755) == 0);
    snprintf(body, sizeof(body), "echo \"$0 $1\" >> %s", tp("log"));
    script("poststart/01-first", body, 0755);
    script("poststart/02-second", body, 0755);
    CHECK(hooks_scan_guest(tmpdir, "poststart", &list, &e) == 0);
    run_async(&list, "{}", &r);
    CHECK(!r.failed);
    /* a script's $0 is its path; args[0] (the name) is argv[0], replaced by the kernel for #! scripts */
    char want[1024];
    snprintf(want, sizeof(want), "%s poststart\n%s poststart\n", tp("poststart/01-first"),
             tp("poststart/02-second"));
    CHECK_STR(slurp("log"), want);
    hooks_list_free(&list);
    tmp_cleanup();
}

static void setup_log(void)
{
    ka_log_set_fd(STDERR_FILENO);
    ka_log_level = KA_LOG_DEBUG;
}

TEST(zz_no_leftovers)
{
    CHECK_INT(count_children(), 0);
}

TEST(aa_setup)
{
    setup_log();
}

RUN(aa_setup, state_json_basic, state_json_escaping, async_stdin_args_env, async_signal_state,
    async_order_and_failure, async_timeout, async_exec_errors, async_large_state, async_output_tail,
    async_empty_list, async_loop_stays_responsive, async_cancel, sync_stdin_args_env, sync_signal_state,
    sync_order_and_failure, sync_timeout, sync_exec_errors, sync_large_state, sync_output_tail,
    sync_sigchld_blocked, scan_guest, scan_guest_then_run, zz_no_leftovers)
