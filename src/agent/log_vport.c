/* agent.log_vport: the agent's log lines go to a reader on a vsock port (any CID) instead of stdout.
 *
 * The log layer hands every finished line to log_sink() (ka_log_set_sink), which appends it to a 1 MiB ring
 * of whole lines and, while a reader is connected, queues a deferred flush (lines of one batch of events
 * share a syscall). Writes are non-blocking: what the socket does not take stays in the ring and an EPOLLOUT
 * watch resumes. A full ring drops its oldest whole lines and counts them; the count reaches the reader as
 * one WARN line ("log lines lost", lost=N) where the gap is. The ring holds whole lines only: the rest of a
 * line the socket took part of waits in `out`, so the stream never carries a broken line.
 *
 * One reader at a time: a second connection while one is active is closed at once. A reader that goes away
 * sends the agent back to buffering, and the next one accepted gets what is buffered (upstream accepts only
 * one connection, ever). Nothing here blocks the loop; only log_vport_free() waits, briefly, at exit. */
#include "log_vport.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../ttrpc/addr.h"
#include "../util/cleanup.h" /* container_of */
#include "../util/log.h"

#define RING_SIZE      ((size_t)1 << 20)
#define LINE_MAX_LEN   sizeof(((struct ka_logrec *)0)->buf)
#define FINAL_FLUSH_MS 500

struct log_vport {
    struct loop *loop; /* NULL until log_vport_listen */
    char addr_str[256];
    struct ka_addr addr;
    bool bound;          /* a unix socket file of ours, removed at the end */
    struct loop_io lsn;  /* the listening socket; fd -1 when not listening */
    struct loop_io conn; /* the reader; fd -1 when none */
    bool rd_open;        /* watching the reader for EOF (it may half-close and keep reading) */
    bool want_out;       /* the reader's socket is full: EPOLLOUT armed */
    struct loop_defer flush;

    char *ring; /* RING_SIZE bytes: whole lines from ring[head], len bytes, wrapping */
    size_t head, len;
    uint64_t lost; /* lines dropped and not yet reported */

    char out[LINE_MAX_LEN]; /* sent before the ring: the rest of a started line, or a loss notice */
    size_t out_off, out_len;
    bool out_tail;     /* out is the rest of a line the reader got the beginning of */
    uint64_t out_lost; /* out is a loss notice for this many lines */
};

/* ---- the ring ---- */

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Offset (from head) of the first '\n' at or after from; the ring holds whole lines, so there is one. */
static size_t ring_find_nl(const struct log_vport *lv, size_t from)
{
    while (from < lv->len) {
        size_t pos = (lv->head + from) % RING_SIZE;
        size_t n = min_size(lv->len - from, RING_SIZE - pos);
        const char *nl = memchr(lv->ring + pos, '\n', n);
        if (nl)
            return from + (size_t)(nl - (lv->ring + pos));
        from += n;
    }
    return lv->len ? lv->len - 1 : 0;
}

static void ring_consume(struct log_vport *lv, size_t n)
{
    lv->head = (lv->head + n) % RING_SIZE;
    lv->len -= n;
    if (lv->len == 0)
        lv->head = 0;
}

static void ring_copy(const struct log_vport *lv, size_t off, char *dst, size_t n)
{
    size_t pos = (lv->head + off) % RING_SIZE;
    size_t first = min_size(n, RING_SIZE - pos);
    memcpy(dst, lv->ring + pos, first);
    memcpy(dst + first, lv->ring, n - first);
}

static void ring_put(struct log_vport *lv, const char *line, size_t n)
{
    while (RING_SIZE - lv->len < n) { /* full: drop the oldest whole lines */
        ring_consume(lv, ring_find_nl(lv, 0) + 1);
        lv->lost++;
    }
    size_t pos = (lv->head + lv->len) % RING_SIZE;
    size_t first = min_size(n, RING_SIZE - pos);
    memcpy(lv->ring + pos, line, first);
    memcpy(lv->ring, line + first, n - first);
    lv->len += n;
}

/* The ring's first n bytes went out: drop them, keeping the rest of a line cut in the middle in out. */
static void ring_sent(struct log_vport *lv, size_t n)
{
    if (lv->ring[(lv->head + n - 1) % RING_SIZE] == '\n') {
        ring_consume(lv, n);
        return;
    }
    size_t end = ring_find_nl(lv, n) + 1;
    ring_copy(lv, n, lv->out, end - n);
    lv->out_off = 0;
    lv->out_len = end - n;
    lv->out_tail = true;
    ring_consume(lv, end);
}

/* Put the loss notice in out (false when WARN lines are filtered out: the count is then forgotten). */
static bool make_notice(struct log_vport *lv)
{
    struct ka_logrec r;
    uint64_t lost = lv->lost;
    lv->lost = 0;
    if (!ka_log_begin(&r, KA_LOG_WARN, "log",
                      "log lines lost: the buffer was full while no reader took them"))
        return false;
    ka_log_int(&r, "lost", (int64_t)lost);
    size_t n = ka_log_finish(&r);
    memcpy(lv->out, r.buf, n);
    lv->out_off = 0;
    lv->out_len = n;
    lv->out_tail = false;
    lv->out_lost = lost;
    return true;
}

static void out_clear(struct log_vport *lv)
{
    lv->out_off = lv->out_len = 0;
    lv->out_tail = false;
    lv->out_lost = 0;
}

/* Everything still buffered to stdout, in order (without a started line's rest: the reader has its head). */
static void dump_to_fd(struct log_vport *lv)
{
    if (lv->out_off < lv->out_len && !lv->out_tail && lv->out_off == 0)
        ka_log_write_fd(lv->out, lv->out_len);
    else if (lv->out_off < lv->out_len)
        lv->lost += lv->out_lost ? lv->out_lost : 1; /* as reader_gone counts a started line */
    out_clear(lv);
    if (lv->lost && make_notice(lv))
        ka_log_write_fd(lv->out, lv->out_len);
    out_clear(lv);
    size_t first = min_size(lv->len, RING_SIZE - lv->head);
    ka_log_write_fd(lv->ring + lv->head, first);
    ka_log_write_fd(lv->ring, lv->len - first);
    lv->head = lv->len = 0;
}

/* ---- the reader ---- */

static void set_events(struct log_vport *lv)
{
    uint32_t ev = (lv->rd_open ? EPOLLIN : 0) | (lv->want_out ? EPOLLOUT : 0);
    if (loop_io_mod(lv->loop, &lv->conn, ev) < 0)
        log_debug("log", "epoll_ctl on the log reader: %s", strerror(errno));
}

static void reader_gone(struct log_vport *lv, const char *why)
{
    loop_io_del(lv->loop, &lv->conn);
    close(lv->conn.fd);
    lv->conn.fd = -1;
    lv->want_out = false;
    loop_defer_cancel(&lv->flush);
    if (lv->out_off < lv->out_len && (lv->out_tail || lv->out_off > 0)) {
        /* a started line cannot be finished for the next reader: count it (a notice: its lines again) */
        lv->lost += lv->out_lost ? lv->out_lost : 1;
        out_clear(lv);
    }
    log_debug("log", "log reader gone (%s): buffering until the next one", why);
}

/* Bytes the reader's socket took (0 when it is full), or -1 when the reader is gone. */
static ssize_t send_iov(struct log_vport *lv, struct iovec *iov, int n)
{
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    for (;;) {
        ssize_t w = sendmsg(lv->conn.fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w >= 0)
            return w;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
}

/* Write out, then the ring, until done or the socket is full (EPOLLOUT then resumes). */
static void flush_now(struct log_vport *lv)
{
    while (lv->conn.fd >= 0) {
        struct iovec iov[2];
        int n = 0;
        bool from_out = lv->out_off < lv->out_len;
        if (from_out) {
            iov[n++] = (struct iovec){lv->out + lv->out_off, lv->out_len - lv->out_off};
        } else {
            out_clear(lv);
            if (lv->lost && make_notice(lv))
                continue;
            if (lv->len == 0)
                break;
            size_t first = min_size(lv->len, RING_SIZE - lv->head);
            iov[n++] = (struct iovec){lv->ring + lv->head, first};
            if (lv->len > first)
                iov[n++] = (struct iovec){lv->ring, lv->len - first};
        }
        ssize_t w = send_iov(lv, iov, n);
        if (w < 0) {
            reader_gone(lv, strerror(errno));
            return;
        }
        if (w == 0) {
            if (!lv->want_out) {
                lv->want_out = true;
                set_events(lv);
            }
            return;
        }
        if (from_out)
            lv->out_off += (size_t)w;
        else
            ring_sent(lv, (size_t)w);
    }
    if (lv->conn.fd >= 0 && lv->want_out) {
        lv->want_out = false;
        set_events(lv);
    }
}

static void on_flush(struct loop_defer *d)
{
    flush_now(container_of(d, struct log_vport, flush));
}

static void on_conn(struct loop_io *io, uint32_t revents)
{
    struct log_vport *lv = container_of(io, struct log_vport, conn);
    if (revents & (EPOLLERR | EPOLLHUP)) {
        reader_gone(lv, "hung up");
        return;
    }
    if (revents & EPOLLIN) { /* a reader has nothing to say: discard it, a bounded amount per wake-up */
        char buf[4096];
        for (int i = 0; i < 16; i++) {
            ssize_t r = read(io->fd, buf, sizeof(buf));
            if (r > 0 || (r < 0 && errno == EINTR))
                continue;
            if (r == 0) { /* half-closed: it may still read; a full close comes as EPOLLHUP */
                lv->rd_open = false;
                set_events(lv);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                reader_gone(lv, strerror(errno));
                return;
            }
            break;
        }
    }
    if (revents & EPOLLOUT)
        flush_now(lv);
}

/* The current reader has not hung up (its hang-up may be an event not yet dispatched). */
static bool reader_alive(const struct log_vport *lv)
{
    struct pollfd p = {.fd = lv->conn.fd, .events = 0};
    return poll(&p, 1, 0) == 0 || !(p.revents & (POLLHUP | POLLERR | POLLNVAL));
}

static void on_accept(struct loop_io *io, uint32_t revents)
{
    (void)revents;
    struct log_vport *lv = container_of(io, struct log_vport, lsn);
    for (;;) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("log", "accept on %s: %s", lv->addr_str, strerror(errno));
            return;
        }
        if (lv->conn.fd >= 0 && reader_alive(lv)) {
            close(fd);
            log_debug("log", "refused a second log reader: one is connected");
            continue;
        }
        if (lv->conn.fd >= 0)
            reader_gone(lv, "hung up");
        lv->conn.fd = fd;
        lv->conn.events = EPOLLIN;
        lv->rd_open = true;
        lv->want_out = false;
        ka_err e;
        if (loop_io_add(lv->loop, &lv->conn, &e) < 0) {
            close(fd);
            lv->conn.fd = -1;
            log_warn("log", "log reader: %s", e.msg);
            continue;
        }
        log_debug("log", "log reader connected");
        flush_now(lv);
    }
}

/* ---- the sink ---- */

static void log_sink(const char *line, size_t len, void *arg)
{
    struct log_vport *lv = arg;
    if (len == 0 || len > LINE_MAX_LEN || line[len - 1] != '\n') {
        lv->lost++; /* not a line of ka_log_end's: cannot happen */
        return;
    }
    ring_put(lv, line, len);
    if (lv->conn.fd >= 0 && !lv->want_out)
        loop_defer(lv->loop, &lv->flush);
}

/* ---- lifecycle ---- */

struct log_vport *log_vport_new(int32_t port, const char *addr)
{
    struct log_vport *lv = calloc(1, sizeof(*lv));
    char *ring = malloc(RING_SIZE);
    if (!lv || !ring) {
        free(lv);
        free(ring);
        log_warn("log", "agent.log_vport: out of memory; logging to stdout");
        return NULL;
    }
    lv->ring = ring;
    int n = addr ? snprintf(lv->addr_str, sizeof(lv->addr_str), "%s", addr)
                 : snprintf(lv->addr_str, sizeof(lv->addr_str), "vsock://-1:%d", (int)port);
    if (n < 0 || (size_t)n >= sizeof(lv->addr_str))
        lv->addr_str[0] = '\0'; /* refused by log_vport_listen */
    lv->lsn.fd = lv->conn.fd = -1;
    lv->lsn.events = EPOLLIN;
    lv->lsn.cb = on_accept;
    lv->conn.cb = on_conn;
    loop_defer_init(&lv->flush, on_flush);
    ka_log_set_sink(log_sink, lv);
    return lv;
}

/* Back to stdout for good: the buffered lines first, in order. */
static void fall_back(struct log_vport *lv)
{
    ka_log_set_sink(NULL, NULL);
    dump_to_fd(lv);
}

/* One line on stdout (the guest console) even while the lines go to the reader. */
static void note_on_stdout(const char *msg, const char *addr)
{
    struct ka_logrec r;
    if (!ka_log_begin(&r, KA_LOG_INFO, "log", msg))
        return;
    ka_log_str(&r, "addr", addr);
    ka_log_finish(&r);
    ka_log_write_fd(r.buf, r.len);
}

void log_vport_listen(struct log_vport *lv, struct loop *l)
{
    if (!lv)
        return;
    lv->loop = l;
    ka_err e;
    ka_err_clear(&e);
    int fd = -1;
    if (!lv->addr_str[0]) {
        ka_fail(&e, KA_INVALID_ARGUMENT, "the address is too long");
    } else if (ka_addr_parse(lv->addr_str, &lv->addr, &e) == 0 && (fd = ka_addr_listen(&lv->addr, &e)) >= 0) {
        lv->lsn.fd = fd;
        if (loop_io_add(l, &lv->lsn, &e) == 0) {
            lv->bound = lv->addr.kind == KA_ADDR_UNIX;
            note_on_stdout("log lines go to the log reader", lv->addr_str);
            log_info("log", "log lines go to the reader on %s", lv->addr_str);
            return;
        }
        lv->lsn.fd = -1;
        close(fd);
        if (lv->addr.kind == KA_ADDR_UNIX)
            unlink(lv->addr.path);
    }
    fall_back(lv);
    log_warn("log", "agent.log_vport: cannot listen on %s: %s; logging to stdout", lv->addr_str, e.msg);
}

/* At exit: give the reader up to FINAL_FLUSH_MS to take what is buffered. */
static void final_flush(struct log_vport *lv)
{
    uint64_t deadline = loop_now_ns() + (uint64_t)FINAL_FLUSH_MS * 1000000;
    for (;;) {
        flush_now(lv);
        if (lv->conn.fd < 0 || !lv->want_out)
            return;
        uint64_t now = loop_now_ns();
        if (now >= deadline)
            return;
        struct pollfd p = {.fd = lv->conn.fd, .events = POLLOUT};
        if (poll(&p, 1, (int)((deadline - now) / 1000000) + 1) == 0)
            return;
    }
}

void log_vport_free(struct log_vport *lv)
{
    if (!lv)
        return;
    ka_log_set_sink(NULL, NULL); /* what is logged from here on goes to stdout */
    loop_defer_cancel(&lv->flush);
    if (lv->lsn.fd >= 0) {
        loop_io_del(lv->loop, &lv->lsn);
        close(lv->lsn.fd);
    }
    if (lv->conn.fd >= 0) {
        final_flush(lv);
        if (lv->conn.fd >= 0) {
            loop_io_del(lv->loop, &lv->conn);
            close(lv->conn.fd);
        }
    }
    dump_to_fd(lv); /* what no reader took */
    if (lv->bound)
        unlink(lv->addr.path);
    free(lv->ring);
    free(lv);
}
