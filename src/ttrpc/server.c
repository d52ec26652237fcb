/* ttrpc server: accept, read frames, dispatch requests, write replies in completion order. */
#include "server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../util/buf.h"
#include "../util/cleanup.h"
#include "../util/log.h"
#include "frame.h"
#include "envelope.h"

#define MAX_CONNS          1024
#define MAX_CALLS_PER_CONN 4096
#define READ_CHUNK         (64 * 1024)
#define READ_BUDGET        (1024 * 1024)      /* bytes per wake-up, for fairness between connections */
#define OUT_HIGH_WATER     (16 * 1024 * 1024) /* stop reading requests while this much is unsent */
#define MAX_SERVICES       8

struct listener {
    struct loop_io io;
    struct ttrpc_server *srv;
    struct list link;
};

struct ttrpc_conn {
    struct ttrpc_server *srv;
    struct loop_io io;
    struct ttrpc_reader rd;
    struct kbuf out;
    struct list calls;
    unsigned n_calls;
    struct list link;
    struct loop_defer flush;
    bool paused; /* EPOLLIN dropped because too much output is queued */
    bool closed;
    bool is_socket;
    void (*on_close)(void *arg);
    void *arg;
};

struct ttrpc_server {
    struct loop *loop;
    const struct ttrpc_service *services[MAX_SERVICES];
    size_t n_services;
    struct list listeners;
    struct list conns;
    unsigned n_conns;
    unsigned pending_calls;
    uint64_t calls_total;
    struct loop_defer drain_check;
    void (*drain_done)(void *arg);
    void *drain_arg;
};

static void conn_close(struct ttrpc_conn *c);
static void conn_flush(struct loop_defer *d);

/* ---- replies ---- */

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* The Response envelope is written by hand so that the reply message is packed straight into the output
 * buffer (protobuf-c would need it packed separately and copied): field 1 Status{code, message} only on
 * error (the Go server omits it on success), field 2 payload only when non-empty. */
static int write_response(struct kbuf *out, uint32_t stream, int code, const char *msg,
                          const ProtobufCMessage *resp)
{
    size_t plen = resp ? protobuf_c_message_get_packed_size(resp) : 0;
    size_t mlen = msg ? strlen(msg) : 0;
    size_t status_len = 0, body = 0;
    if (code != 0) {
        status_len = 1 + varint_len((uint64_t)(int64_t)code) + (mlen ? 1 + varint_len(mlen) + mlen : 0);
        body += 1 + varint_len(status_len) + status_len;
    }
    if (plen)
        body += 1 + varint_len(plen) + plen;
    if (body > TTRPC_MAX_DATA)
        return -1;

    uint8_t *p = kbuf_reserve(out, TTRPC_HDR_LEN + body);
    if (!p)
        return -1;
    struct ttrpc_hdr h = {.len = (uint32_t)body, .stream = stream, .type = TTRPC_RESPONSE};
    ttrpc_hdr_encode(p, &h);
    p += TTRPC_HDR_LEN;
    if (code != 0) {
        *p++ = 0x0a;
        p = put_varint(p, status_len);
        *p++ = 0x08;
        p = put_varint(p, (uint64_t)(int64_t)code); /* int32 varint: negative values sign-extend */
        if (mlen) {
            *p++ = 0x12;
            p = put_varint(p, mlen);
            memcpy(p, msg, mlen);
            p += mlen;
        }
    }
    if (plen) {
        *p++ = 0x12;
        p = put_varint(p, plen);
        p += protobuf_c_message_pack(resp, p);
    }
    out->len += TTRPC_HDR_LEN + body;
    return 0;
}

static void log_call(const struct ttrpc_call *c, int code, const char *msg)
{
    struct ka_logrec r;
    int level = code == KA_OK ? KA_LOG_DEBUG : KA_LOG_DEBUG;
    if (!ka_log_begin(&r, level, "rpc", "rpc call"))
        return;
    ka_log_str(&r, "service", c->service ? c->service->name : "");
    ka_log_str(&r, "method", c->method ? c->method->name : "");
    ka_log_int(&r, "stream", c->stream);
    ka_log_int(&r, "duration_us", (int64_t)((loop_now_ns() - c->start_ns) / 1000));
    ka_log_str(&r, "status", ka_status_name(code));
    if (code != KA_OK)
        ka_log_str(&r, "error", msg);
    ka_log_end(&r);
}

static void call_free(struct ttrpc_call *c)
{
    struct ttrpc_conn *conn = c->conn;
    loop_timer_stop(conn->srv->loop, &c->deadline);
    list_del(&c->link);
    conn->n_calls--;
    conn->srv->pending_calls--;
    if (c->req)
        protobuf_c_message_free_unpacked(c->req, NULL);
    free(c);
}

/* Queue the answer of a call, then free the call unless its handler is still running. */
static void call_finish(struct ttrpc_call *c, int code, const char *msg, const ProtobufCMessage *resp)
{
    if (c->done) {
        log_error("rpc", "second answer to %s stream %u ignored", c->method ? c->method->name : "?",
                  c->stream);
        return;
    }
    c->done = true;
    struct ttrpc_conn *conn = c->conn;
    log_call(c, code, msg);
    if (!conn->closed) {
        if (write_response(&conn->out, c->stream, code, msg, resp) < 0) {
            /* an over-large reply becomes an error status; the frame limit is never exceeded */
            char m[160];
            snprintf(m, sizeof(m), "reply to %s is larger than the %u-byte ttrpc frame limit",
                     c->method ? c->method->name : "request", TTRPC_MAX_DATA);
            if (write_response(&conn->out, c->stream, KA_RESOURCE_EXHAUSTED, m, NULL) < 0)
                log_error("rpc", "out of memory queueing a reply");
        }
        loop_defer(conn->srv->loop, &conn->flush);
    }
    if (!c->in_handler)
        call_free(c);
}

void ttrpc_reply(struct ttrpc_call *c, const ProtobufCMessage *resp)
{
    call_finish(c, KA_OK, NULL, resp);
}

void ttrpc_reply_status(struct ttrpc_call *c, int status, const char *fmt, ...)
{
    char msg[KA_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    call_finish(c, status, msg, NULL);
}

void ttrpc_reply_err(struct ttrpc_call *c, const ka_err *e)
{
    call_finish(c, e->status ? e->status : KA_INTERNAL, e->msg, NULL);
}

/* Answer a frame that never became a call (bad stream id, undecodable envelope, oversized, ...). */
static void reply_bare(struct ttrpc_conn *conn, uint32_t stream, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_debug("rpc", "stream %u refused: %s: %s", stream, ka_status_name(code), msg);
    if (write_response(&conn->out, stream, code, msg, NULL) < 0)
        log_error("rpc", "out of memory queueing a reply");
    loop_defer(conn->srv->loop, &conn->flush);
}

static void on_deadline(struct loop_timer *t)
{
    struct ttrpc_call *c = container_of(t, struct ttrpc_call, deadline);
    if (c->cancel)
        c->cancel(c);
    call_finish(c, KA_DEADLINE_EXCEEDED, "timeout", NULL);
}

/* ---- dispatch ---- */

static int cmp_method(const void *key, const void *m)
{
    return strcmp(key, ((const struct ttrpc_method *)m)->name);
}

static const struct ttrpc_service *find_service(struct ttrpc_server *s, const char *name)
{
    for (size_t i = 0; i < s->n_services; i++)
        if (strcmp(s->services[i]->name, name) == 0)
            return s->services[i];
    return NULL;
}

/* A name from the envelope as a C string (an embedded NUL ends it, as protobuf-c's would); false if longer
 * than any name we serve. */
static bool name_copy(char *out, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

static void handle_request(struct ttrpc_conn *conn, uint32_t stream, const uint8_t *data, size_t len)
{
    struct ttrpc_server *s = conn->srv;
    struct ttrpc_request_view rq;
    char service[128], method[128];
    if ((stream & 1) == 0) {
        reply_bare(conn, stream, KA_INVALID_ARGUMENT, "stream id must be odd for client initiated streams");
        return;
    }
    if (!ttrpc_request_parse(data, len, &rq)) {
        reply_bare(conn, stream, KA_INVALID_ARGUMENT, "unable to decode the ttrpc request envelope");
        return;
    }
    const struct ttrpc_service *svc =
        name_copy(service, sizeof(service), rq.service, rq.service_len) ? find_service(s, service) : NULL;
    if (!svc) {
        reply_bare(conn, stream, KA_INVALID_ARGUMENT, "%.*s service does not exist", (int)rq.service_len,
                   rq.service);
        return;
    }
    const struct ttrpc_method *m =
        name_copy(method, sizeof(method), rq.method, rq.method_len)
            ? bsearch(method, svc->methods, svc->n_methods, sizeof(*svc->methods), cmp_method)
            : NULL;
    if (!m) {
        reply_bare(conn, stream, KA_UNIMPLEMENTED, "%.*s method does not exist in %s", (int)rq.method_len,
                   rq.method, svc->name);
        return;
    }
    if (conn->n_calls >= MAX_CALLS_PER_CONN) {
        reply_bare(conn, stream, KA_RESOURCE_EXHAUSTED, "more than %d calls pending on this connection",
                   MAX_CALLS_PER_CONN);
        return;
    }
    void *req = protobuf_c_message_unpack(m->input, NULL, rq.payload_len, rq.payload);
    if (!req) {
        reply_bare(conn, stream, KA_INVALID_ARGUMENT, "unable to decode the %s payload of %s", m->input->name,
                   m->name);
        return;
    }
    struct ttrpc_call *c = calloc(1, sizeof(*c));
    if (!c) {
        protobuf_c_message_free_unpacked(req, NULL);
        reply_bare(conn, stream, KA_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    c->conn = conn;
    c->service = svc;
    c->method = m;
    c->stream = stream;
    c->req = req;
    c->start_ns = loop_now_ns();
    c->timeout_ns = rq.timeout_nano > 0 ? (uint64_t)rq.timeout_nano : 0;
    loop_timer_init(&c->deadline, on_deadline);
    list_add_tail(&conn->calls, &c->link);
    conn->n_calls++;
    s->pending_calls++;
    s->calls_total++;

    c->in_handler = true;
    if (!svc->admit || svc->admit(c))
        m->handler(c, req);
    c->in_handler = false;
    if (c->done)
        call_free(c);
    else if (c->timeout_ns)
        loop_timer_start(s->loop, &c->deadline, c->timeout_ns);
}

static void handle_frame(struct ttrpc_conn *conn, const struct ttrpc_hdr *h, const uint8_t *data)
{
    switch (h->type) {
    case TTRPC_REQUEST:
        handle_request(conn, h->stream, data, h->len);
        break;
    case TTRPC_DATA:
        /* no AgentService method streams; answer as ttrpc >= 1.2 does */
        reply_bare(conn, h->stream, KA_INVALID_ARGUMENT, "stream %u is no longer active", h->stream);
        break;
    default:
        log_debug("rpc", "ignoring frame of unknown type %u on stream %u", h->type, h->stream);
        break;
    }
}

/* ---- connections ---- */

static void conn_update_events(struct ttrpc_conn *c)
{
    uint32_t ev = 0;
    if (!c->paused)
        ev |= EPOLLIN;
    if (kbuf_avail(&c->out))
        ev |= EPOLLOUT;
    loop_io_mod(c->srv->loop, &c->io, ev);
}

static void conn_flush(struct loop_defer *d)
{
    struct ttrpc_conn *c = container_of(d, struct ttrpc_conn, flush);
    while (kbuf_avail(&c->out)) {
        ssize_t n = c->is_socket ? send(c->io.fd, c->out.data + c->out.off, kbuf_avail(&c->out), MSG_NOSIGNAL)
                                 : write(c->io.fd, c->out.data + c->out.off, kbuf_avail(&c->out));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            log_debug("rpc", "connection write failed: %s", strerror(errno));
            conn_close(c);
            return;
        }
        kbuf_consume(&c->out, (size_t)n);
    }
    if (!kbuf_avail(&c->out))
        kbuf_trim(&c->out, 64 * 1024);
    c->paused = kbuf_avail(&c->out) > OUT_HIGH_WATER;
    conn_update_events(c);
    if (c->srv->drain_done)
        loop_defer(c->srv->loop, &c->srv->drain_check);
}

static void conn_read(struct ttrpc_conn *c)
{
    size_t budget = READ_BUDGET;
    while (budget && !c->paused) {
        size_t avail;
        uint8_t *p = ttrpc_reader_space(&c->rd, READ_CHUNK, &avail);
        if (!p) {
            log_error("rpc", "out of memory reading a request; closing the connection");
            conn_close(c);
            return;
        }
        ssize_t n = read(c->io.fd, p, avail);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            log_debug("rpc", "connection read failed: %s", strerror(errno)); /* EIO: serial host gone */
            conn_close(c);
            return;
        }
        if (n == 0) {
            if (ttrpc_reader_partial(&c->rd))
                log_info("rpc", "connection closed in the middle of a frame");
            conn_close(c);
            return;
        }
        ttrpc_reader_commit(&c->rd, (size_t)n);
        budget = (size_t)n >= budget ? 0 : budget - (size_t)n;

        struct ttrpc_hdr h;
        const uint8_t *data;
        enum ttrpc_rd ev;
        while ((ev = ttrpc_reader_next(&c->rd, &h, &data)) != TTRPC_RD_MORE) {
            if (ev == TTRPC_RD_OVERSIZED)
                reply_bare(c, h.stream, KA_RESOURCE_EXHAUSTED,
                           "message length %u exceeds the maximum message size of %u", h.len, TTRPC_MAX_DATA);
            else
                handle_frame(c, &h, data);
        }
        if ((size_t)n < avail)
            break; /* drained the socket */
    }
    ttrpc_reader_trim(&c->rd);
}

static void on_conn_io(struct loop_io *io, uint32_t revents)
{
    struct ttrpc_conn *c = container_of(io, struct ttrpc_conn, io);
    if (revents & EPOLLOUT)
        conn_flush(&c->flush);
    if (c->closed)
        return;
    if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (!c->paused || (revents & (EPOLLHUP | EPOLLERR)))
            conn_read(c);
    }
}

static void conn_destroy(struct loop_defer *d)
{
    struct ttrpc_conn *c = container_of(d, struct ttrpc_conn, flush);
    ttrpc_reader_free(&c->rd);
    kbuf_free(&c->out);
    free(c);
}

static void conn_close(struct ttrpc_conn *c)
{
    if (c->closed)
        return;
    struct ttrpc_server *s = c->srv;
    c->closed = true;
    loop_io_del(s->loop, &c->io);
    close(c->io.fd);
    /* pending long-polls are cancelled; their continuations must not answer any more */
    while (!list_empty(&c->calls)) {
        struct ttrpc_call *call = container_of(c->calls.next, struct ttrpc_call, link);
        call->done = true;
        if (call->cancel)
            call->cancel(call);
        else
            log_error("rpc", "%s on stream %u was pending without a cancel hook",
                      call->method ? call->method->name : "?", call->stream);
        log_call(call, KA_CANCELLED, "client disconnected");
        if (call->in_handler) {
            /* the dispatcher frees it when the handler returns; just detach it */
            list_del(&call->link);
            list_init(&call->link);
            continue;
        }
        call_free(call);
    }
    list_del(&c->link);
    s->n_conns--;
    log_debug("rpc", "connection closed (%u open)", s->n_conns);
    if (c->on_close)
        c->on_close(c->arg);
    /* free after the current batch: this connection may still be on the call stack */
    loop_defer_cancel(&c->flush);
    loop_defer_init(&c->flush, conn_destroy);
    loop_defer(s->loop, &c->flush);
    if (s->drain_done)
        loop_defer(s->loop, &s->drain_check);
}

static struct ttrpc_conn *conn_new(struct ttrpc_server *s, int fd, bool is_socket, ka_err *e)
{
    struct ttrpc_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        ka_fail_errno(e, ENOMEM, "new connection");
        return NULL;
    }
    c->srv = s;
    c->is_socket = is_socket;
    c->io.fd = fd;
    c->io.events = EPOLLIN;
    c->io.cb = on_conn_io;
    list_init(&c->calls);
    loop_defer_init(&c->flush, conn_flush);
    if (loop_io_add(s->loop, &c->io, e) < 0) {
        free(c);
        return NULL;
    }
    list_add_tail(&s->conns, &c->link);
    s->n_conns++;
    return c;
}

static void on_accept(struct loop_io *io, uint32_t revents)
{
    (void)revents;
    struct listener *l = container_of(io, struct listener, io);
    struct ttrpc_server *s = l->srv;
    for (;;) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                log_warn("rpc", "accept: %s", strerror(errno));
            return;
        }
        if (s->n_conns >= MAX_CONNS) {
            log_warn("rpc", "refusing a connection: %d connections already open", MAX_CONNS);
            close(fd);
            continue;
        }
        ka_err e;
        if (!conn_new(s, fd, true, &e)) {
            log_warn("rpc", "%s", e.msg);
            close(fd);
        } else {
            log_debug("rpc", "connection accepted (%u open)", s->n_conns);
        }
    }
}

/* ---- server ---- */

static void drain_check(struct loop_defer *d)
{
    struct ttrpc_server *s = container_of(d, struct ttrpc_server, drain_check);
    list_for_each (pos, &s->conns) {
        struct ttrpc_conn *c = container_of(pos, struct ttrpc_conn, link);
        if (kbuf_avail(&c->out))
            return;
    }
    void (*done)(void *) = s->drain_done;
    s->drain_done = NULL;
    if (done)
        done(s->drain_arg);
}

struct ttrpc_server *ttrpc_server_new(struct loop *l, ka_err *e)
{
    struct ttrpc_server *s = calloc(1, sizeof(*s));
    if (!s) {
        ka_fail_errno(e, ENOMEM, "ttrpc server");
        return NULL;
    }
    s->loop = l;
    list_init(&s->listeners);
    list_init(&s->conns);
    loop_defer_init(&s->drain_check, drain_check);
    return s;
}

struct loop *ttrpc_server_loop(struct ttrpc_server *s)
{
    return s->loop;
}

int ttrpc_server_add_service(struct ttrpc_server *s, const struct ttrpc_service *svc, ka_err *e)
{
    if (s->n_services == MAX_SERVICES)
        return ka_fail(e, KA_RESOURCE_EXHAUSTED, "too many services");
    for (size_t i = 1; i < svc->n_methods; i++)
        if (strcmp(svc->methods[i - 1].name, svc->methods[i].name) >= 0)
            return ka_fail(e, KA_INTERNAL, "service %s: methods not sorted at %s", svc->name,
                           svc->methods[i].name);
    s->services[s->n_services++] = svc;
    return 0;
}

int ttrpc_server_listen_fd(struct ttrpc_server *s, int fd, ka_err *e)
{
    struct listener *l = calloc(1, sizeof(*l));
    if (!l) {
        close(fd);
        return ka_fail_errno(e, ENOMEM, "listener");
    }
    l->srv = s;
    l->io.fd = fd;
    l->io.events = EPOLLIN;
    l->io.cb = on_accept;
    if (loop_io_add(s->loop, &l->io, e) < 0) {
        close(fd);
        free(l);
        return -1;
    }
    list_add_tail(&s->listeners, &l->link);
    return 0;
}

int ttrpc_server_serve_fd(struct ttrpc_server *s, int fd, void (*on_close)(void *arg), void *arg, ka_err *e)
{
    struct ttrpc_conn *c = conn_new(s, fd, false, e);
    if (!c)
        return -1;
    c->on_close = on_close;
    c->arg = arg;
    return 0;
}

void ttrpc_server_get_stats(const struct ttrpc_server *s, struct ttrpc_server_stats *st)
{
    st->conns = s->n_conns;
    st->pending_calls = s->pending_calls;
    st->calls_total = s->calls_total;
}

static void close_listeners(struct ttrpc_server *s)
{
    while (!list_empty(&s->listeners)) {
        struct listener *l = container_of(s->listeners.next, struct listener, link);
        loop_io_del(s->loop, &l->io);
        close(l->io.fd);
        list_del(&l->link);
        free(l);
    }
}

void ttrpc_server_drain(struct ttrpc_server *s, void (*done)(void *arg), void *arg)
{
    close_listeners(s);
    s->drain_done = done;
    s->drain_arg = arg;
    loop_defer(s->loop, &s->drain_check);
}

void ttrpc_server_free(struct ttrpc_server *s)
{
    if (!s)
        return;
    close_listeners(s);
    while (!list_empty(&s->conns)) {
        struct ttrpc_conn *c = container_of(s->conns.next, struct ttrpc_conn, link);
        c->on_close = NULL;
        conn_close(c);
        loop_defer_cancel(&c->flush);
        conn_destroy(&c->flush);
    }
    loop_defer_cancel(&s->drain_check);
    free(s);
}
