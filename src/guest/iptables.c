/* iptables-save / iptables-restore as children of the event loop: stdin fed, stdout and stderr read, exit. */
#include "iptables.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../loop/child_run.h"
#include "../util/cleanup.h"
#include "../util/log.h"

#define SUB      "iptables"
#define ERR_TAIL 512 /* stderr kept for the error message (the message is 1 KiB) */

struct ipt_job {
    char *prog;  /* argv[0], for messages */
    uint8_t *in; /* stdin data (copy) */
    size_t in_len;
    struct child_run run;
    struct loop *l;
    struct loop_timer stdin_timer;
    ipt_done_cb done;
    void *arg;
};

static void job_free(struct ipt_job *j)
{
    child_run_cancel(&j->run);
    loop_timer_stop(j->l, &j->stdin_timer);
    free(j->prog);
    free(j->in);
    free(j);
}

/* The end: the child killed if it still runs, answer through done (the output is still valid), free. */
static void finish(struct ipt_job *j, const ka_err *err)
{
    loop_timer_stop(j->l, &j->stdin_timer);
    if (err) {
        child_run_cancel(&j->run);
        j->done(j->arg, err, NULL, 0);
    } else {
        j->done(j->arg, NULL, j->run.out.all.data, j->run.out.all.len);
    }
    job_free(j);
}

/* The stderr tail as text safe for a status message: control and non-ASCII bytes become '?', newlines
 * become "; ", trailing whitespace is dropped, "..." in front when the start was lost. */
static void err_text(const struct child_out *s, char *out, size_t outsz)
{
    size_t len = s->len, o = 0;
    while (len > 0 && (s->tail[len - 1] == '\n' || s->tail[len - 1] == ' ' || s->tail[len - 1] == '\t'))
        len--;
    if (s->total > s->len && outsz > 4)
        o = (size_t)snprintf(out, outsz, "...");
    for (size_t i = 0; i < len && o + 3 < outsz; i++) {
        unsigned char ch = (unsigned char)s->tail[i];
        if (ch == '\n') {
            out[o++] = ';';
            out[o++] = ' ';
        } else {
            out[o++] = (ch >= 0x20 && ch < 0x7f) || ch == '\t' ? (char)ch : '?';
        }
    }
    out[o] = '\0';
}

/* Upstream's bound on feeding stdin: the call fails at once (the child is killed). */
static void on_stdin_timeout(struct loop_timer *t)
{
    struct ipt_job *j = container_of(t, struct ipt_job, stdin_timer);
    ka_err e;
    if (j->run.in.fd < 0)
        return;
    ka_fail(&e, KA_INTERNAL,
            "timeout waiting for stdin writer to complete (%s read %zu of %zu bytes in %d s)", j->prog,
            j->run.in_off, j->in_len, IPT_STDIN_TIMEOUT_S);
    finish(j, &e);
}

static void on_exited(struct child_run *r, int status)
{
    struct ipt_job *j = container_of(r, struct ipt_job, run);
    ka_err e;
    char text[ERR_TAIL * 2 + 8];
    if (r->in_off < j->in_len)
        log_debug(SUB, "%s: stdin closed after %zu of %zu bytes", j->prog, r->in_off, j->in_len);
    if (r->out.overflow) {
        ka_fail(&e, KA_RESOURCE_EXHAUSTED, "%s: output exceeds %zu bytes", j->prog, IPT_OUT_MAX);
        finish(j, &e);
        return;
    }
    if (r->timed_out) {
        ka_fail(&e, KA_DEADLINE_EXCEEDED, "%s did not finish within %d s: killed", j->prog,
                IPT_RUN_TIMEOUT_S);
        finish(j, &e);
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        finish(j, NULL);
        return;
    }
    err_text(&r->err, text, sizeof(text));
    if (WIFSIGNALED(status))
        ka_fail(&e, KA_INTERNAL, "%s failed (killed by signal %d)%s%s", j->prog, WTERMSIG(status),
                *text ? ": " : "", text);
    else
        ka_fail(&e, KA_INTERNAL, "%s failed (exit status %d)%s%s", j->prog, WEXITSTATUS(status),
                *text ? ": " : "", text);
    finish(j, &e);
}

struct ipt_job *ipt_run_async(struct loop *l, char *const argv[], const uint8_t *in, size_t in_len,
                              ipt_done_cb done, void *arg, ka_err *e)
{
    static char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL};
    struct ipt_job *j = calloc(1, sizeof(*j));
    if (!j) {
        ka_fail_errno(e, ENOMEM, "iptables job");
        return NULL;
    }
    j->l = l;
    j->done = done;
    j->arg = arg;
    child_run_init(&j->run);
    loop_timer_init(&j->stdin_timer, on_stdin_timeout);
    j->prog = strdup(argv[0]);
    if (in && in_len && (j->in = malloc(in_len)))
        memcpy(j->in, in, in_len);
    if (!j->prog || (in && in_len && !j->in)) {
        ka_fail_errno(e, ENOMEM, "iptables job");
        job_free(j);
        return NULL;
    }
    j->in_len = j->in ? in_len : 0;
    struct child_spec s = {.argv = argv,
                           .envp = envp,
                           .in = j->in,
                           .in_len = j->in_len,
                           .out_max = IPT_OUT_MAX,
                           .err_tail = ERR_TAIL,
                           .timeout_ns = (uint64_t)IPT_RUN_TIMEOUT_S * 1000000000ull};
    if (child_run_start(l, &j->run, &s, on_exited, e) < 0) {
        job_free(j);
        return NULL;
    }
    log_debug(SUB, "%s started (pid %d, %zu bytes of input)", j->prog, (int)j->run.pid, j->in_len);
    if (j->in_len)
        loop_timer_start(l, &j->stdin_timer, (uint64_t)IPT_STDIN_TIMEOUT_S * 1000000000ull);
    return j;
}

void ipt_cancel(struct ipt_job *j)
{
    if (j)
        job_free(j);
}

/* ---- iptables ---- */

int ipt_binary(bool ipv6, bool restore, char *out, size_t outsz, ka_err *e)
{
    static const char *const dirs[] = {"/usr/sbin", "/sbin"};
    char name[32];
    snprintf(name, sizeof(name), "%s-%s", ipv6 ? "ip6tables" : "iptables", restore ? "restore" : "save");
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        snprintf(out, outsz, "%s/%s", dirs[i], name);
        if (access(out, X_OK) == 0)
            return 0;
    }
    return ka_fail(e, KA_INTERNAL, "%s not found in /usr/sbin or /sbin", name);
}

struct ipt_job *ipt_save_async(struct loop *l, bool ipv6, ipt_done_cb done, void *arg, ka_err *e)
{
    char path[64];
    if (ipt_binary(ipv6, false, path, sizeof(path), e) < 0)
        return NULL;
    char *const argv[] = {path, NULL};
    return ipt_run_async(l, argv, NULL, 0, done, arg, e);
}

struct ipt_job *ipt_restore_async(struct loop *l, bool ipv6, const uint8_t *data, size_t len,
                                  ipt_done_cb done, void *arg, ka_err *e)
{
    char path[64], flag[] = "--wait", secs[] = "5";
    if (ipt_binary(ipv6, true, path, sizeof(path), e) < 0)
        return NULL;
    char *const argv[] = {path, flag, secs, NULL};
    return ipt_run_async(l, argv, data, len, done, arg, e);
}
