/* ttrpc server: connections, request dispatch to registered services, replies now or later.
 *
 * A handler gets the decoded request and must answer the call exactly once with ttrpc_reply*(), either
 * before it returns or later from another loop callback. A handler that answers later sets call->cancel:
 * it is called (instead of any reply) when the client disconnects or the call's timeout_nano expires, and
 * must undo what the handler registered; the server then frees the call. Replies are written in completion
 * order; many calls may be pending on one connection. */
#pragma once
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "../loop/loop.h"
#include "../util/err.h"
#include "../util/list.h"

struct ttrpc_server;
struct ttrpc_conn;
struct ttrpc_call;

typedef void (*ttrpc_handler)(struct ttrpc_call *call, void *req);

struct ttrpc_method {
    const char *name;                        /* bare method name, e.g. "CreateContainer" */
    const ProtobufCMessageDescriptor *input; /* request message */
    ttrpc_handler handler;
};

struct ttrpc_service {
    const char *name; /* fully qualified, e.g. "grpc.AgentService" */
    const struct ttrpc_method *methods;
    size_t n_methods;
    /* Optional gate run before the handler; returns false after answering the call itself. */
    bool (*admit)(struct ttrpc_call *call);
    void *ctx; /* for the handlers (the agent) */
};

struct ttrpc_call {
    struct ttrpc_conn *conn;
    const struct ttrpc_service *service;
    const struct ttrpc_method *method;
    uint32_t stream;
    void *req; /* decoded request, owned by the call */
    uint64_t start_ns;
    uint64_t timeout_ns;
    struct loop_timer deadline;
    struct list link; /* in the connection's pending calls */
    bool in_handler;
    bool done;
    void (*cancel)(struct ttrpc_call *call);
    void *data; /* for the handler */
};

struct ttrpc_server_stats {
    unsigned conns;
    unsigned pending_calls;
    uint64_t calls_total;
};

struct ttrpc_server *ttrpc_server_new(struct loop *l, ka_err *e);
void ttrpc_server_free(struct ttrpc_server *s);
struct loop *ttrpc_server_loop(struct ttrpc_server *s);
/* Services are referenced, not copied; their method arrays must be sorted by name (strcmp). */
int ttrpc_server_add_service(struct ttrpc_server *s, const struct ttrpc_service *svc, ka_err *e);
/* Accept connections on a listening socket (the server owns fd). */
int ttrpc_server_listen_fd(struct ttrpc_server *s, int fd, ka_err *e);
/* Serve one already-connected byte stream (a virtio-serial port). on_close runs once when it ends. */
int ttrpc_server_serve_fd(struct ttrpc_server *s, int fd, void (*on_close)(void *arg), void *arg, ka_err *e);
void ttrpc_server_get_stats(const struct ttrpc_server *s, struct ttrpc_server_stats *st);
/* Stop accepting, then run done() once every queued reply has been written (or its peer is gone). */
void ttrpc_server_drain(struct ttrpc_server *s, void (*done)(void *arg), void *arg);

/* Answer a call; each frees the call. resp NULL means an empty reply message. */
void ttrpc_reply(struct ttrpc_call *c, const ProtobufCMessage *resp);
void ttrpc_reply_status(struct ttrpc_call *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ttrpc_reply_err(struct ttrpc_call *c, const ka_err *e);
