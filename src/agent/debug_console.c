/* The debug console (agent.debug_console): an operator's shell in the guest. With agent.debug_console_vport
 * the agent listens on that vsock port (what `kata-runtime exec` dials) and gives each connection a shell on
 * a new pty, relaying bytes both ways from the event loop; without it, one interactive shell runs on
 * /dev/console and is started again when it exits. */
#include "debug_console.h"

#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../loop/child_run.h"
#include "../ttrpc/addr.h"
#include "../util/cleanup.h"
#include "../util/list.h"
#include "../util/log.h"

#define SUB          "debug_console"
#define RELAY_BUF    4096
#define MAX_SESSIONS 8
#define RESPAWN_NS   1000000000ull /* console mode: a shell that exited is started again after 1 s */

struct session {
    struct list link;
    struct debug_console *dc;
    struct loop_io sock, pty;
    struct loop_child child;
    bool child_alive;
    char to_pty[RELAY_BUF], to_sock[RELAY_BUF];
    size_t to_pty_len, to_sock_len;
};

struct debug_console {
    struct loop *loop;
    char shell[16];
    struct ka_addr addr;
    struct loop_io listener; /* fd -1 in console mode */
    struct list sessions;
    unsigned n_sessions;
    /* console mode */
    char *console;
    struct loop_child console_child;
    bool console_alive;
    struct loop_timer respawn;
};

static int find_shell(char out[16], ka_err *e)
{
    static const char *const shells[] = {"/bin/bash", "/bin/sh"};
    for (size_t i = 0; i < ARRAY_SIZE(shells); i++) {
        if (access(shells[i], X_OK) == 0) {
            snprintf(out, 16, "%s", shells[i]);
            return 0;
        }
    }
    return ka_fail(e, KA_NOT_FOUND, "no shell found to launch debug console");
}

/* In the child: a session on tty (its controlling terminal as stdin/out/err), then the shell. */
static void exec_shell(const char *shell, int tty, bool interactive)
{
    child_reset_signals();
    if (setsid() < 0 || ioctl(tty, TIOCSCTTY, 0) < 0 || dup2(tty, 0) < 0 || dup2(tty, 1) < 0 ||
        dup2(tty, 2) < 0)
        _exit(126);
    child_close_from(3);
    char *const argv[] = {(char *)shell, interactive ? "-i" : NULL, NULL};
    execv(shell, argv);
    _exit(127);
}

/* ---- vsock sessions ---- */

static void session_free(struct session *s)
{
    struct debug_console *dc = s->dc;
    list_del(&s->link);
    dc->n_sessions--;
    free(s);
}

/* Close both ends; the shell gets SIGHUP from its pty and the loop reaps it. */
static void session_close(struct session *s)
{
    if (s->sock.fd >= 0) {
        loop_io_del(s->dc->loop, &s->sock);
        close(s->sock.fd);
        s->sock.fd = -1;
    }
    if (s->pty.fd >= 0) {
        loop_io_del(s->dc->loop, &s->pty);
        close(s->pty.fd);
        s->pty.fd = -1;
    }
    if (s->child_alive)
        kill(-s->child.pid, SIGHUP); /* its session: the shell and what it started in the foreground */
    else
        session_free(s);
}

/* Watch what each side can do now: read when its buffer to the other side is empty, write when it has
 * something waiting. */
static void session_arm(struct session *s)
{
    loop_io_mod(s->dc->loop, &s->sock, (s->to_pty_len ? 0 : EPOLLIN) | (s->to_sock_len ? EPOLLOUT : 0));
    loop_io_mod(s->dc->loop, &s->pty, (s->to_sock_len ? 0 : EPOLLIN) | (s->to_pty_len ? EPOLLOUT : 0));
}

/* Move bytes from one fd to the other through buf; false when this side is finished. */
static bool pump(int from, int to, char *buf, size_t *len, bool readable, bool writable)
{
    if (readable && *len == 0) {
        ssize_t n = read(from, buf, RELAY_BUF);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return false; /* EOF, or EIO from a pty whose shell has gone */
        if (n > 0)
            *len = (size_t)n;
    }
    if (*len && (writable || readable)) {
        ssize_t n = write(to, buf, *len);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return false;
        if (n > 0) {
            memmove(buf, buf + n, *len - (size_t)n);
            *len -= (size_t)n;
        }
    }
    return true;
}

/* Events on one side: what it sent goes to the other side, what waited for it is written to it. A side that
 * hangs up with nothing left to read (the shell has gone and its output was read) ends the session. */
static void on_side(struct session *s, bool sock_side, uint32_t ev)
{
    struct loop_io *me = sock_side ? &s->sock : &s->pty, *peer = sock_side ? &s->pty : &s->sock;
    char *in_buf = sock_side ? s->to_pty : s->to_sock, *out_buf = sock_side ? s->to_sock : s->to_pty;
    size_t *in_len = sock_side ? &s->to_pty_len : &s->to_sock_len,
           *out_len = sock_side ? &s->to_sock_len : &s->to_pty_len;
    bool ok = !((ev & (EPOLLHUP | EPOLLERR)) && !(ev & EPOLLIN)) &&
              pump(me->fd, peer->fd, in_buf, in_len, ev & (EPOLLIN | EPOLLHUP | EPOLLERR), false) &&
              pump(peer->fd, me->fd, out_buf, out_len, false, ev & EPOLLOUT);
    if (!ok) {
        session_close(s);
        return;
    }
    session_arm(s);
}

static void on_sock(struct loop_io *io, uint32_t ev)
{
    on_side(container_of(io, struct session, sock), true, ev);
}

static void on_pty(struct loop_io *io, uint32_t ev)
{
    on_side(container_of(io, struct session, pty), false, ev);
}

static void on_session_exit(struct loop_child *c, int status)
{
    struct session *s = container_of(c, struct session, child);
    s->child_alive = false;
    log_info(SUB, "debug console shell %d exited (status %d)", (int)c->pid, status);
    if (s->sock.fd < 0 && s->pty.fd < 0)
        session_free(s);
    /* else the pty reports EIO or EOF once its output is read, which closes the session */
}

static int session_start(struct debug_console *dc, int sock, ka_err *e)
{
    int master, slave;
    if (openpty(&master, &slave, NULL, NULL, NULL) < 0)
        return ka_fail_errno(e, errno, "openpty");
    struct session *s = calloc(1, sizeof(*s));
    if (!s) {
        close(master);
        close(slave);
        return ka_fail_errno(e, ENOMEM, "debug console session");
    }
    s->dc = dc;
    s->sock = (struct loop_io){.fd = sock, .events = EPOLLIN, .cb = on_sock};
    s->pty = (struct loop_io){.fd = master, .events = EPOLLIN, .cb = on_pty};
    fcntl(master, F_SETFD, FD_CLOEXEC);
    fcntl(master, F_SETFL, O_NONBLOCK);
    fcntl(sock, F_SETFL, O_NONBLOCK);
    pid_t pid = fork();
    if (pid == 0)
        exec_shell(dc->shell, slave, false);
    close(slave);
    if (pid < 0) {
        int err = errno;
        close(master);
        free(s);
        return ka_fail_errno(e, err, "fork the debug console shell");
    }
    s->child = (struct loop_child){.pid = pid, .exited = on_session_exit};
    s->child_alive = true;
    loop_child_watch(dc->loop, &s->child);
    list_add_tail(&dc->sessions, &s->link);
    dc->n_sessions++;
    if (loop_io_add(dc->loop, &s->sock, e) < 0 || loop_io_add(dc->loop, &s->pty, e) < 0) {
        s->sock.fd = -1; /* the caller closes sock */
        session_close(s);
        return -1;
    }
    log_info(SUB, "debug console session: shell %d", (int)pid);
    return 0;
}

static void on_accept(struct loop_io *io, uint32_t ev)
{
    struct debug_console *dc = container_of(io, struct debug_console, listener);
    (void)ev;
    for (int i = 0; i < 8; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            return;
        ka_err e;
        if (dc->n_sessions >= MAX_SESSIONS) {
            log_warn(SUB, "debug console: %d sessions already open, connection refused", MAX_SESSIONS);
            close(fd);
        } else if (session_start(dc, fd, &e) < 0) {
            log_warn(SUB, "debug console: %s", e.msg);
            close(fd);
        }
    }
}

/* ---- console mode ---- */

static void console_spawn(struct debug_console *dc);

static void on_respawn(struct loop_timer *t)
{
    console_spawn(container_of(t, struct debug_console, respawn));
}

static void on_console_exit(struct loop_child *c, int status)
{
    struct debug_console *dc = container_of(c, struct debug_console, console_child);
    dc->console_alive = false;
    log_info(SUB, "debug console shell exited (status %d); starting another", status);
    loop_timer_start(dc->loop, &dc->respawn, RESPAWN_NS);
}

static void console_spawn(struct debug_console *dc)
{
    int tty = open(dc->console, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (tty < 0) {
        log_warn(SUB, "debug console: open %s: %s", dc->console, strerror(errno));
        loop_timer_start(dc->loop, &dc->respawn, RESPAWN_NS * 10);
        return;
    }
    pid_t pid = fork();
    if (pid == 0)
        exec_shell(dc->shell, tty, true);
    close(tty);
    if (pid < 0) {
        log_warn(SUB, "debug console: fork: %s", strerror(errno));
        loop_timer_start(dc->loop, &dc->respawn, RESPAWN_NS * 10);
        return;
    }
    dc->console_child = (struct loop_child){.pid = pid, .exited = on_console_exit};
    dc->console_alive = true;
    loop_child_watch(dc->loop, &dc->console_child);
    log_info(SUB, "debug console shell %d on %s", (int)pid, dc->console);
}

/* ---- start and stop ---- */

struct debug_console *debug_console_start(struct loop *l, const char *addr, const char *console, ka_err *e)
{
    struct debug_console *dc = calloc(1, sizeof(*dc));
    if (!dc) {
        ka_fail_errno(e, ENOMEM, "debug console");
        return NULL;
    }
    dc->loop = l;
    dc->listener.fd = -1;
    list_init(&dc->sessions);
    loop_timer_init(&dc->respawn, on_respawn);
    if (find_shell(dc->shell, e) < 0)
        goto fail;
    if (!addr) {
        if (!(dc->console = strdup(console))) {
            ka_fail_errno(e, ENOMEM, "debug console");
            goto fail;
        }
        console_spawn(dc);
        return dc;
    }
    if (ka_addr_parse(addr, &dc->addr, e) < 0)
        goto fail;
    if (dc->addr.kind != KA_ADDR_VSOCK && dc->addr.kind != KA_ADDR_UNIX &&
        dc->addr.kind != KA_ADDR_UNIX_ABSTRACT) {
        ka_fail(e, KA_INVALID_ARGUMENT, "the debug console listens on vsock or unix sockets only");
        goto fail;
    }
    dc->listener = (struct loop_io){.fd = ka_addr_listen(&dc->addr, e), .events = EPOLLIN, .cb = on_accept};
    if (dc->listener.fd < 0 || loop_io_add(l, &dc->listener, e) < 0)
        goto fail;
    log_info(SUB, "debug console listening on %s (%s)", addr, dc->shell);
    return dc;
fail:
    ka_wrap(e, "debug console");
    debug_console_free(dc);
    return NULL;
}

void debug_console_free(struct debug_console *dc)
{
    if (!dc)
        return;
    if (dc->listener.fd >= 0) {
        loop_io_del(dc->loop, &dc->listener);
        close(dc->listener.fd);
        if (dc->addr.kind == KA_ADDR_UNIX)
            unlink(dc->addr.path);
    }
    while (!list_empty(&dc->sessions)) {
        struct session *s = container_of(dc->sessions.next, struct session, link);
        if (s->child_alive) {
            kill(-s->child.pid, SIGKILL);
            loop_child_unwatch(&s->child); /* the loop still reaps it */
            s->child_alive = false;
        }
        session_close(s);
    }
    if (dc->console_alive) {
        kill(dc->console_child.pid, SIGKILL);
        loop_child_unwatch(&dc->console_child);
    }
    loop_timer_stop(dc->loop, &dc->respawn);
    free(dc->console);
    free(dc);
}
