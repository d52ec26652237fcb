/* A small blocking ttrpc client (kata-agent-ctl, benchmarks, tests): pipelined sends, replies by stream. */
#pragma once
#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

#include "../util/err.h"
#include "frame.h"

struct ttrpc_client {
    int fd;
    uint32_t next_stream;
    int recv_timeout_ms; /* SO_RCVTIMEO in force, -1 = none */
    struct ttrpc_reader rd;
    struct kbuf out; /* queued requests not yet sent */
};

struct ttrpc_result {
    uint32_t stream;
    int code;         /* status code, KA_OK on success */
    char *message;    /* malloc'd status message, NULL on success */
    uint8_t *payload; /* malloc'd reply bytes */
    size_t payload_len;
};

void ttrpc_client_init(struct ttrpc_client *c, int fd);
void ttrpc_client_close(struct ttrpc_client *c);
/* Send one request; its stream id is returned in *stream. timeout_ns 0 = none. */
int ttrpc_client_send(struct ttrpc_client *c, const char *service, const char *method,
                      const ProtobufCMessage *req, int64_t timeout_ns, uint32_t *stream, ka_err *e);
/* Queue a request without sending it (several requests then leave in one write); flush sends them. */
int ttrpc_client_queue(struct ttrpc_client *c, const char *service, const char *method,
                       const ProtobufCMessage *req, int64_t timeout_ns, uint32_t *stream, ka_err *e);
int ttrpc_client_flush(struct ttrpc_client *c, ka_err *e);
/* Receive the next response frame (any stream). timeout_ms <= 0 waits forever (serial
 * devices, which have no receive timeout, always wait). */
int ttrpc_client_recv(struct ttrpc_client *c, struct ttrpc_result *res, int timeout_ms, ka_err *e);
void ttrpc_result_free(struct ttrpc_result *res);
/* Send and wait for that call's reply (other replies are dropped). On an error status, returns -1 with
 * e->status set to the code and e->msg to the message. *resp is unpacked with out_desc. */
int ttrpc_client_call(struct ttrpc_client *c, const char *service, const char *method,
                      const ProtobufCMessage *req, const ProtobufCMessageDescriptor *out_desc,
                      ProtobufCMessage **resp, int64_t timeout_ns, ka_err *e);
