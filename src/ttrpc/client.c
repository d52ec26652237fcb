/* Blocking ttrpc client used by kata-agent-ctl, the benchmarks and the tests. */
#include "client.h"

#include <errno.h>
#include <sys/time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ttrpc.pb-c.h"

void ttrpc_client_init(struct ttrpc_client *c, int fd)
{
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->next_stream = 1;
    c->recv_timeout_ms = -1;
}

void ttrpc_client_close(struct ttrpc_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    ttrpc_reader_free(&c->rd);
    kbuf_free(&c->out);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == ENOTSOCK)
            w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int ttrpc_client_queue(struct ttrpc_client *c, const char *service, const char *method,
                       const ProtobufCMessage *req, int64_t timeout_ns, uint32_t *stream, ka_err *e)
{
    size_t plen = protobuf_c_message_get_packed_size(req);
    uint8_t *payload = malloc(plen ? plen : 1);
    if (!payload)
        return ka_fail_errno(e, ENOMEM, "request");
    protobuf_c_message_pack(req, payload);
    Ttrpc__Request rq = TTRPC__REQUEST__INIT;
    rq.service = (char *)service;
    rq.method = (char *)method;
    rq.payload.data = payload;
    rq.payload.len = plen;
    rq.timeout_nano = timeout_ns;
    size_t len = ttrpc__request__get_packed_size(&rq);
    uint8_t *frame = len <= TTRPC_MAX_DATA ? kbuf_reserve(&c->out, TTRPC_HDR_LEN + len) : NULL;
    if (!frame) {
        free(payload);
        if (len > TTRPC_MAX_DATA)
            return ka_fail(e, KA_RESOURCE_EXHAUSTED, "request of %zu bytes exceeds the 4 MiB frame limit",
                           len);
        return ka_fail_errno(e, ENOMEM, "request");
    }
    struct ttrpc_hdr h = {.len = (uint32_t)len, .stream = c->next_stream, .type = TTRPC_REQUEST};
    ttrpc_hdr_encode(frame, &h);
    ttrpc__request__pack(&rq, frame + TTRPC_HDR_LEN);
    c->out.len += TTRPC_HDR_LEN + len;
    free(payload);
    *stream = c->next_stream;
    c->next_stream += 2;
    return 0;
}

int ttrpc_client_flush(struct ttrpc_client *c, ka_err *e)
{
    int r = write_all(c->fd, c->out.data + c->out.off, kbuf_avail(&c->out));
    kbuf_consume(&c->out, kbuf_avail(&c->out));
    return r < 0 ? ka_fail_errno(e, errno, "send") : 0;
}

int ttrpc_client_send(struct ttrpc_client *c, const char *service, const char *method,
                      const ProtobufCMessage *req, int64_t timeout_ns, uint32_t *stream, ka_err *e)
{
    if (ttrpc_client_queue(c, service, method, req, timeout_ns, stream, e) < 0)
        return -1;
    return ttrpc_client_flush(c, e);
}

/* Receive timeouts use SO_RCVTIMEO (changed only when the caller's timeout changes). */
static int set_recv_timeout(struct ttrpc_client *c, int timeout_ms)
{
    if (timeout_ms == c->recv_timeout_ms)
        return 0;
    struct timeval tv = {0};
    if (timeout_ms > 0) {
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
    }
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 && errno != ENOTSOCK)
        return -1;
    c->recv_timeout_ms = timeout_ms;
    return 0;
}

int ttrpc_client_recv(struct ttrpc_client *c, struct ttrpc_result *res, int timeout_ms, ka_err *e)
{
    memset(res, 0, sizeof(*res));
    for (;;) {
        struct ttrpc_hdr h;
        const uint8_t *data;
        enum ttrpc_rd ev = ttrpc_reader_next(&c->rd, &h, &data);
        if (ev == TTRPC_RD_OVERSIZED)
            return ka_fail(e, KA_RESOURCE_EXHAUSTED, "server sent a %u-byte frame (limit %u)", h.len,
                           TTRPC_MAX_DATA);
        if (ev == TTRPC_RD_FRAME) {
            if (h.type != TTRPC_RESPONSE)
                continue;
            Ttrpc__Response *r = ttrpc__response__unpack(NULL, h.len, data);
            if (!r)
                return ka_fail(e, KA_INTERNAL, "undecodable response on stream %u", h.stream);
            res->stream = h.stream;
            if (r->status && r->status->code != 0) {
                res->code = r->status->code;
                res->message = strdup(r->status->message ? r->status->message : "");
            }
            if (r->payload.len) {
                res->payload = malloc(r->payload.len);
                if (res->payload) {
                    memcpy(res->payload, r->payload.data, r->payload.len);
                    res->payload_len = r->payload.len;
                }
            }
            ttrpc__response__free_unpacked(r, NULL);
            return 0;
        }
        if (set_recv_timeout(c, timeout_ms) < 0)
            return ka_fail_errno(e, errno, "set receive timeout");
        size_t avail;
        uint8_t *buf = ttrpc_reader_space(&c->rd, 64 * 1024, &avail);
        if (!buf)
            return ka_fail_errno(e, ENOMEM, "receive");
        ssize_t n = read(c->fd, buf, avail); /* blocking: one syscall per reply, no poll first */
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return ka_fail(e, KA_DEADLINE_EXCEEDED, "no reply within %d ms", timeout_ms);
            return ka_fail_errno(e, errno, "receive");
        }
        if (n == 0)
            return ka_fail(e, KA_UNAVAILABLE, "connection closed by the agent");
        ttrpc_reader_commit(&c->rd, (size_t)n);
    }
}

void ttrpc_result_free(struct ttrpc_result *res)
{
    free(res->message);
    free(res->payload);
    res->message = NULL;
    res->payload = NULL;
}

int ttrpc_client_call(struct ttrpc_client *c, const char *service, const char *method,
                      const ProtobufCMessage *req, const ProtobufCMessageDescriptor *out_desc,
                      ProtobufCMessage **resp, int64_t timeout_ns, ka_err *e)
{
    uint32_t stream;
    *resp = NULL;
    if (ttrpc_client_send(c, service, method, req, timeout_ns, &stream, e) < 0)
        return -1;
    int timeout_ms = timeout_ns > 0 ? (int)(timeout_ns / 1000000) + 1000 : -1;
    for (;;) {
        struct ttrpc_result res;
        if (ttrpc_client_recv(c, &res, timeout_ms, e) < 0)
            return -1;
        if (res.stream != stream) {
            ttrpc_result_free(&res);
            continue;
        }
        if (res.code != KA_OK) {
            ka_fail(e, res.code, "%s", res.message ? res.message : "");
            ttrpc_result_free(&res);
            return -1;
        }
        *resp = protobuf_c_message_unpack(out_desc, NULL, res.payload_len,
                                          res.payload ? res.payload : (uint8_t *)"");
        ttrpc_result_free(&res);
        if (!*resp)
            return ka_fail(e, KA_INTERNAL, "undecodable %s reply", out_desc->name);
        return 0;
    }
}
