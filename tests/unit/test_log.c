/* The log sink hook (src/util/log.c): lines go whole to the sink instead of the fd, the fd comes back without
 * one, logging inside the sink or from a forked child goes to the fd; and agent.log_vport's buffer
 * (src/agent/log_vport.c) on a unix socket driven by a real loop: lines kept until a reader connects, the
 * oldest dropped and counted when full, whole lines only for a slow reader, stdout fallback. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/log_vport.h"
#include "loop/loop.h"
#include "util/log.h"
#include "unit.h"

/* Log lines go to stderr: stdout is TAP. */
__attribute__((constructor)) static void logs_to_stderr(void)
{
    ka_log_set_fd(STDERR_FILENO);
}

/* ---- the hook ---- */

struct capture {
    char buf[65536];
    size_t len;
    int calls;
    bool log_inside; /* the sink logs a line itself */
};

static void capture_sink(const char *line, size_t len, void *arg)
{
    struct capture *c = arg;
    c->calls++;
    if (c->len + len <= sizeof(c->buf)) {
        memcpy(c->buf + c->len, line, len);
        c->len += len;
    }
    if (c->log_inside)
        log_warn("test", "logged from inside the sink");
}

/* Read what is in the pipe (non-blocking read end). */
static size_t drain_pipe(int fd, char *buf, size_t size)
{
    size_t n = 0;
    ssize_t r;
    while (n + 1 < size && (r = read(fd, buf + n, size - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    return n;
}

static int pipe_fds[2];

static void log_to_pipe(void)
{
    if (pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC) < 0)
        abort();
    ka_log_set_fd(pipe_fds[1]);
}

static void log_to_stderr(void)
{
    ka_log_set_fd(STDERR_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
}

TEST(sink_gets_whole_lines_and_fd_comes_back)
{
    static struct capture c;
    char out[8192];
    log_to_pipe();
    memset(&c, 0, sizeof(c));
    ka_log_set_sink(capture_sink, &c);
    log_info("test", "to the sink %d", 1);
    log_debug("test", "filtered: the level is info");
    struct ka_logrec r;
    CHECK(ka_log_begin(&r, KA_LOG_WARN, "test", "a record"));
    ka_log_int(&r, "n", 42);
    ka_log_end(&r);
    CHECK_INT(c.calls, 2);
    c.buf[c.len] = '\0';
    CHECK(strstr(c.buf, "\"msg\":\"to the sink 1\"") != NULL);
    CHECK(strstr(c.buf, "\"n\":42}\n") != NULL);
    CHECK(c.len > 0 && c.buf[c.len - 1] == '\n');
    CHECK_INT(drain_pipe(pipe_fds[0], out, sizeof(out)), 0); /* nothing on the fd */

    ka_log_set_sink(NULL, NULL);
    log_info("test", "to the fd");
    CHECK_INT(c.calls, 2);
    CHECK(drain_pipe(pipe_fds[0], out, sizeof(out)) > 0 && strstr(out, "\"msg\":\"to the fd\"") != NULL);
    log_to_stderr();
}

TEST(finish_does_not_emit)
{
    static struct capture c;
    memset(&c, 0, sizeof(c));
    ka_log_set_sink(capture_sink, &c);
    struct ka_logrec r;
    CHECK(ka_log_begin(&r, KA_LOG_INFO, "test", "kept"));
    size_t n = ka_log_finish(&r);
    CHECK_INT(n, r.len);
    CHECK(n > 2 && r.buf[n - 2] == '}' && r.buf[n - 1] == '\n');
    CHECK_INT(c.calls, 0);
    ka_log_set_sink(NULL, NULL);
}

TEST(logging_inside_the_sink_goes_to_the_fd)
{
    static struct capture c;
    char out[8192];
    log_to_pipe();
    memset(&c, 0, sizeof(c));
    c.log_inside = true;
    ka_log_set_sink(capture_sink, &c);
    log_info("test", "outer");
    CHECK_INT(c.calls, 1); /* not re-entered */
    drain_pipe(pipe_fds[0], out, sizeof(out));
    CHECK(strstr(out, "logged from inside the sink") != NULL);
    CHECK(strstr(out, "outer") == NULL);
    log_info("test", "again"); /* the guard is released */
    CHECK_INT(c.calls, 2);
    ka_log_set_sink(NULL, NULL);
    log_to_stderr();
}

TEST(a_forked_child_logs_to_the_fd)
{
    static struct capture c;
    char out[8192];
    log_to_pipe();
    memset(&c, 0, sizeof(c));
    ka_log_set_sink(capture_sink, &c);
    pid_t pid = fork();
    if (pid == 0) {
        log_info("test", "from the child");
        _exit(c.calls == 0 ? 0 : 1); /* its copy of the sink's state was not touched */
    }
    int st = -1;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_INT(c.calls, 0);
    drain_pipe(pipe_fds[0], out, sizeof(out));
    CHECK(strstr(out, "from the child") != NULL);
    ka_log_set_sink(NULL, NULL);
    log_to_stderr();
}

/* ---- log_vport ---- */

static char dir[64], sock_path[96], addr[128];

static void vport_dirs(void)
{
    snprintf(dir, sizeof(dir), "/tmp/ka-log-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    snprintf(sock_path, sizeof(sock_path), "%s/log.sock", dir);
    snprintf(addr, sizeof(addr), "unix://%s", sock_path);
}

static int dial(void)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
        abort();
    return fd;
}

/* What the reader got: whole lines, counted. */
struct got {
    char partial[8192];
    size_t plen;
    int lines, broken, notices;
    long lost;
    int first_i, last_i, gaps, i_lines; /* "i=NNNNN" sequence: first, last, jumps */
};

static void got_line(struct got *g, const char *line)
{
    g->lines++;
    if (line[0] != '{' || line[strlen(line) - 1] != '}')
        g->broken++;
    const char *p = strstr(line, "\"lost\":");
    if (strstr(line, "log lines lost") && p) {
        g->notices++;
        g->lost += atol(p + 7);
    }
    p = strstr(line, "i=");
    if (p && strstr(line, "\"subsystem\":\"test\"")) {
        int i = atoi(p + 2);
        if (g->i_lines == 0)
            g->first_i = i;
        else if (i != g->last_i + 1)
            g->gaps++;
        g->last_i = i;
        g->i_lines++;
    }
}

/* Read what is there without blocking. Returns false on EOF. */
static bool read_some(int fd, struct got *g)
{
    char buf[65536];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r == 0)
            return false;
        if (r < 0)
            return true;
        for (ssize_t k = 0; k < r; k++) {
            if (buf[k] == '\n') {
                g->partial[g->plen] = '\0';
                got_line(g, g->partial);
                g->plen = 0;
            } else if (g->plen + 1 < sizeof(g->partial)) {
                g->partial[g->plen++] = buf[k];
            }
        }
    }
}

static void spin(struct loop *l, int rounds)
{
    ka_err e;
    for (int i = 0; i < rounds; i++)
        loop_run_once(l, 0, &e);
}

static char pad[1001];

static void log_many(int from, int n)
{
    for (int i = from; i < from + n; i++)
        log_info("test", "i=%05d %s", i, pad);
}

TEST(lines_wait_for_the_reader_and_the_oldest_are_dropped)
{
    ka_err e;
    vport_dirs();
    memset(pad, 'x', sizeof(pad) - 1);
    struct loop *l = loop_new(&e);
    struct log_vport *lv = log_vport_new(1025, addr);
    CHECK(lv != NULL);
    const int n = 2000; /* ~2.3 MiB: about half is dropped */
    log_many(0, n);
    log_vport_listen(lv, l);
    CHECK(access(sock_path, F_OK) == 0);

    int fd = dial();
    struct got g = {0};
    for (int i = 0; i < 2000 && g.last_i != n - 1; i++) {
        spin(l, 1);
        read_some(fd, &g);
    }
    CHECK_INT(g.broken, 0);
    CHECK_INT(g.notices, 1);
    CHECK_INT(g.gaps, 0); /* the newest lines, consecutive */
    CHECK_INT(g.last_i, n - 1);
    CHECK(g.first_i > 0);         /* the oldest were dropped */
    CHECK_INT(g.lost, g.first_i); /* and counted */

    /* live, and a reader that stops reading: the agent's side never blocks and drops whole lines */
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct got g2 = {0};
    for (int k = 0; k < 40; k++) { /* 40 x 100 lines while the reader reads only now and then */
        log_many(n + k * 100, 100);
        spin(l, 2);
        if (k % 10 == 9) {
            char buf[3000]; /* a read that ends mid-line */
            ssize_t r = read(fd, buf, sizeof(buf));
            CHECK(r > 0);
            for (ssize_t b = 0; b < r; b++) {
                if (buf[b] == '\n') {
                    g2.partial[g2.plen] = '\0';
                    got_line(&g2, g2.partial);
                    g2.plen = 0;
                } else if (g2.plen + 1 < sizeof(g2.partial)) {
                    g2.partial[g2.plen++] = buf[b];
                }
            }
        }
    }
    const int total = n + 4000;
    for (int i = 0; i < 4000 && g2.last_i != total - 1; i++) {
        spin(l, 1);
        read_some(fd, &g2);
    }
    CHECK_INT(g2.broken, 0); /* partial writes never break a line */
    CHECK(g2.notices >= 1);
    CHECK_INT(g2.last_i, total - 1);
    CHECK_INT(g2.i_lines + g2.lost, total - n); /* every line received or counted lost */
    printf("# before a reader: %d lines dropped; slow reader: %d received, %ld dropped, %d notices\n",
           g.first_i, g2.i_lines, g2.lost, g2.notices);

    /* the reader goes: back to buffering, and the next reader gets the later lines */
    close(fd);
    spin(l, 3);
    log_info("test", "i=%05d after the reader left", total);
    fd = dial();
    struct got g3 = {0};
    for (int i = 0; i < 1000 && g3.last_i != total; i++) {
        spin(l, 1);
        read_some(fd, &g3);
    }
    CHECK_INT(g3.last_i, total);
    CHECK_INT(g3.broken, 0);

    /* a second reader at the same time is closed at once */
    int fd2 = dial();
    char c;
    bool eof = false;
    for (int i = 0; i < 1000 && !eof; i++) {
        spin(l, 1);
        eof = read(fd2, &c, 1) == 0;
    }
    CHECK(eof);
    close(fd2);

    log_vport_free(lv);
    CHECK(access(sock_path, F_OK) < 0 && errno == ENOENT);
    close(fd);
    loop_free(l);
    rmdir(dir);
}

TEST(a_port_that_cannot_be_listened_on_falls_back_to_stdout)
{
    char out[65536];
    ka_err e;
    log_to_pipe();
    struct loop *l = loop_new(&e);
    struct log_vport *lv = log_vport_new(1025, "unix:///nonexistent-dir/log.sock");
    log_info("test", "buffered first");
    drain_pipe(pipe_fds[0], out, sizeof(out));
    CHECK_INT(strlen(out), 0);
    log_vport_listen(lv, l);
    log_info("test", "later");
    drain_pipe(pipe_fds[0], out, sizeof(out));
    const char *a = strstr(out, "buffered first"), *w = strstr(out, "cannot listen"),
               *b = strstr(out, "later");
    CHECK(a && w && b && a < w && w < b);
    log_vport_free(lv);
    loop_free(l);
    log_to_stderr();
}

RUN(sink_gets_whole_lines_and_fd_comes_back, finish_does_not_emit, logging_inside_the_sink_goes_to_the_fd,
    a_forked_child_logs_to_the_fd, lines_wait_for_the_reader_and_the_oldest_are_dropped,
    a_port_that_cannot_be_listened_on_falls_back_to_stdout)
